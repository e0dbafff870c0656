//! The cooperative socket calls: `recv`, `recv_into`, `send`, `sendall` and `accept` of `ferrovent.socket.socket`,
//! each one Rust call that does the system call on the socket's fd and, on EAGAIN, parks the current greenlet on the
//! fd (the loop's own fd wait, as `Loop.wait_fd`) and retries.
//! `recv` and `recv_into`, the calls an idle connection's handler is parked in, come through plain vectorcall entries
//! whose frames stay small while parked (sockops/recv_entry.rs).
//!
//! Semantics are the stdlib's (Modules/socketmodule.c): the socket's timeout is a deadline for the whole call
//! (`TimeoutError("timed out")`), a timeout of 0 or `MSG_DONTWAIT` raise BlockingIOError instead of waiting, EINTR
//! runs the signal handlers and retries unless one raised (PEP 475), and errors are `OSError(errno, strerror)`,
//! which Python turns into the matching subclass. A closed socket has fd -1, so its calls fail with EBADF.

use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBlockingIOError, PyOSError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyFloat, PyType};

use crate::current;
use crate::event_loop::{ConcurrentObjectUseError, Loop};
use crate::fdtable::Direction;
use crate::vectorcall;

mod recv_entry;
mod send_pair;

use recv_entry::{FastRecv, FastRecvInto, RECV_DOC, RECV_INTO_DOC};
pub(crate) use send_pair::send_both;

/// The head of CPython's socket object (`PySocketSockObject` in socketmodule.h): the fd, then the family, type and
/// protocol the socket was made with, follow the object header.
#[repr(C)]
struct SocketHead {
    ob_base: ffi::PyObject,
    sock_fd: c_int,
    sock_family: c_int,
    sock_type: c_int,
    sock_proto: c_int,
}

static SOCKET_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The head of `sock`, an instance of `_socket.socket` (or a subclass); its fd is -1 once it is closed.
fn head_of<'a>(sock: &'a Bound<'_, PyAny>) -> PyResult<&'a SocketHead> {
    let py = sock.py();
    let socket_type = SOCKET_TYPE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("_socket")?.getattr("socket")?.cast_into::<PyType>()?.unbind())
    })?;
    // SAFETY: both are live objects; the check reads only their types (no __instancecheck__ hook to run).
    let is_socket = unsafe { ffi::PyObject_TypeCheck(sock.as_ptr(), socket_type.as_ptr().cast()) } != 0;
    if !is_socket {
        return Err(PyTypeError::new_err(format!("a socket is required, not {}", sock.get_type().name()?)));
    }
    // SAFETY: `sock` is a live instance of `_socket.socket` (checked above), whose C struct starts with the object
    // header followed by the four ints of `SocketHead`, in every CPython version; the reference lives no longer
    // than the borrow of `sock`, and only those ints are read.
    Ok(unsafe { &*sock.as_ptr().cast::<SocketHead>() })
}

/// The fd of `sock` (see `head_of`).
fn fd_of(sock: &Bound<'_, PyAny>) -> PyResult<c_int> {
    Ok(head_of(sock)?.sock_fd)
}

/// Whether a short `recv(n, flags)` on `sock` shows its receive queue empty. True of a plain read of a TCP stream on
/// Linux, whose read stops only when the queue (and the backlog) is empty, at an urgent-data mark, or with the end
/// of the stream behind it; the fd table hears of the last two from the poller. Not of datagrams or SCTP (message ends), nor of AF_UNIX streams (a read stops
/// at passed fds and credentials), nor with flags (MSG_PEEK leaves the data queued).
fn short_read_drains(head: &SocketHead, flags: c_int) -> bool {
    let kind = head.sock_type & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    cfg!(target_os = "linux")
        && flags == 0
        && kind == libc::SOCK_STREAM
        && (head.sock_family == libc::AF_INET || head.sock_family == libc::AF_INET6)
        && (head.sock_proto == 0 || head.sock_proto == libc::IPPROTO_TCP)
}

/// `OSError(errno, strerror(errno))`: Python maps it to the subclass for `errno` (BlockingIOError, ...).
pub(crate) fn os_error(errno: c_int) -> PyErr {
    // SAFETY: strerror returns a NUL-terminated string that stays valid until the next strerror call on this
    // thread; it is copied at once, and the GIL keeps other Python code from calling it meanwhile here.
    let message = unsafe { CStr::from_ptr(libc::strerror(errno)) }.to_string_lossy().into_owned();
    PyOSError::new_err((errno, message))
}

static TIMEOUT_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `socket.timeout`: TimeoutError since Python 3.10, an OSError subclass of its own before.
fn timeout_type(py: Python<'_>) -> PyResult<&Py<PyType>> {
    TIMEOUT_TYPE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("_socket")?.getattr("timeout")?.cast_into::<PyType>()?.unbind())
    })
}

/// `socket.timeout("timed out")`.
fn timed_out() -> PyErr {
    Python::attach(|py| match timeout_type(py) {
        Ok(timeout_type) => PyErr::from_type(timeout_type.bind(py).clone(), "timed out"),
        Err(err) => err,
    })
}

/// Whether `err` is a `socket.timeout` (what a cooperative call raises when its timeout passes).
pub(crate) fn is_timeout(py: Python<'_>, err: &PyErr) -> bool {
    timeout_type(py).is_ok_and(|timeout_type| err.is_instance(py, timeout_type.bind(py)))
}

/// How long a call may wait in total: the socket's timeout (None: forever), and the deadline it gives once the
/// call first has to wait.
struct Patience {
    timeout: Option<f64>,
    deadline: Option<Instant>,
    never_wait: bool,
}

impl Patience {
    fn new(timeout: Option<f64>, flags: c_int) -> Self {
        let never_wait = timeout == Some(0.0) || flags & libc::MSG_DONTWAIT != 0;
        Patience { timeout, deadline: None, never_wait }
    }

    /// The seconds left for the next wait (None: no limit), or the timeout error once none are left. A timeout too
    /// large for a deadline (infinity) never expires; a negative or NaN one (`send(timeout=)`) has already expired.
    fn remaining(&mut self) -> PyResult<Option<f64>> {
        let Some(timeout) = self.timeout else { return Ok(None) };
        let deadline = match self.deadline {
            Some(deadline) => deadline,
            None => match Duration::try_from_secs_f64(timeout).ok().and_then(|d| Instant::now().checked_add(d)) {
                Some(deadline) => *self.deadline.insert(deadline),
                None if timeout > 0.0 => return Ok(None),
                None => return Err(timed_out()),
            },
        };
        let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
        if left <= 0.0 {
            return Err(timed_out());
        }
        Ok(Some(left))
    }
}

/// Runs the pending signal handlers (PEP 475): the exception one of them raised, if any.
fn check_signals(py: Python<'_>) -> PyResult<()> {
    // SAFETY: `py` proves the GIL is held, which is all PyErr_CheckSignals needs.
    if unsafe { ffi::PyErr_CheckSignals() } != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
}

/// Parks the current greenlet until the socket's `fd` is ready in `direction`: false if `timeout` passed first.
/// `exclusive`: a second greenlet waiting the same way on the fd gets ConcurrentObjectUseError, as in gevent.
fn park_on(
    sock: &Bound<'_, PyAny>,
    fd: c_int,
    direction: Direction,
    timeout: Option<f64>,
    exclusive: bool,
) -> PyResult<bool> {
    let (loop_, fd, referenced) = parking_place(sock, fd, direction, exclusive)?;
    loop_.get().wait_fd_current(sock.py(), fd, direction, timeout, None, referenced, true)
}

/// What parking on the socket's `fd` needs, checked: this thread's loop, the fd as the fd table's index and
/// whether the wait keeps the loop alive (see `park_on`).
fn parking_place<'py>(
    sock: &Bound<'py, PyAny>,
    fd: c_int,
    direction: Direction,
    exclusive: bool,
) -> PyResult<(Bound<'py, Loop>, usize, bool)> {
    let fd = usize::try_from(fd).map_err(|_| os_error(libc::EBADF))?;
    let loop_ = current::get(sock.py())?;
    loop_.get().check_thread()?;
    if exclusive && loop_.get().fds.borrow().has_waiters(fd, direction) {
        let way = if direction == Direction::Write { "writing to" } else { "reading from" };
        return Err(ConcurrentObjectUseError::new_err(format!(
            "This socket is already used by another greenlet: another greenlet is {way} fd {fd}"
        )));
    }
    Ok((loop_, fd, referenced(sock)))
}

/// The wait after EAGAIN: parks until the socket is ready in `direction`, or raises the timeout error once
/// `patience` has run out.
fn wait_within(sock: &Bound<'_, PyAny>, fd: c_int, direction: Direction, patience: &mut Patience) -> PyResult<()> {
    let timeout = patience.remaining()?;
    if park_on(sock, fd, direction, timeout, true)? {
        Ok(())
    } else {
        Err(timed_out())
    }
}

/// False when the socket's `ref` is off: its waits do not keep the loop alive.
fn referenced(sock: &Bound<'_, PyAny>) -> bool {
    let unreferenced = sock.getattr(pyo3::intern!(sock.py(), "_unreferenced"));
    !unreferenced.is_ok_and(|flag| flag.is_truthy().unwrap_or(false))
}

/// A system call's result: the count, or the errno it failed with (read at once, before anything can change it).
fn outcome(result: isize) -> Result<usize, c_int> {
    usize::try_from(result).map_err(|_| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Tries `attempt` (a system call on the socket's fd) until it succeeds, waiting in `direction` after EAGAIN.
fn cooperative<T>(
    sock: &Bound<'_, PyAny>,
    direction: Direction,
    patience: &mut Patience,
    mut attempt: impl FnMut(c_int) -> PyResult<Result<T, c_int>>,
) -> PyResult<T> {
    loop {
        let fd = fd_of(sock)?;
        let errno = match attempt(fd)? {
            Ok(done) => return Ok(done),
            Err(errno) => errno,
        };
        if errno == libc::EINTR {
            check_signals(sock.py())?;
        } else if (errno == libc::EAGAIN || errno == libc::EWOULDBLOCK) && !patience.never_wait {
            wait_within(sock, fd, direction, patience)?;
        } else {
            return Err(os_error(errno));
        }
    }
}

/// `cooperative` for a read of up to `size` bytes (`count` tells how many a result holds) that keeps the fd table's
/// drained record (fdtable.rs) when a short read shows the queue empty: a read the record says would fail with
/// EAGAIN parks at once, without making the system call, and a short read sets the record.
fn cooperative_read<T>(
    sock: &Bound<'_, PyAny>,
    flags: c_int,
    size: usize,
    patience: &mut Patience,
    count: impl Fn(&T) -> usize,
    attempt: impl FnMut(c_int) -> PyResult<Result<T, c_int>>,
) -> PyResult<T> {
    let head = head_of(sock)?;
    // The record lives in this thread's loop; a thread without one has no registration, so nothing to read or keep.
    let table_fd = usize::try_from(head.sock_fd).ok().filter(|_| short_read_drains(head, flags));
    let Some(table_fd) = table_fd else {
        return cooperative(sock, Direction::Read, patience, attempt);
    };
    let py = sock.py();
    let drained = current::existing(py).is_some_and(|loop_| loop_.get().fds.borrow().is_drained(table_fd));
    if drained && !patience.never_wait {
        wait_within(sock, head.sock_fd, Direction::Read, patience)?;
    }
    let done = cooperative(sock, Direction::Read, patience, attempt)?;
    let received = count(&done);
    if received > 0 && received < size {
        if let Some(loop_) = current::existing(py) {
            loop_.get().fds.borrow_mut().mark_drained(table_fd);
        }
    }
    Ok(done)
}

/// Runs `body` on a bytes-like object's memory (address, length), held through the buffer protocol as the stdlib's
/// `y*` and `w*` hold it; `refused` turns the error of an object that has no such buffer into the one to raise.
/// The view stays in this frame, unmoved, until it is released.
fn with_buffer<R>(
    obj: &Bound<'_, PyAny>,
    writable: bool,
    refused: impl FnOnce(PyErr) -> PyErr,
    body: impl FnOnce(*mut c_void, usize) -> PyResult<R>,
) -> PyResult<R> {
    let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::zeroed();
    let flags = if writable { ffi::PyBUF_WRITABLE } else { ffi::PyBUF_SIMPLE };
    // SAFETY: `view` is a zeroed Py_buffer for PyObject_GetBuffer to fill in; `obj` is a live object.
    if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), flags) } != 0 {
        return Err(refused(PyErr::fetch(obj.py())));
    }
    // SAFETY: PyObject_GetBuffer succeeded, so the view is initialised.
    let (buf, len) = unsafe { (view.assume_init_ref().buf, view.assume_init_ref().len) };
    let result = body(buf, usize::try_from(len).unwrap_or(0));
    // SAFETY: the view came from the successful PyObject_GetBuffer above and is released once, with the GIL held
    // (`obj` proves it).
    unsafe { ffi::PyBuffer_Release(view.as_mut_ptr()) };
    result
}

/// Whether the interpreter is older than 3.10, read once: `version_info()` formats and parses the version string
/// on every call, which cost the echo server several percent of its CPU when each socket call asked.
static BEFORE_3_10: OnceLock<bool> = OnceLock::new();

fn before_3_10(py: Python<'_>) -> bool {
    *BEFORE_3_10.get_or_init(|| py.version_info() < (3, 10))
}

/// Python 3.9's argument formats refused a float with a message of their own.
fn refuse_float_as_3_9(arg: &Bound<'_, PyAny>) -> PyResult<()> {
    if before_3_10(arg.py()) && arg.is_instance_of::<PyFloat>() {
        return Err(PyTypeError::new_err("integer argument expected, got float"));
    }
    Ok(())
}

/// A size argument (recv's `bufsize`, recv_into's `nbytes`), read as the stdlib's "n" argument format reads it,
/// with its errors.
fn size_arg(size: &Bound<'_, PyAny>) -> PyResult<isize> {
    refuse_float_as_3_9(size)?;
    size.extract::<isize>()
}

/// A `flags` argument, read as the stdlib's "i" argument format reads it, with its errors: Python 3.9's format
/// had messages of its own for a float and for a non-integer.
fn flags_arg(flags: &Bound<'_, PyAny>) -> PyResult<c_int> {
    if !before_3_10(flags.py()) {
        return flags.extract::<c_int>();
    }
    refuse_float_as_3_9(flags)?;
    flags.extract::<c_int>().map_err(|err| {
        if err.is_instance_of::<PyTypeError>(flags.py()) {
            let name = flags.get_type().name().map(|name| name.to_string()).unwrap_or_default();
            PyTypeError::new_err(format!("an integer is required (got type {name})"))
        } else {
            err
        }
    })
}

// The numeric arguments come as objects and are read inside, so that a wrong one fails with the stdlib's own
// message ("'str' object cannot be interpreted as an integer"), not one that names the Rust parameter.

/// `recv(bufsize, flags)` with the socket's `timeout`: the bytes received, b"" at the end of the stream. The call
/// shapes `sock_recv_entry` passes on, with PyO3's argument handling; not a module attribute.
#[pyfunction]
pub fn sock_recv<'py>(
    sock: &Bound<'py, PyAny>,
    bufsize: &Bound<'py, PyAny>,
    flags: &Bound<'py, PyAny>,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (bufsize, flags) = (size_arg(bufsize)?, flags_arg(flags)?);
    let Ok(size) = usize::try_from(bufsize) else {
        return Err(PyValueError::new_err("negative buffersize in recv"));
    };
    recv_bytes(sock, size, flags, timeout)
}

/// `recv(size, flags)` of a cooperative socket with `timeout`, for Rust callers (the WSGI server's loop).
pub(crate) fn recv_bytes<'py>(
    sock: &Bound<'py, PyAny>,
    size: usize,
    flags: c_int,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let py = sock.py();
    let mut patience = Patience::new(timeout, flags);
    // A fresh bytes object for each try, dropped again on EAGAIN: a greenlet parked in recv holds no `bufsize`
    // bytes, so an idle connection costs no more than it did.
    let (bytes, received) =
        cooperative_read(sock, flags, size, &mut patience, |(_, n)| *n, |fd| recv_attempt(py, fd, size, flags))?;
    shrunk_to(bytes, received, size)
}

/// One try of `recv`: recv(2) into a fresh bytes object of `size` bytes, and how many it received; or the errno.
fn recv_attempt(
    py: Python<'_>,
    fd: c_int,
    size: usize,
    flags: c_int,
) -> PyResult<Result<(Bound<'_, PyAny>, usize), c_int>> {
    // SAFETY: a NULL source asks for an uninitialised bytes object of `size` bytes (at most isize::MAX, as it came
    // from a Py_ssize_t): a new reference or NULL.
    let raw = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size as ffi::Py_ssize_t) };
    // SAFETY: `raw` is a new reference (checked non-NULL by `from_owned_ptr_or_err`), owned by the Bound.
    let bytes = unsafe { Bound::from_owned_ptr_or_err(py, raw) }?;
    // SAFETY: `bytes` is a new bytes object nobody else has seen, so its storage is ours to fill.
    let storage = unsafe { ffi::PyBytes_AsString(bytes.as_ptr()) }.cast::<c_void>();
    // SAFETY: recv(2) writes at most `size` bytes into `storage`, which has that many.
    let received = outcome(unsafe { libc::recv(fd, storage, size, flags) });
    Ok(received.map(|n| (bytes, n)))
}

/// The bytes object of `recv_attempt`, cut to the `received` bytes of its `size`.
fn shrunk_to(bytes: Bound<'_, PyAny>, received: usize, size: usize) -> PyResult<Bound<'_, PyBytes>> {
    let py = bytes.py();
    if received == size {
        // SAFETY: the object is a bytes object, made by `recv_attempt`.
        return Ok(unsafe { bytes.cast_into_unchecked() });
    }
    let mut resized = bytes.into_ptr();
    // SAFETY: `resized` is the only reference to the bytes object (never shared), as _PyBytes_Resize requires; it
    // then owns the resized object, or on failure has freed it, set NULL and set the error.
    let failed = unsafe { ffi::_PyBytes_Resize(&mut resized, received as ffi::Py_ssize_t) } != 0;
    if failed {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `resized` is the owned reference to the resized bytes object.
    Ok(unsafe { Bound::from_owned_ptr(py, resized).cast_into_unchecked() })
}

/// The error of `recv_into` given an object without a writable buffer.
fn not_writable(buffer: &Bound<'_, PyAny>) -> PyErr {
    match buffer.get_type().name() {
        Ok(kind) => {
            PyTypeError::new_err(format!("recv_into() argument 1 must be read-write bytes-like object, not {kind}"))
        }
        Err(err) => err,
    }
}

/// How many bytes `recv_into` reads into a buffer of `length` bytes when asked for `wanted` (0: the whole buffer).
fn into_size(wanted: usize, length: usize) -> PyResult<usize> {
    let size = if wanted == 0 { length } else { wanted };
    if size > length {
        return Err(PyValueError::new_err("buffer too small for requested bytes"));
    }
    Ok(size)
}

/// `recv_into(buffer, nbytes, flags)` with the socket's `timeout`: how many bytes were received. The call shapes
/// `sock_recv_into_entry` passes on; not a module attribute.
#[pyfunction]
pub fn sock_recv_into(
    sock: &Bound<'_, PyAny>,
    buffer: &Bound<'_, PyAny>,
    nbytes: &Bound<'_, PyAny>,
    flags: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<usize> {
    let (nbytes, flags) = (size_arg(nbytes)?, flags_arg(flags)?);
    with_buffer(
        buffer,
        true,
        |_| not_writable(buffer),
        |storage, length| {
            let Ok(wanted) = usize::try_from(nbytes) else {
                return Err(PyValueError::new_err("negative buffersize in recv_into"));
            };
            let size = into_size(wanted, length)?;
            let mut patience = Patience::new(timeout, flags);
            cooperative_read(
                sock,
                flags,
                size,
                &mut patience,
                |n| *n,
                |fd| {
                    // SAFETY: recv(2) writes at most `size` bytes into the writable buffer, which holds at least that many.
                    Ok(outcome(unsafe { libc::recv(fd, storage, size, flags) }))
                },
            )
        },
    )
}

/// `send(data, flags)` with the socket's `timeout` (or the call's own): how many bytes were sent.
#[pyfunction]
pub fn sock_send(
    sock: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    flags: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<usize> {
    let flags = flags_arg(flags)?;
    with_buffer(
        data,
        false,
        |err| err,
        |storage, size| {
            let mut patience = Patience::new(timeout, flags);
            cooperative(sock, Direction::Write, &mut patience, |fd| {
                // SAFETY: send(2) reads `size` bytes of the buffer, which holds that many.
                Ok(outcome(unsafe { libc::send(fd, storage, size, flags) }))
            })
        },
    )
}

/// `sendall(data, flags)` with the socket's `timeout`, which bounds the whole call.
#[pyfunction]
pub fn sock_sendall(
    sock: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    flags: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<()> {
    let flags = flags_arg(flags)?;
    with_buffer(
        data,
        false,
        |err| err,
        |storage, size| {
            let storage = storage.cast::<u8>();
            let mut patience = Patience::new(timeout, flags);
            let mut sent = 0;
            loop {
                sent += cooperative(sock, Direction::Write, &mut patience, |fd| {
                    // SAFETY: send(2) reads the `size - sent` bytes left, inside the buffer.
                    Ok(outcome(unsafe { libc::send(fd, storage.add(sent).cast(), size - sent, flags) }))
                })?;
                check_signals(sock.py())?; // as the stdlib: a handler that raises ends the call, even between two sends
                if sent >= size {
                    return Ok(());
                }
            }
        },
    )
}

static C_ACCEPT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `_accept()` with the socket's `timeout`: the new fd and the peer's address. The stdlib's own C `_accept` makes
/// the call (accept4 with close-on-exec, the address in every family's form, EINTR handled); only its EAGAIN,
/// which comes as BlockingIOError, turns into a wait here.
#[pyfunction]
pub fn sock_accept<'py>(sock: &Bound<'py, PyAny>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
    let py = sock.py();
    let accept = C_ACCEPT.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("_socket")?.getattr("socket")?.getattr("_accept")?.unbind())
    })?;
    let mut patience = Patience::new(timeout, 0);
    loop {
        match accept.bind(py).call1((sock,)) {
            Err(err) if !patience.never_wait && err.is_instance_of::<PyBlockingIOError>(py) => {
                wait_within(sock, fd_of(sock)?, Direction::Read, &mut patience)?;
            }
            accepted => return accepted,
        }
    }
}

/// `sock_wait(sock, writable, timeout, exclusive)`: parks until the socket is writable (or readable), for TLS's
/// want-read/want-write loop; false if `timeout` passed first.
#[pyfunction]
pub fn sock_wait(sock: &Bound<'_, PyAny>, writable: bool, timeout: Option<f64>, exclusive: bool) -> PyResult<bool> {
    let direction = if writable { Direction::Write } else { Direction::Read };
    park_on(sock, fd_of(sock)?, direction, timeout, exclusive)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    vectorcall::install_function::<FastRecv>(m, c"sock_recv", wrap_pyfunction!(sock_recv, m)?.into_any(), RECV_DOC)?;
    let general = wrap_pyfunction!(sock_recv_into, m)?.into_any();
    vectorcall::install_function::<FastRecvInto>(m, c"sock_recv_into", general, RECV_INTO_DOC)?;
    m.add_function(wrap_pyfunction!(sock_send, m)?)?;
    m.add_function(wrap_pyfunction!(sock_sendall, m)?)?;
    m.add_function(wrap_pyfunction!(send_pair::sock_send_pair, m)?)?;
    m.add_function(wrap_pyfunction!(sock_accept, m)?)?;
    m.add_function(wrap_pyfunction!(sock_wait, m)?)?;
    Ok(())
}
