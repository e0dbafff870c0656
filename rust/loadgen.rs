//! A small HTTP/1.1 load generator that ships inside the wheel, so `benches/run.py` can measure the WSGI benches on
//! a machine without wrk. It keeps N keep-alive connections busy with one GET each in flight (no pipelining, as
//! wrk by default), on OS threads of its own with the GIL released, and reports what it saw, including its own
//! CPU time: a load generator whose threads are busy all the time measured itself, not the server.
//!
//! Layers: `response` frames responses (pure, unit tested), `worker` drives one thread's connections with mio,
//! this file is the Python edge. Python surface (see `_core.pyi`): `http_load`, `LoadReport`.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

mod response;
mod worker;

/// How long requests in flight at the deadline may take to be answered before they count as errors.
const GRACE: Duration = Duration::from_secs(2);
/// How long opening each of the first connections may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run of `http_load` measured.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct LoadReport {
    #[pyo3(get)]
    requests: u64,
    #[pyo3(get)]
    errors: u64,
    #[pyo3(get)]
    first_error: Option<String>,
    #[pyo3(get)]
    seconds: f64,
    #[pyo3(get)]
    p50_ms: Option<f64>,
    #[pyo3(get)]
    p99_ms: Option<f64>,
    #[pyo3(get)]
    max_ms: Option<f64>,
    #[pyo3(get)]
    cpu_seconds: f64,
    #[pyo3(get)]
    threads: usize,
    #[pyo3(get)]
    connections: usize,
}

#[pymethods]
impl LoadReport {
    /// Answered requests per second of the run.
    #[getter]
    fn requests_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The share of its threads' time the generator spent on the CPU (1.0: saturated, it measured itself).
    #[getter]
    fn cpu_use(&self) -> f64 {
        let capacity = self.seconds * self.threads as f64;
        if capacity > 0.0 {
            self.cpu_seconds / capacity
        } else {
            0.0
        }
    }

    fn __repr__(&self) -> String {
        let ms = |value: Option<f64>| value.map_or_else(|| "None".to_owned(), |ms| format!("{ms:.3}"));
        format!(
            "LoadReport(requests={}, errors={}, seconds={:.3}, p50_ms={}, p99_ms={}, cpu_use={:.2})",
            self.requests,
            self.errors,
            self.seconds,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.cpu_use()
        )
    }
}

/// The `fraction` percentile (nearest rank) of sorted latencies, in milliseconds.
fn percentile_ms(sorted_us: &[u32], fraction: f64) -> Option<f64> {
    let rank = (fraction * sorted_us.len() as f64).ceil() as usize;
    sorted_us.get(rank.saturating_sub(1)).map(|&us| f64::from(us) / 1000.0)
}

/// Opens `count` connections to `addr`, each ready for the workers (non-blocking, no Nagle).
fn connect_all(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpStream>> {
    (0..count)
        .map(|_| {
            let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
            stream.set_nodelay(true)?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        })
        .collect()
}

/// Runs the plan on `threads` threads sharing `streams`, and sums what they measured.
fn run_threads(plan: &worker::Plan, mut streams: Vec<TcpStream>, threads: usize) -> io::Result<LoadReport> {
    let connections = streams.len();
    let tallies: Vec<io::Result<worker::Tally>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let share = streams.split_off(streams.len() - streams.len() / (threads - i));
                thread::Builder::new()
                    .name("ferrovent-load".into())
                    .spawn_scoped(scope, move || worker::run(plan, share))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle?.join() {
                Ok(tally) => tally,
                Err(_) => Err(io::Error::other("a load thread panicked")),
            })
            .collect()
    });
    let mut report = LoadReport {
        requests: 0,
        errors: 0,
        first_error: None,
        seconds: 0.0,
        p50_ms: None,
        p99_ms: None,
        max_ms: None,
        cpu_seconds: 0.0,
        threads,
        connections,
    };
    let mut latencies = Vec::new();
    for tally in tallies {
        let tally = tally?;
        report.requests += tally.answered;
        report.errors += tally.errors;
        report.first_error = report.first_error.or(tally.first_error);
        report.seconds = report.seconds.max(tally.elapsed.as_secs_f64());
        report.cpu_seconds += tally.cpu.as_secs_f64();
        latencies.extend(tally.latencies_us);
    }
    latencies.sort_unstable();
    report.p50_ms = percentile_ms(&latencies, 0.50);
    report.p99_ms = percentile_ms(&latencies, 0.99);
    report.max_ms = latencies.last().map(|&us| f64::from(us) / 1000.0);
    Ok(report)
}

/// Keeps `connections` HTTP/1.1 keep-alive connections to `host:port` busy with `GET path` for `duration` seconds
/// on `threads` threads, then waits up to 2 s for the requests in flight. Raises OSError when a first connection
/// cannot be opened; later failures are counted in the report's `errors`.
#[pyfunction]
#[pyo3(signature = (host, port, path = "/", *, connections = 50, duration = 5.0, threads = 1))]
pub fn http_load(
    py: Python<'_>,
    host: String,
    port: u16,
    path: &str,
    connections: usize,
    duration: f64,
    threads: usize,
) -> PyResult<LoadReport> {
    if connections == 0 || threads == 0 {
        return Err(PyValueError::new_err("connections and threads must be at least 1"));
    }
    let duration = Duration::try_from_secs_f64(duration)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| PyValueError::new_err("duration must be a positive number of seconds"))?;
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(PyValueError::new_err("path must start with '/' and hold no spaces or control characters"));
    }
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n").into_bytes();
    py.detach(move || {
        let addr = (host.as_str(), port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))?;
        let plan = worker::Plan { addr, request, duration, grace: GRACE };
        let streams = connect_all(addr, connections)?;
        run_threads(&plan, streams, threads.min(connections))
    })
    .map_err(|err| if err.raw_os_error().is_some() { PyErr::from(err) } else { PyOSError::new_err(err.to_string()) })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(http_load, m)?)?;
    m.add_class::<LoadReport>()?;
    Ok(())
}
