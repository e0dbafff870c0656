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
//! it. The transport class keeps it in `__slots__` (`State`), so where it can be it is read in place, at the offset
//! the slot's member descriptor gives (`Attributes`), rather than with a lookup in the instance's `__dict__`, which
//! cost the echo more than its syscalls. What is found is the same: only on an instance of the class installed on,
//! while the class's lookup of each name finds the member descriptor it had at install (checked again whenever the
//! class or a base changes, by its version tag); an empty slot, or a property put in its place, is looked up as
//! usual. (A CPython internal, the member descriptor's layout: crate::slots.)

use std::cell::RefCell;
use std::ffi::CStr;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyMemoryView, PySlice, PyTuple, PyType};
use pyo3::{ffi, intern};

use crate::slots::{read_slot, slot_offset};
use crate::type_version::KeptVerdict;
use crate::vectorcall::{self, Arguments, Object};

thread_local! {
    /// The buffer every read of this thread goes into first: as large as the largest `max_size` asked for.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The transport's state the Rust read and write read at each call: `__slots__` members of the transport class
/// (python/ferrovent/asyncio/_transport.py, which takes their names from `AIO_TRANSPORT_STATE`), read in place
/// where `Attributes` may.
#[derive(Clone, Copy)]
enum State {
    ReadsInRust,
    WritesInRust,
    ConnLost,
    Sock,
    Protocol,
    Eof,
    EmptyWaiter,
    Buffer,
    Closing,
}

/// Each `State`'s name, in the enum's order (`_core.AIO_TRANSPORT_STATE`).
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

/// Adds `AioReadReady`, `install_aio_transport` and `AIO_TRANSPORT_STATE` (the names of the transport class's slots).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AioReadReady>()?;
    m.add_function(wrap_pyfunction!(install_aio_transport, m)?)?;
    m.add("AIO_TRANSPORT_STATE", PyTuple::new(m.py(), STATE_NAMES)?)
}

impl State {
    fn name(self) -> &'static str {
        STATE_NAMES[self as usize]
    }
}

/// Where the transport class keeps one `State`.
struct Slot {
    /// The member descriptor the class defined for it at install.
    descriptor: Py<PyAny>,
    offset: isize,
}

/// The class `install_aio_transport` was given, and its `Slot` per `State` (in `STATE_NAMES`'s order).
struct TransportClass {
    class: Py<PyType>,
    slots: Vec<Slot>,
    /// Whether the class's lookup of each `State` still finds the member descriptor it had at install, kept while
    /// the class is unchanged.
    slots_found: KeptVerdict,
}

static TRANSPORT_CLASS: PyOnceLock<TransportClass> = PyOnceLock::new();

impl TransportClass {
    /// TypeError if `class` does not define each `State` as a slot of its own.
    fn new(class: &Bound<'_, PyType>) -> PyResult<Self> {
        let namespace = class.getattr(intern!(class.py(), "__dict__"))?;
        let slot = |name: &&str| -> PyResult<Slot> {
            Ok(Slot { offset: slot_offset(class, name)?, descriptor: namespace.get_item(name)?.unbind() })
        };
        let slots = STATE_NAMES.iter().map(slot).collect::<PyResult<_>>()?;
        Ok(Self { class: class.clone().unbind(), slots, slots_found: KeptVerdict::new() })
    }

    /// The slots `transport`'s state may be read from, if it may: it is an instance of the class (not a subclass),
    /// on which object's attribute lookup finds, for each `State`, the member descriptor the class had at install
    /// (a property put in its place, or a `__getattribute__` of the class's own, is honoured: no slot is read).
    fn readable_slots(&self, transport: &Bound<'_, PyAny>) -> PyResult<Option<&[Slot]>> {
        let py = transport.py();
        let class = self.class.bind(py);
        // SAFETY: reads the type pointer of a live object.
        if unsafe { ffi::Py_TYPE(transport.as_ptr()) } != class.as_type_ptr() {
            return Ok(None);
        }
        let readable = self.slots_found.get(class, || {
            let object_lookup = py.get_type::<PyAny>().getattr(intern!(py, "__getattribute__"))?;
            if !class.getattr(intern!(py, "__getattribute__"))?.is(&object_lookup) {
                return Ok(false);
            }
            let namespace = class.getattr(intern!(py, "__dict__"))?;
            let unchanged =
                |(name, slot): (&&str, &Slot)| namespace.get_item(name).is_ok_and(|found| found.is(&slot.descriptor));
            Ok(STATE_NAMES.iter().zip(&self.slots).all(unchanged))
        })?;
        Ok(readable.then_some(self.slots.as_slice()))
    }
}

/// A transport's `State` as the Rust read and write look it up: from its slot where `readable_slots` says so and
/// the slot is set, else with the usual attribute lookup (which raises AttributeError for an empty slot).
struct Attributes<'a, 'py> {
    transport: &'a Bound<'py, PyAny>,
    slots: Option<&'py [Slot]>,
}

impl<'a, 'py> Attributes<'a, 'py> {
    fn of(transport: &'a Bound<'py, PyAny>) -> PyResult<Self> {
        let slots = match TRANSPORT_CLASS.get(transport.py()) {
            Some(class) => class.readable_slots(transport)?,
            None => None,
        };
        Ok(Self { transport, slots })
    }

    fn get(&self, state: State) -> PyResult<Bound<'py, PyAny>> {
        if let Some(slots) = self.slots {
            // SAFETY: the offset is `slot_offset`'s for the transport's own class (`readable_slots` checked it).
            if let Some(value) = unsafe { read_slot(self.transport, slots[state as usize].offset) } {
                return Ok(value);
            }
        }
        self.transport.getattr(state.name())
    }

    fn truth(&self, state: State) -> PyResult<bool> {
        let value = self.get(state)?;
        // SAFETY: the GIL is held; the singletons are only compared with.
        let (true_, false_, none) = unsafe { (ffi::Py_True(), ffi::Py_False(), ffi::Py_None()) };
        match value.as_ptr() {
            // the flags' usual values: the answer PyObject_IsTrue would give, without the call
            found if found == true_ => Ok(true),
            found if found == false_ || found == none => Ok(false),
            _ => value.is_truthy(),
        }
    }
}

/// `_socket.socket`, and its `fileno`: the `fileno` of the sockets the Rust read and write serve (`_reads_in_rust`
/// and `_writes_in_rust` say so only for a socket whose class's `fileno` is this one).
struct PlainSocket {
    class: Py<PyType>,
    /// `socket.socket` as it was at install (`class` if that is no subclass of it): the usual sockets' class, told
    /// by its address alone (kept alive here, so no other type takes that address).
    usual_subclass: Py<PyType>,
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
        let patched_or_not = py.import("socket")?.getattr("socket")?;
        let usual_subclass = match patched_or_not.cast_into::<PyType>() {
            Ok(subclass) if subclass.is_subclass(&class)? => subclass,
            _ => class.clone(),
        };
        Ok(Self {
            class: class.unbind(),
            usual_subclass: usual_subclass.unbind(),
            fileno: fileno.unbind(),
            fd_in_place,
        })
    }
}

/// The fd of the transport's socket: `transport._sock.fileno()`, read in place (`sock_fd_in_place`) or calling the
/// `fileno` it has without looking it up.
fn socket_fd(py: Python<'_>, attributes: &Attributes<'_, '_>) -> PyResult<libc::c_int> {
    let sock = attributes.get(State::Sock)?;
    let Some(PlainSocket { class, usual_subclass, fileno, fd_in_place }) = PLAIN_SOCKET.get(py) else {
        return sock.call_method0(intern!(py, "fileno"))?.extract();
    };
    // SAFETY: a live object and live types.
    let plain = unsafe {
        let kind = ffi::Py_TYPE(sock.as_ptr());
        kind == usual_subclass.bind(py).as_type_ptr()
            || ffi::PyObject_TypeCheck(sock.as_ptr(), class.bind(py).as_type_ptr()) != 0
    };
    if *fd_in_place && plain {
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
        if !attributes.truth(State::ReadsInRust)? {
            return transport.getattr(intern!(py, "_read_ready_cb"))?.call0().map(drop);
        }
        if attributes.truth(State::ConnLost)? {
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
        let protocol = attributes.get(State::Protocol)?;
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

/// `install_aio_transport(cls)`: makes `cls.write` and `cls.is_closing` (`cls` a subclass of the stdlib's socket
/// transport, whose methods it inherits) Rust methods, method descriptors whose vectorcall entries take
/// `transport.write(data)` and `transport.is_closing()` with no object made per call; every other call shape goes
/// to the inherited method. `cls` defines each `State` as a slot of its own (TypeError if not): the Rust methods
/// and reader callback (`AioReadReady`) read the state there on `cls`'s own instances, while `cls`'s lookup finds
/// those slots.
#[pyfunction]
pub fn install_aio_transport(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let py = cls.py();
    let transport_class = TransportClass::new(cls)?;
    let plain_socket = PlainSocket::new(py)?;
    vectorcall::install_method::<FastWrite>(cls, c"write", WRITE_DOC)?;
    vectorcall::install_method::<FastIsClosing>(cls, c"is_closing", IS_CLOSING_DOC)?;
    PLAIN_SOCKET.get_or_init(py, || plain_socket);
    TRANSPORT_CLASS.get_or_init(py, || transport_class);
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
        let closing = Attributes::of(&transport).and_then(|attributes| attributes.get(State::Closing));
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
fn sends_now(attributes: &Attributes<'_, '_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(bytes) = data.cast_exact::<PyBytes>() else { return Ok(false) };
    Ok(!bytes.as_bytes().is_empty()
        && attributes.truth(State::WritesInRust)?
        && !attributes.truth(State::ConnLost)?
        && !attributes.truth(State::Eof)?
        && attributes.get(State::EmptyWaiter)?.is_none()
        && !attributes.truth(State::Buffer)?)
}

/// `transport.write(data)` (see the module documentation).
fn write(py: Python<'_>, transport: &Bound<'_, PyAny>, data: Bound<'_, PyAny>) -> PyResult<()> {
    let attributes = Attributes::of(transport)?;
    if !sends_now(&attributes, &data)? {
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
