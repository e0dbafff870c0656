//! Plain vectorcall entries (rust/vectorcall.rs) for `sock_recv` and `sock_recv_into`: the calls an idle
//! connection's handler is parked in. Every C frame between the call and the switch stays on the parked greenlet's
//! saved stack, so this path keeps those frames small, as `sleep` does (rust/current.rs): no PyO3 trampoline, no
//! `PyResult` in the frames that stay while parked (errors are set at once, CPython's way), and the work before
//! and after a wait in out-of-line calls that have returned by the time of the switch.
//!
//! The entries take the call shape `socket.py` makes (positional arguments, exact ints, a float or None timeout,
//! a size that is not negative) and pass every other shape, unchanged, to the PyO3-wrapped functions, so argument
//! errors stay theirs. The semantics are those of `cooperative_read` (the parent module), step for step.

use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::{
    check_signals, head_of, into_size, not_writable, os_error, outcome, parking_place, recv_attempt, short_read_drains,
    shrunk_to, timed_out, Patience,
};
use crate::current;
use crate::event_loop::Loop;
use crate::fdtable::Direction;
use crate::vectorcall::{self, Arguments, Object};

/// The PyO3-wrapped `sock_recv` and `sock_recv_into`, for the call shapes the entries pass on.
static RECV_WITH_ARGUMENTS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static RECV_INTO_WITH_ARGUMENTS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The docstrings, with the signature line CPython reads into `__text_signature__` (what PyO3 would write).
pub(in crate::sockops) const RECV_DOC: &CStr = c"sock_recv(sock, bufsize, flags, timeout)\n--\n\n`recv(bufsize, \
flags)` of a cooperative socket with its `timeout`: the bytes received, b\"\" at the end of the stream.";
pub(in crate::sockops) const RECV_INTO_DOC: &CStr = c"sock_recv_into(sock, buffer, nbytes, flags, timeout)\n--\n\n\
`recv_into(buffer, nbytes, flags)` of a cooperative socket with its `timeout`: how many bytes were received.";

/// `sock_recv(sock, bufsize, flags, timeout)` with positional arguments, exact ints and a float or None timeout,
/// taken by its vectorcall entry.
pub(in crate::sockops) struct FastRecv;

impl vectorcall::FastCall for FastRecv {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &RECV_WITH_ARGUMENTS;

    unsafe fn fast(py: Python<'_>, _: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        if nargs != 4 {
            return None;
        }
        // SAFETY: per the trait's contract, four borrowed references valid for the call; the GIL is held.
        let (sock, size, flags, timeout) = unsafe {
            let size = vectorcall::exact_int::<usize>(*args.add(1))?;
            let flags = vectorcall::exact_int::<c_int>(*args.add(2))?;
            let timeout = vectorcall::optional_seconds(*args.add(3))?;
            (Borrowed::from_ptr(py, *args), size, flags, timeout)
        };
        Some(recv_here(&sock, size, flags, timeout))
    }
}

/// `sock_recv_into(sock, buffer, nbytes, flags, timeout)` with positional arguments, exact ints and a float or
/// None timeout, taken by its vectorcall entry.
pub(in crate::sockops) struct FastRecvInto;

impl vectorcall::FastCall for FastRecvInto {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &RECV_INTO_WITH_ARGUMENTS;

    unsafe fn fast(py: Python<'_>, _: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        if nargs != 5 {
            return None;
        }
        // SAFETY: per the trait's contract, five borrowed references valid for the call; the GIL is held.
        let (sock, buffer, wanted, flags, timeout) = unsafe {
            let wanted = vectorcall::exact_int::<usize>(*args.add(2))?;
            let flags = vectorcall::exact_int::<c_int>(*args.add(3))?;
            let timeout = vectorcall::optional_seconds(*args.add(4))?;
            (Borrowed::from_ptr(py, *args), Borrowed::from_ptr(py, *args.add(1)), wanted, flags, timeout)
        };
        Some(recv_into_here(&sock, &buffer, wanted, flags, timeout))
    }
}

/// `recv` of `size` bytes: the bytes object, or NULL with the exception set.
fn recv_here(sock: &Bound<'_, PyAny>, size: usize, flags: c_int, timeout: Option<f64>) -> *mut ffi::PyObject {
    // A fresh bytes object for each try, dropped again on EAGAIN, as `sock_recv`.
    match read(sock, flags, size, timeout, |(_, n)| *n, |fd| recv_try(sock.py(), fd, size, flags)) {
        Some((bytes, received)) => bytes_result(bytes, received, size),
        None => ptr::null_mut(),
    }
}

/// One try of `recv` (`recv_attempt`), its error set rather than returned.
#[inline(never)]
fn recv_try(py: Python<'_>, fd: c_int, size: usize, flags: c_int) -> Option<Result<(Bound<'_, PyAny>, usize), c_int>> {
    recv_attempt(py, fd, size, flags).map_err(|err| err.restore(py)).ok()
}

/// The received bytes cut to size (`shrunk_to`): a new reference, or NULL with the exception set.
#[inline(never)]
fn bytes_result(bytes: Bound<'_, PyAny>, received: usize, size: usize) -> *mut ffi::PyObject {
    let py = bytes.py();
    vectorcall::into_result(py, shrunk_to(bytes, received, size).map(|bytes| bytes.into_any().unbind()))
}

/// `recv_into` of `wanted` bytes (0: the whole buffer): how many were received (an int), or NULL with the exception
/// set. The buffer is held, as the stdlib holds it, until the call returns; the view stays in this frame, unmoved.
fn recv_into_here(
    sock: &Bound<'_, PyAny>,
    buffer: &Bound<'_, PyAny>,
    wanted: usize,
    flags: c_int,
    timeout: Option<f64>,
) -> *mut ffi::PyObject {
    let py = sock.py();
    let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::zeroed();
    // SAFETY: `view` is a zeroed Py_buffer for PyObject_GetBuffer to fill in; `buffer` is a live object.
    if unsafe { ffi::PyObject_GetBuffer(buffer.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_WRITABLE) } != 0 {
        return refused(buffer);
    }
    // SAFETY: PyObject_GetBuffer succeeded, so the view is initialised.
    let (storage, length) = unsafe { (view.assume_init_ref().buf, view.assume_init_ref().len) };
    let received = match checked_size(py, wanted, usize::try_from(length).unwrap_or(0)) {
        Some(size) => read(sock, flags, size, timeout, |n| *n, |fd| Some(recv_into_try(fd, storage, size, flags))),
        None => None,
    };
    // SAFETY: the view came from the successful PyObject_GetBuffer above and is released once, with the GIL held.
    unsafe { ffi::PyBuffer_Release(view.as_mut_ptr()) };
    match received {
        // SAFETY: PyLong_FromSize_t returns a new reference, or NULL with the exception set.
        Some(received) => unsafe { ffi::PyLong_FromSize_t(received) },
        None => ptr::null_mut(),
    }
}

/// recv(2) of up to `size` bytes into `storage`.
#[inline(never)]
fn recv_into_try(fd: c_int, storage: *mut c_void, size: usize, flags: c_int) -> Result<usize, c_int> {
    // SAFETY: `storage` is a held writable buffer of at least `size` bytes (`checked_size`); recv(2) writes at most
    // that many.
    outcome(unsafe { libc::recv(fd, storage, size, flags) })
}

/// NULL, with `recv_into`'s error for an object without a writable buffer set in place of the one raised.
#[cold]
#[inline(never)]
fn refused(buffer: &Bound<'_, PyAny>) -> *mut ffi::PyObject {
    drop(PyErr::fetch(buffer.py()));
    vectorcall::into_result(buffer.py(), Err(not_writable(buffer)))
}

/// `into_size`, its error set rather than returned.
#[inline(never)]
fn checked_size(py: Python<'_>, wanted: usize, length: usize) -> Option<usize> {
    into_size(wanted, length).map_err(|err| err.restore(py)).ok()
}

/// `cooperative_read` in CPython's convention: the result of the `attempt` that succeeded, or None with the
/// exception set. This frame stays on the stack of a greenlet parked in it, so everything but the loop is out of
/// line.
fn read<T>(
    sock: &Bound<'_, PyAny>,
    flags: c_int,
    size: usize,
    timeout: Option<f64>,
    count: impl Fn(&T) -> usize,
    mut attempt: impl FnMut(c_int) -> Option<Result<T, c_int>>,
) -> Option<T> {
    let mut patience = Patience::new(timeout, flags);
    let table_fd = drain_record(sock, flags)?;
    if let Some((table_fd, fd)) = table_fd {
        if is_drained(sock.py(), table_fd) && !patience.never_wait && !wait(sock, fd, &mut patience) {
            return None;
        }
    }
    loop {
        let fd = fd_or_raise(sock)?;
        let errno = match attempt(fd)? {
            Ok(done) => {
                if let Some((table_fd, _)) = table_fd {
                    note_drained(sock.py(), table_fd, count(&done), size);
                }
                return Some(done);
            }
            Err(errno) => errno,
        };
        let again = errno == libc::EAGAIN || errno == libc::EWOULDBLOCK;
        let retry =
            if again && !patience.never_wait { wait(sock, fd, &mut patience) } else { retry_after(sock, errno) };
        if !retry {
            return None;
        }
    }
}

/// The fd table's index and the socket's fd when a short read of `sock` shows its queue empty (`short_read_drains`),
/// Some(None) when not, None with the exception set when `sock` is no socket.
#[inline(never)]
fn drain_record(sock: &Bound<'_, PyAny>, flags: c_int) -> Option<Option<(usize, c_int)>> {
    let head = head_of(sock).map_err(|err| err.restore(sock.py())).ok()?;
    let table_fd = usize::try_from(head.sock_fd).ok().filter(|_| short_read_drains(head, flags));
    Some(table_fd.map(|table_fd| (table_fd, head.sock_fd)))
}

/// Whether the fd table records `table_fd`'s receive queue empty (a thread without a loop records nothing).
#[inline(never)]
fn is_drained(py: Python<'_>, table_fd: usize) -> bool {
    current::existing(py).is_some_and(|loop_| loop_.get().fds.borrow().is_drained(table_fd))
}

/// Records `table_fd`'s queue empty after a short read (`received` of `size`, not 0).
#[inline(never)]
fn note_drained(py: Python<'_>, table_fd: usize, received: usize, size: usize) {
    if received > 0 && received < size {
        if let Some(loop_) = current::existing(py) {
            loop_.get().fds.borrow_mut().mark_drained(table_fd);
        }
    }
}

/// The socket's fd (`head_of`), or None with the exception set.
#[inline(never)]
fn fd_or_raise(sock: &Bound<'_, PyAny>) -> Option<c_int> {
    head_of(sock).map(|head| head.sock_fd).map_err(|err| err.restore(sock.py())).ok()
}

/// After a failed try that does not wait: true to try again (EINTR, the signal handlers ran and raised nothing),
/// false with the exception set.
#[inline(never)]
fn retry_after(sock: &Bound<'_, PyAny>, errno: c_int) -> bool {
    let py = sock.py();
    let failed = if errno == libc::EINTR { check_signals(py).err() } else { Some(os_error(errno)) };
    failed.map(|err| err.restore(py)).is_none()
}

/// `wait_within` for a read: true once the socket is readable, false with the exception set (the timeout error
/// once `patience` has run out). Its frame stays while parked, so it only waits.
#[inline(never)]
fn wait(sock: &Bound<'_, PyAny>, fd: c_int, patience: &mut Patience) -> bool {
    let Some((loop_, fd, timeout, referenced)) = before_wait(sock, fd, patience) else { return false };
    let waited = loop_.get().wait_fd_current(sock.py(), fd, Direction::Read, timeout, None, referenced, true);
    after_wait(sock.py(), waited)
}

/// What a wait needs (`patience.remaining()` and `parking_place`), or None with the exception set.
#[inline(never)]
fn before_wait<'py>(
    sock: &Bound<'py, PyAny>,
    fd: c_int,
    patience: &mut Patience,
) -> Option<(Bound<'py, Loop>, usize, Option<f64>, bool)> {
    let place = patience.remaining().and_then(|timeout| {
        let (loop_, fd, referenced) = parking_place(sock, fd, Direction::Read, true)?;
        Ok((loop_, fd, timeout, referenced))
    });
    place.map_err(|err| err.restore(sock.py())).ok()
}

/// True if the wait ended with the socket ready; false with the exception set (the timeout error on a timeout).
#[inline(never)]
fn after_wait(py: Python<'_>, waited: PyResult<bool>) -> bool {
    match waited {
        Ok(true) => true,
        Ok(false) => {
            timed_out().restore(py);
            false
        }
        Err(err) => {
            err.restore(py);
            false
        }
    }
}
