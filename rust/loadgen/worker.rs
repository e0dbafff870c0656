//! One load-generating thread: a mio poll over its share of the connections, each with one request in flight at
//! a time (no pipelining, as wrk by default). A connection the server closes, or that fails, is replaced by a new
//! one while the run lasts.
//!
//! As in wrk, a connection whose response just completed sends its next request after the current batch of poll
//! events has been handled, not at once: requests reach the server in batches, as they do from wrk, so the two
//! generators load a server alike.
//!
//! At the deadline no new request is sent; the requests in flight get up to `Plan::grace` to be answered, so every
//! request the server received is either counted as answered or as an error.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::response::Reader;

/// What every thread of a run does.
pub struct Plan {
    pub addr: SocketAddr,
    pub request: Vec<u8>,
    pub duration: Duration,
    pub grace: Duration,
}

/// What one thread measured.
#[derive(Default)]
pub struct Tally {
    /// Responses with a 2xx or 3xx status.
    pub answered: u64,
    /// Failed connections, malformed or cut responses, other statuses, requests unanswered after the grace.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latency of every answered request, in microseconds.
    pub latencies_us: Vec<u32>,
    /// From this thread's start to its last response.
    pub elapsed: Duration,
    /// CPU time this thread used.
    pub cpu: Duration,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Writing,
    Reading,
    Closed,
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    written: usize,
    sent_at: Instant,
    reader: Reader,
    pending: Vec<u8>,
}

impl Conn {
    fn new(stream: TcpStream, phase: Phase) -> Conn {
        Conn { stream, phase, written: 0, sent_at: Instant::now(), reader: Reader::default(), pending: Vec::new() }
    }

    fn in_flight(&self) -> bool {
        matches!(self.phase, Phase::Writing | Phase::Reading)
    }
}

/// How a connection's step ended.
enum Outcome {
    /// It waits for the socket.
    Blocked,
    /// It moved on to a phase that can make progress at once.
    Again,
    /// Its next request is ready: send it after this batch of events.
    Next,
    /// It is finished with: replace it (`Some`: after this error) or close it.
    Replace(Option<String>),
}

/// Runs `streams` (connected, non-blocking) until the plan's deadline plus the grace for requests in flight.
pub fn run(plan: &Plan, streams: Vec<std::net::TcpStream>) -> io::Result<Tally> {
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    let deadline = start + plan.duration;
    let mut tally = Tally::default();
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(streams.len());
    for (index, stream) in streams.into_iter().enumerate() {
        let mut conn = Conn::new(TcpStream::from_std(stream), Phase::Writing);
        poll.registry().register(&mut conn.stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(conn);
    }
    let mut next: Vec<usize> = (0..conns.len()).collect();
    let mut events = Events::with_capacity(1024);
    let mut last_response = start;
    loop {
        for index in std::mem::take(&mut next) {
            if drive(&mut poll, &mut conns, index, plan, deadline, &mut tally)? {
                next.push(index);
            }
        }
        let now = Instant::now();
        let stop = if now < deadline { deadline } else { deadline + plan.grace };
        if now >= stop || (now >= deadline && !conns.iter().any(Conn::in_flight)) {
            break;
        }
        let timeout = if next.is_empty() { stop - now } else { Duration::ZERO };
        if let Err(err) = poll.poll(&mut events, Some(timeout)) {
            if err.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in &events {
            let answered = tally.answered + tally.errors;
            let index = event.token().0;
            if drive(&mut poll, &mut conns, index, plan, deadline, &mut tally)? {
                next.push(index);
            }
            if tally.answered + tally.errors != answered {
                last_response = Instant::now();
            }
        }
    }
    for _unanswered in conns.iter().filter(|conn| conn.in_flight()) {
        tally.error(format!("no response within {:?} after the deadline", plan.grace));
    }
    tally.elapsed = last_response.max(deadline.min(Instant::now())) - start;
    tally.cpu = thread_cpu_time().saturating_sub(cpu_start);
    Ok(tally)
}

/// Advances connection `index` as far as its socket allows, replacing it when it ends; true when its next request
/// waits for the end of the batch.
fn drive(
    poll: &mut Poll,
    conns: &mut [Conn],
    index: usize,
    plan: &Plan,
    deadline: Instant,
    tally: &mut Tally,
) -> io::Result<bool> {
    let Some(conn) = conns.get_mut(index) else { return Ok(false) };
    loop {
        match advance(conn, plan, deadline, tally) {
            Outcome::Blocked => return Ok(false),
            Outcome::Next => return Ok(true),
            Outcome::Again => {}
            Outcome::Replace(error) => {
                poll.registry().deregister(&mut conn.stream)?;
                if let Some(error) = error {
                    tally.error(error);
                }
                if Instant::now() >= deadline {
                    conn.phase = Phase::Closed;
                    return Ok(false);
                }
                match TcpStream::connect(plan.addr) {
                    Ok(stream) => *conn = Conn::new(stream, Phase::Connecting),
                    Err(err) => {
                        // Out of ports or descriptors, say: this connection is lost for the rest of the run.
                        tally.error(format!("connect: {err}"));
                        conn.phase = Phase::Closed;
                        return Ok(false);
                    }
                }
                poll.registry().register(&mut conn.stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
            }
        }
    }
}

/// One step of a connection's life: connect, send the request, read the response, and again.
fn advance(conn: &mut Conn, plan: &Plan, deadline: Instant, tally: &mut Tally) -> Outcome {
    match conn.phase {
        Phase::Closed => Outcome::Blocked,
        Phase::Connecting => match (conn.stream.take_error(), conn.stream.peer_addr()) {
            (Ok(Some(err)) | Err(err), _) => Outcome::Replace(Some(format!("connect: {err}"))),
            (Ok(None), Err(err)) if err.kind() == ErrorKind::NotConnected => Outcome::Blocked,
            (Ok(None), Err(err)) => Outcome::Replace(Some(format!("connect: {err}"))),
            (Ok(None), Ok(_)) => {
                // Best effort: without it small requests may wait for delayed ACKs, but they still go out.
                let _ = conn.stream.set_nodelay(true);
                conn.phase = Phase::Writing;
                Outcome::Again
            }
        },
        Phase::Writing => {
            if conn.written == 0 {
                conn.sent_at = Instant::now();
                if conn.sent_at >= deadline {
                    return Outcome::Replace(None);
                }
            }
            while conn.written < plan.request.len() {
                match conn.stream.write(&plan.request[conn.written..]) {
                    Ok(0) => return Outcome::Replace(Some("write: the connection is closed".into())),
                    Ok(n) => conn.written += n,
                    Err(err) if err.kind() == ErrorKind::WouldBlock => return Outcome::Blocked,
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(err) => return Outcome::Replace(Some(format!("write: {err}"))),
                }
            }
            // The response can only arrive after this, and its arrival is an edge the poll reports: no read now.
            conn.phase = Phase::Reading;
            Outcome::Blocked
        }
        Phase::Reading => read_response(conn, deadline, tally),
    }
}

/// Reads until the socket has nothing more or the response is complete; then sends the next request.
fn read_response(conn: &mut Conn, deadline: Instant, tally: &mut Tally) -> Outcome {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let closed = match conn.stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => {
                conn.pending.extend_from_slice(&buf[..n]);
                false
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Outcome::Blocked,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Outcome::Replace(Some(format!("read: {err}"))),
        };
        let complete = match conn.reader.feed(&conn.pending) {
            Ok((used, complete)) => {
                conn.pending.drain(..used);
                complete.or_else(|| if closed { conn.reader.closed() } else { None })
            }
            Err(reason) => return Outcome::Replace(Some(format!("bad response: {reason}"))),
        };
        let Some(complete) = complete else {
            if closed {
                let cut = !conn.reader.at_start() || !conn.pending.is_empty();
                let what = if cut { "the server closed the connection mid-response" } else { "no response" };
                return Outcome::Replace(Some(what.into()));
            }
            continue;
        };
        if (200..400).contains(&complete.status) {
            tally.answered += 1;
            let micros = conn.sent_at.elapsed().as_micros();
            tally.latencies_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
        } else {
            tally.error(format!("status {}", complete.status));
        }
        if !conn.pending.is_empty() {
            return Outcome::Replace(Some("bytes after the response, with no request in flight".into()));
        }
        if !complete.keep_alive || closed || Instant::now() >= deadline {
            return Outcome::Replace(None);
        }
        conn.phase = Phase::Writing;
        conn.written = 0;
        return Outcome::Next;
    }
}

/// CPU time the calling thread has used so far (zero if the clock cannot be read).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call, and CLOCK_THREAD_CPUTIME_ID is a
    // clock every supported platform (Linux, macOS, the BSDs) provides.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(u64::try_from(now.tv_sec).unwrap_or(0), nanos)
}
