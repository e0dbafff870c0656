//! `ferrovent._core.AioReadReady`: the read side of the asyncio loop's socket transport
//! (python/ferrovent/asyncio/_transport.py) for protocols that take `data_received(bytes)`: what the stdlib's
//! `_SelectorSocketTransport._read_ready` does for them, in one Rust call per readable event.
//!
//! Why: the stdlib reads with `sock.recv(max_size)` (256 KiB), and CPython makes a bytes object of that size for
//! each read, shrinks it to what came and frees it. That size is above glibc's mmap threshold, so unless something
//! earlier in the process raised the threshold, every read costs an mmap, an mremap and a munmap: the echo figures
//! then depend on how the process started. Here each read goes into one buffer per thread, kept and reused, and the
//! protocol gets a bytes object of the received length.
//!
//! What the protocol and the loop see is the stdlib's: nothing once the connection is lost; EAGAIN and EINTR (after
//! the signal handlers, which may raise) end the call quietly; another error goes to the transport's `_fatal_error`
//! (as `OSError(errno, strerror)`, the subclass for the errno, as `socket.recv` raises it); an empty read calls
//! `_read_ready__on_eof`; an exception from `data_received` goes to `_fatal_error`. SystemExit and
//! KeyboardInterrupt go up. A transport whose protocol is a BufferedProtocol, or whose socket's `recv` is not the
//! plain one, reads through its own `_read_ready_cb` (the transport says which, in `_reads_in_rust`).

use std::cell::RefCell;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{ffi, intern};

thread_local! {
    /// The buffer every read of this thread goes into first: as large as the largest `max_size` asked for.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What one recv(2) gave.
enum Received<'py> {
    Data(Bound<'py, PyBytes>),
    /// Nothing to read now (EAGAIN): the next readable event comes back.
    Nothing,
    Interrupted,
    Failed(PyErr),
}

/// One recv(2) of up to `max_size` bytes from `fd`, through the thread's buffer.
fn recv_once(py: Python<'_>, fd: libc::c_int, max_size: usize) -> Received<'_> {
    READ_BUFFER.with_borrow_mut(|buffer| {
        if buffer.len() < max_size {
            buffer.resize(max_size, 0);
        }
        // SAFETY: recv(2) writes at most `max_size` bytes into the buffer, which has at least that many.
        let received = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), max_size, 0) };
        if let Ok(length) = usize::try_from(received) {
            // Making the bytes object runs no Python code, so the borrow of the buffer ends before any does.
            return Received::Data(PyBytes::new(py, &buffer[..length]));
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => Received::Nothing,
            Some(libc::EINTR) => Received::Interrupted,
            // SAFETY: errno is still recv's (nothing ran since); this sets OSError(errno, strerror), the subclass
            // for the errno, as CPython's socket module does, and returns NULL.
            _ => Received::Failed(unsafe {
                ffi::PyErr_SetFromErrno(ffi::PyExc_OSError);
                PyErr::fetch(py)
            }),
        }
    })
}

fn goes_up(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// See the module documentation. Called with no arguments, as the loop's reader callback.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct AioReadReady {
    transport: Py<PyAny>,
}

impl AioReadReady {
    /// Hands `err` to the transport's `_fatal_error` with `message`, unless it is one that goes up.
    fn fatal(py: Python<'_>, transport: &Bound<'_, PyAny>, err: PyErr, message: &str) -> PyResult<()> {
        if goes_up(py, &err) {
            return Err(err);
        }
        transport.call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message)).map(drop)
    }
}

#[pymethods]
impl AioReadReady {
    #[new]
    fn new(transport: Py<PyAny>) -> Self {
        Self { transport }
    }

    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let transport = self.transport.bind(py);
        if !transport.getattr(intern!(py, "_reads_in_rust"))?.is_truthy()? {
            return transport.getattr(intern!(py, "_read_ready_cb"))?.call0().map(drop);
        }
        if transport.getattr(intern!(py, "_conn_lost"))?.is_truthy()? {
            return Ok(());
        }
        let max_size: usize = transport.getattr(intern!(py, "max_size"))?.extract()?;
        let sock = transport.getattr(intern!(py, "_sock"))?;
        let fd: libc::c_int = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let data = loop {
            match recv_once(py, fd, max_size) {
                Received::Data(data) => break data,
                Received::Nothing => return Ok(()),
                Received::Interrupted => match py.check_signals() {
                    Ok(()) => {}
                    Err(err) => return Self::fatal(py, transport, err, "Fatal read error on socket transport"),
                },
                Received::Failed(err) => {
                    return Self::fatal(py, transport, err, "Fatal read error on socket transport")
                }
            }
        };
        if data.as_bytes().is_empty() {
            return transport.call_method0(intern!(py, "_read_ready__on_eof")).map(drop);
        }
        let protocol = transport.getattr(intern!(py, "_protocol"))?;
        match protocol.call_method1(intern!(py, "data_received"), (data,)) {
            Ok(_) => Ok(()),
            Err(err) => Self::fatal(py, transport, err, "Fatal error: protocol.data_received() call failed."),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.transport)
    }
}
