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
//! KeyboardInterrupt go up. A transport whose protocol is a BufferedProtocol, or whose socket's `recv` or `fileno` is
//! not the plain one, reads through its own `_read_ready_cb` (the transport says which, in `_reads_in_rust`).
//!
//! `install_aio_transport` makes the transport class's `write` a Rust method: the stdlib's first step, done here for a
//! non-empty `bytes` when nothing is buffered, the connection is not lost, no eof was written and no sendfile is in
//! progress: send(2) at once, and if all went, done. Every other case (other types, errors to raise, a lost connection), and a send
//! that took only part or none of the data, goes to the stdlib's own `write` (with the rest of the data), which
//! buffers it and waits for the socket to be writable as it always does; a send error goes to `_fatal_error`, as
//! the stdlib's would. A socket whose `send` or `fileno` is not the plain one is written through the stdlib's `write`
//! alone. It makes `is_closing` a Rust method too, which gives `_closing` as the stdlib's does, without a Python
//! frame (a streams writer's `drain` asks it at each call).
//!
//! The transport's state (`_conn_lost`, `_buffer`, `_sock`...) is read at each call, as the stdlib's methods read
//! it, and where it can be, from the transport's instance `__dict__` (`Attributes`): a dict lookup, not
//! `PyObject_GetAttr`'s type lookup and descriptor checks first, which cost the echo more than its syscalls. What
//! is found is the same: only on an instance of the class installed on whose lookup of those names finds no data
//! descriptor (a property would come before the instance's dict), checked again whenever the class or a base
//! changes (its version tag); a name missing from the dict is looked up as usual.

use std::cell::RefCell;
use std::ffi::CStr;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyMemoryView, PySlice, PyString, PyTuple, PyType};
use pyo3::{ffi, intern};

use crate::type_version::KeptVerdict;
use crate::vectorcall::{self, Arguments, Object};

thread_local! {
    /// The buffer every read of this thread goes into first: as large as the largest `max_size` asked for.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The transport attributes the Rust read and write look up at each call: found in the instance's `__dict__` where
/// `Attributes` may look there.
/// (`max_size`, a class attribute that instances do not set, is looked up as usual: a dict lookup would miss.)
const STATE_NAMES: [&str; 9] = [
    "_reads_in_rust",
    "_writes_in_rust",
    "_conn_lost",
    "_sock",
    "_protocol",
    "_eof",
    "_empty_waiter",
    "_buffer",
    "_closing",
];

/// The class `install_aio_transport` was given, and `check(cls, names)`: whether its lookup of `names` may start with
/// the instance's `__dict__` (python/ferrovent/asyncio/_transport.py).
static TRANSPORT_CLASS: PyOnceLock<(Py<PyType>, Py<PyAny>)> = PyOnceLock::new();

/// `check`'s answer about the class, kept while the class is unchanged.
static STATE_IN_DICT: KeptVerdict = KeptVerdict::new();

/// Whether `transport`'s `STATE_NAMES` may be looked up in its `__dict__` first: it is an instance of the class
/// installed on (not a subclass), whose check passed at its current version tag.
fn state_in_dict(py: Python<'_>, transport: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Some((class, check)) = TRANSPORT_CLASS.get(py) else { return Ok(false) };
    let class = class.bind(py);
    // SAFETY: reads the type pointer of a live object.
    if unsafe { ffi::Py_TYPE(transport.as_ptr()) } != class.as_type_ptr() {
        return Ok(false);
    }
    STATE_IN_DICT.get(class, || check.bind(py).call1((class, PyTuple::new(py, STATE_NAMES)?))?.is_truthy())
}

/// A transport's `STATE_NAMES` as the Rust read and write look them up (see the module documentation).
struct Attributes<'a, 'py> {
    transport: &'a Bound<'py, PyAny>,
    /// The instance's `__dict__`, where it may be looked in first.
    dict: Option<Bound<'py, PyDict>>,
}

impl<'a, 'py> Attributes<'a, 'py> {
    fn of(transport: &'a Bound<'py, PyAny>) -> PyResult<Self> {
        let py = transport.py();
        let dict = if state_in_dict(py, transport)? {
            // SAFETY: a live object; a new reference to its `__dict__` (made if it had none yet), or NULL with an
            // exception set (no `__dict__`), in which case the attributes are looked up as usual.
            let dict = unsafe {
                Bound::from_owned_ptr_or_err(py, ffi::PyObject_GenericGetDict(transport.as_ptr(), std::ptr::null_mut()))
            };
            dict.ok().and_then(|dict| dict.cast_into::<PyDict>().ok())
        } else {
            None
        };
        Ok(Self { transport, dict })
    }

    /// `transport.name`, `name` one of `STATE_NAMES`.
    fn get(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
        debug_assert!(STATE_NAMES.iter().any(|known| name == *known));
        if let Some(dict) = &self.dict {
            let py = dict.py();
            // SAFETY: a live dict and a str key (whose hash is cached: an interned name); a borrowed reference,
            // made our own before anything else runs, or NULL, with an exception set only if the lookup failed.
            // Called directly: ten lookups per echo round trip, and pyo3's `get_item` around them was a fifth of
            // their cost (perf of the echo_protocol server: 2.6% of its CPU, 2.0% this way).
            unsafe {
                let found = ffi::PyDict_GetItemWithError(dict.as_ptr(), name.as_ptr());
                if !found.is_null() {
                    return Ok(Bound::from_borrowed_ptr(py, found));
                }
                if !ffi::PyErr_Occurred().is_null() {
                    return Err(PyErr::fetch(py));
                }
            }
        }
        self.transport.getattr(name)
    }

    fn truth(&self, name: &Bound<'py, PyString>) -> PyResult<bool> {
        self.get(name)?.is_truthy()
    }
}

/// `_socket.socket`, and its `fileno`: the `fileno` of the sockets the Rust read and write serve (`_reads_in_rust`
/// and `_writes_in_rust` say so only for a socket whose class's `fileno` is this one).
struct PlainSocket {
    class: Py<PyType>,
    fileno: Py<PyAny>,
    /// Whether the fd may be read from the object itself (`sock_fd_in_place`).
    fd_in_place: bool,
}

static PLAIN_SOCKET: PyOnceLock<PlainSocket> = PyOnceLock::new();

/// The fd a `_socket.socket` (or an instance of a subclass, which extends its layout) keeps in itself: CPython's
/// `PySocketSockObject` (Modules/socketmodule.h, the layout the ssl module is built against) is the object header
/// and then `sock_fd`, an int on Unix, which `fileno()` returns (-1 once closed or detached). Read there, it saves
/// a call per read and per write (1.5% of the echo server's CPU). `PlainSocket::new` checks on a real socket that
/// it is there; the transport using it exists only on the asyncio fast path's Python versions, and not at all with
/// `FERROVENT_ASYNCIO_FAST=0` (python/ferrovent/asyncio/_loop.py).
///
/// # Safety
/// `sock` is a live instance of `_socket.socket` or of a subclass.
unsafe fn sock_fd_in_place(sock: &Bound<'_, PyAny>) -> libc::c_int {
    // SAFETY: per the contract, the int after the object header is the socket's `sock_fd`.
    unsafe { sock.as_ptr().cast::<u8>().add(std::mem::size_of::<ffi::PyObject>()).cast::<libc::c_int>().read() }
}

impl PlainSocket {
    fn new(py: Python<'_>) -> PyResult<Self> {
        let class = py.import("_socket")?.getattr("socket")?.cast_into::<PyType>()?;
        let fileno = class.getattr("fileno")?;
        // `sock_fd_in_place` gives what `fileno()` does, on a socket open and then closed
        let sock = class.call1((libc::AF_UNIX, libc::SOCK_STREAM))?;
        let agrees = |sock: &Bound<'_, PyAny>| -> PyResult<bool> {
            // SAFETY: `sock` is a `_socket.socket`.
            Ok(unsafe { sock_fd_in_place(sock) } == sock.call_method0("fileno")?.extract::<libc::c_int>()?)
        };
        let open = agrees(&sock)?;
        sock.call_method0("close")?;
        let fd_in_place = open && agrees(&sock)?;
        Ok(Self { class: class.unbind(), fileno: fileno.unbind(), fd_in_place })
    }
}

/// The fd of the transport's socket: `transport._sock.fileno()`, read in place (`sock_fd_in_place`) or calling the
/// `fileno` it has without looking it up.
fn socket_fd(py: Python<'_>, attributes: &Attributes<'_, '_>) -> PyResult<libc::c_int> {
    let sock = attributes.get(intern!(py, "_sock"))?;
    let Some(PlainSocket { class, fileno, fd_in_place }) = PLAIN_SOCKET.get(py) else {
        return sock.call_method0(intern!(py, "fileno"))?.extract();
    };
    // SAFETY: a live object and a live type.
    if *fd_in_place && unsafe { ffi::PyObject_TypeCheck(sock.as_ptr(), class.bind(py).as_type_ptr()) } != 0 {
        // SAFETY: `sock` is a `_socket.socket` or an instance of a subclass (just checked).
        return Ok(unsafe { sock_fd_in_place(&sock) });
    }
    let args = [sock.as_ptr()];
    // SAFETY: `fileno` is a live method descriptor, `args` one borrowed reference alive for the call (the
    // descriptor checks its type); a new reference, or NULL with an exception set.
    let fd = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_Vectorcall(fileno.as_ptr(), args.as_ptr(), 1, std::ptr::null_mut()),
        )
    }?;
    fd.extract()
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
    /// The call itself (`AioLoop` makes it directly when it runs the reader's handle).
    pub(crate) fn read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let transport = self.transport.bind(py);
        let attributes = Attributes::of(transport)?;
        if !attributes.truth(intern!(py, "_reads_in_rust"))? {
            return transport.getattr(intern!(py, "_read_ready_cb"))?.call0().map(drop);
        }
        if attributes.truth(intern!(py, "_conn_lost"))? {
            return Ok(());
        }
        let max_size: usize = transport.getattr(intern!(py, "max_size"))?.extract()?;
        let fd = socket_fd(py, &attributes)?;
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
        let protocol = attributes.get(intern!(py, "_protocol"))?;
        match protocol.call_method1(intern!(py, "data_received"), (data,)) {
            Ok(_) => Ok(()),
            Err(err) => Self::fatal(py, transport, err, "Fatal error: protocol.data_received() call failed."),
        }
    }

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
        self.read_ready(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.transport)
    }
}

/// The stdlib's `_SelectorSocketTransport.write`, for every call and case the Rust `write` does not take.
static STDLIB_WRITE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const WRITE_DOC: &CStr = c"write($self, data, /)\n--\n\nThe socket transport's `write`: sends a `bytes` at once \
when nothing is buffered, else the stdlib's `write`.";

/// The stdlib's `_SelectorTransport.is_closing`, for the call shapes the Rust one passes on.
static STDLIB_IS_CLOSING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const IS_CLOSING_DOC: &CStr = c"is_closing($self, /)\n--\n\nReturn True if the transport is closing or closed.";

/// `install_aio_transport(cls, check)`: makes `cls.write` and `cls.is_closing` (`cls` a subclass of the stdlib's
/// socket transport, whose methods it inherits) Rust methods, method descriptors whose vectorcall entries take
/// `transport.write(data)` and `transport.is_closing()` with no object made per call; every other call shape goes
/// to the inherited method. `check(cls, names)` says whether `cls`'s lookup of the attributes `names` may start with
/// an instance's `__dict__` (asked again whenever `cls` changes): where it may, the Rust methods and read of `cls`'s
/// own instances look there first.
#[pyfunction]
pub fn install_aio_transport(cls: &Bound<'_, PyType>, check: Bound<'_, PyAny>) -> PyResult<()> {
    let py = cls.py();
    vectorcall::install_method::<FastWrite>(cls, c"write", WRITE_DOC)?;
    vectorcall::install_method::<FastIsClosing>(cls, c"is_closing", IS_CLOSING_DOC)?;
    let plain_socket = PlainSocket::new(py)?;
    PLAIN_SOCKET.get_or_init(py, || plain_socket);
    TRANSPORT_CLASS.get_or_init(py, || (cls.clone().unbind(), check.unbind()));
    Ok(())
}

/// `transport.is_closing()`, taken by its vectorcall entry: the transport's `_closing`, as the stdlib's.
struct FastIsClosing;

impl vectorcall::FastCall for FastIsClosing {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &STDLIB_IS_CLOSING;

    unsafe fn fast(py: Python<'_>, slf: Object, _args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        if nargs != 0 {
            return None;
        }
        // SAFETY: per the trait's contract, `slf` is a transport (the descriptor checked its class).
        let transport = unsafe { Bound::from_borrowed_ptr(py, slf) };
        let closing = Attributes::of(&transport).and_then(|attributes| attributes.get(intern!(py, "_closing")));
        Some(vectorcall::into_result(py, closing.map(Bound::unbind)))
    }
}

/// `transport.write(data)`, taken by its vectorcall entry.
struct FastWrite;

impl vectorcall::FastCall for FastWrite {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &STDLIB_WRITE;

    unsafe fn fast(py: Python<'_>, slf: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        if nargs != 1 {
            return None;
        }
        // SAFETY: per the trait's contract, `slf` is a transport (the descriptor checked its class) and `args`
        // holds one borrowed reference.
        let (transport, data) = unsafe { (Bound::from_borrowed_ptr(py, slf), Bound::from_borrowed_ptr(py, *args)) };
        Some(vectorcall::into_result(py, write(py, &transport, data).map(|()| py.None())))
    }
}

/// The stdlib's `write` called with `transport` and `data`.
fn stdlib_write(py: Python<'_>, transport: &Bound<'_, PyAny>, data: Bound<'_, PyAny>) -> PyResult<()> {
    vectorcall::installed(py, &STDLIB_WRITE)?.bind(py).call1((transport, data)).map(drop)
}

/// Whether `data` may be sent here at once: a non-empty bytes, on a transport with nothing buffered, no eof
/// written, no sendfile in progress and the connection not lost, whose socket's `send` is the plain one.
fn sends_now(py: Python<'_>, attributes: &Attributes<'_, '_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(bytes) = data.cast_exact::<PyBytes>() else { return Ok(false) };
    Ok(!bytes.as_bytes().is_empty()
        && attributes.truth(intern!(py, "_writes_in_rust"))?
        && !attributes.truth(intern!(py, "_conn_lost"))?
        && !attributes.truth(intern!(py, "_eof"))?
        && attributes.get(intern!(py, "_empty_waiter"))?.is_none()
        && !attributes.truth(intern!(py, "_buffer"))?)
}

/// `transport.write(data)` (see the module documentation).
fn write(py: Python<'_>, transport: &Bound<'_, PyAny>, data: Bound<'_, PyAny>) -> PyResult<()> {
    let attributes = Attributes::of(transport)?;
    if !sends_now(py, &attributes, &data)? {
        return stdlib_write(py, transport, data);
    }
    let bytes = data.cast::<PyBytes>()?.as_bytes();
    let fd = socket_fd(py, &attributes)?;
    // SAFETY: send(2) reads `bytes.len()` bytes of the bytes object's storage, alive for the call.
    let sent = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), 0) };
    if let Ok(sent) = usize::try_from(sent) {
        if sent == bytes.len() {
            return Ok(());
        }
        // the rest, as a view: the stdlib's write tries once more, then buffers it and waits for writability
        let view = PyMemoryView::from(&data)?;
        let rest = view.get_item(PySlice::new(py, isize::try_from(sent)?, isize::MAX, 1))?;
        return stdlib_write(py, transport, rest);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR) => stdlib_write(py, transport, data),
        _ => {
            // SAFETY: errno is still send's; this sets OSError(errno, strerror), as CPython's socket module does.
            let err = unsafe {
                ffi::PyErr_SetFromErrno(ffi::PyExc_OSError);
                PyErr::fetch(py)
            };
            let message = "Fatal write error on socket transport";
            transport.call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message)).map(drop)
        }
    }
}
