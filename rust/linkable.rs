//! `ferrovent._core.LinkCore`: the Rust base of `ferrovent._linkable.Linkable` (Event, AsyncResult, semaphores).
//!
//! It holds the state the wait path reads (the line of links, the owning loop, Event's flag and whether woken
//! greenlets are still queued to run) and implements Event's flag methods, `wait` among them, the hottest wait
//! there is. Being Rust, that wait adds no Python frame to the greenlet it parks: a Python frame on top of a
//! greenlet that switches away needs a frame object made, and later taken apart, on every wait. It also answers,
//! cheaply, whether a change that made the object ready must be notified. Ownership, notification and links stay
//! in Python.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;

use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::event_loop::Loop;
use crate::greenlet_api;
use crate::vectorcall::{self, Arguments, Object};
use crate::waitqueue::{waited_result, LoopSlot, WaitQueue};

/// Where Event.wait stands before it parks: answered (a new reference, or NULL with the exception set), or to park
/// in this line of the loop.
enum FlagWait<'py> {
    Done(*mut ffi::PyObject),
    Park(Py<WaitQueue>, Bound<'py, Loop>),
}

#[pyclass(frozen, subclass, module = "ferrovent._core")]
pub struct LinkCore {
    links: RefCell<Py<WaitQueue>>,
    loop_: LoopSlot,
    flag: Cell<bool>,
    dispatching: Cell<bool>,
}

// SAFETY: the state is only touched with the GIL held (every entry point is a Python call), and no borrow is held
// across a call into Python or a GIL release, so the GIL serializes every access, even from another thread.
// ferrovent does not support free-threaded builds.
unsafe impl Sync for LinkCore {}

impl LinkCore {
    /// Whether a change that made the object ready must be notified: links wait, or the owner's loop belongs to
    /// another thread (one of its greenlets may be between its look at the object and its wait, with no way to
    /// see this change: only the notification, run by the owner's loop, reaches it).
    fn must_notify(&self, py: Python<'_>) -> bool {
        if !self.links.borrow().get().is_empty() {
            return true;
        }
        self.loop_.get(py).is_some_and(|lp| lp.get().check_thread().is_err())
    }

    /// Whether a waiter need not wait: the flag is set, or it comes, in the owner's loop, while a `set()`'s
    /// waiters are still being woken (it is one of them: it yields to them first).
    fn ready_for_waiter(&self, py: Python<'_>) -> PyResult<bool> {
        let woken_with_others = || -> PyResult<bool> { Ok(self.dispatching.get() && self.owner_loop(py)?.is_some()) };
        if !self.flag.get() && !woken_with_others()? {
            return Ok(false);
        }
        if self.dispatching.get() {
            self.yield_to_woken(py)?;
        }
        Ok(true)
    }

    /// The owner's loop, if it is the calling thread's.
    fn owner_loop<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, Loop>>> {
        match self.loop_.get(py) {
            Some(lp) if crate::current::get(py)?.is(lp.bind(py)) => Ok(Some(lp.into_bound(py))),
            _ => Ok(None),
        }
    }

    /// Event.wait for a timeout in seconds (or None), in CPython's result convention (True, False, or NULL with
    /// the exception set) and shaped as a wait is (see `WaitQueue::wait_raw`): its frame stays on the parked
    /// greenlet's saved C stack, so it keeps no `PyResult` and the work before the wait is out of line.
    /// `check_ready` false when the caller has just found the object not ready.
    fn wait_for_flag_raw(slf: &Bound<'_, Self>, timeout: Option<f64>, check_ready: bool) -> *mut ffi::PyObject {
        let py = slf.py();
        let (links, lp) = match Self::before_flag_wait(slf, timeout, check_ready) {
            FlagWait::Done(result) => return result,
            FlagWait::Park(links, lp) => (links, lp),
        };
        let waited = WaitQueue::wait_raw(links.bind(py), lp.get(), timeout, false, None);
        waited_result(py, waited, None)
    }

    /// What Event.wait does before it parks: answer at once, or park in the owner's loop (here, the caller's).
    /// A wait not in the owner's loop (the first one, or one from another thread) goes through `Linkable._park`.
    #[inline(never)]
    fn before_flag_wait<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>, check_ready: bool) -> FlagWait<'py> {
        let py = slf.py();
        let me = slf.get();
        let step = || -> PyResult<FlagWait<'py>> {
            if check_ready && me.ready_for_waiter(py)? {
                return Ok(FlagWait::Done(vectorcall::bool_result(py, true)));
            }
            if let Some(lp) = me.owner_loop(py)? {
                return Ok(FlagWait::Park(me.links.borrow().clone_ref(py), lp));
            }
            Ok(FlagWait::Done(slf.call_method1(intern!(py, "_park"), (timeout,))?.into_ptr()))
        };
        step().unwrap_or_else(|err| {
            err.restore(py);
            FlagWait::Done(std::ptr::null_mut())
        })
    }

    /// Lets the greenlets a notification just woke run before the caller, which found the flag set. Only on the
    /// owner's thread, outside its hub: elsewhere they run in another loop anyway, and the hub cannot wait.
    fn yield_to_woken(&self, py: Python<'_>) -> PyResult<()> {
        let Some(lp) = self.loop_.get(py) else { return Ok(()) };
        let lp = lp.bind(py).get();
        if lp.check_thread().is_err() || lp.is_hub(&greenlet_api::current(py)?) {
            return Ok(());
        }
        lp.sleep_current(py, 0.0, true)
    }
}

#[pymethods]
impl LinkCore {
    /// Empty state; `Linkable.__init__` sets it up.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(py: Python<'_>, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Ok(Self {
            links: RefCell::new(Py::new(py, WaitQueue::new_empty())?),
            loop_: LoopSlot::default(),
            flag: Cell::new(false),
            dispatching: Cell::new(false),
        })
    }

    /// The line of waiting greenlets and links.
    #[getter(_links)]
    fn get_links(&self, py: Python<'_>) -> Py<WaitQueue> {
        self.links.borrow().clone_ref(py)
    }

    #[setter(_links)]
    fn set_links(&self, value: Py<WaitQueue>) {
        let previous = self.links.replace(value);
        drop(previous); // after the borrow: releasing it may run Python code
    }

    /// The owning hub's loop (None until a greenlet waits or links).
    #[getter(_loop)]
    fn get_loop(&self, py: Python<'_>) -> Option<Py<Loop>> {
        self.loop_.get(py)
    }

    #[setter(_loop)]
    fn set_loop(&self, value: Option<Py<Loop>>) {
        self.loop_.set(value);
    }

    /// Event's flag.
    #[getter(_flag)]
    fn get_flag(&self) -> bool {
        self.flag.get()
    }

    #[setter(_flag)]
    fn set_flag(&self, value: bool) {
        self.flag.set(value);
    }

    /// True while greenlets woken by a notification are queued to run.
    #[getter(_dispatching)]
    fn get_dispatching(&self) -> bool {
        self.dispatching.get()
    }

    #[setter(_dispatching)]
    fn set_dispatching(&self, value: bool) {
        self.dispatching.set(value);
    }

    /// See `must_notify`.
    fn _must_notify(&self, py: Python<'_>) -> bool {
        self.must_notify(py)
    }

    /// Event.is_set: true if and only if the flag is set.
    fn _flag_is_set(&self) -> bool {
        self.flag.get()
    }

    /// Event.set: sets the flag and wakes every waiting greenlet (they run after the caller next yields).
    fn _set_flag(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        me.flag.set(true);
        if me.must_notify(slf.py()) {
            slf.call_method0(intern!(slf.py(), "_notify"))?;
        }
        Ok(())
    }

    /// Event.clear: resets the flag, so later waits block until the next set.
    fn _clear_flag(&self) {
        self.flag.set(false);
    }

    /// Event.wait: blocks until the flag is set, or `timeout` seconds pass.
    ///
    /// Returns True if the flag was set before or during the wait, False if the timeout expired first. A caller in
    /// the owner's loop that comes while a `set()`'s waiters are still being woken is one of them, even if
    /// `clear()` came in between (as in gevent, whose notification wakes every waiter present when it runs), and
    /// runs after the earlier ones. A wait not in the owner's loop (the first wait, or one from another thread)
    /// goes through `Linkable._park`. A timeout that is not a number (a `Timeout` instance) goes to
    /// `Linkable._wait_bounded`.
    #[pyo3(signature = (timeout=None))]
    fn _wait_for_flag(slf: &Bound<'_, Self>, timeout: Option<Bound<'_, PyAny>>) -> PyResult<bool> {
        let py = slf.py();
        if slf.get().ready_for_waiter(py)? {
            return Ok(true);
        }
        let timeout = match timeout {
            None => None,
            Some(given) => match given.extract::<f64>() {
                Ok(seconds) => Some(seconds),
                Err(_) => return slf.call_method1(intern!(py, "_wait_bounded"), (given,))?.extract(),
            },
        };
        let waited = Self::wait_for_flag_raw(slf, timeout, false);
        // SAFETY: a new reference, or NULL with the exception set.
        unsafe { Bound::from_owned_ptr_or_err(py, waited) }?.extract()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(links) = self.links.try_borrow() {
            visit.call(&*links)?;
        }
        self.loop_.traverse(&visit)
    }

    /// Drops the loop reference; the line is a container the collector clears itself.
    fn __clear__(&self) {
        self.loop_.clear();
    }
}

/// PyO3's `_wait_for_flag`, for the call shapes the fast entry passes on.
static GENERAL_WAIT_FOR_FLAG: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const WAIT_FOR_FLAG_DOC: &CStr = c"_wait_for_flag($self, timeout=None)\n--\n\nEvent.wait: blocks until the flag \
is set, or `timeout` seconds pass.\n\nReturns True if the flag was set before or during the wait, False if the \
timeout expired first. A caller in\nthe owner's loop that comes while a `set()`'s waiters are still being woken is \
one of them, even if\n`clear()` came in between (as in gevent, whose notification wakes every waiter present when \
it runs), and\nruns after the earlier ones. A wait not in the owner's loop (the first wait, or one from another \
thread)\ngoes through `Linkable._park`. A timeout that is not a number (a `Timeout` instance) goes to\n\
`Linkable._wait_bounded`.";

/// Adds `LinkCore`, with `_wait_for_flag` (Event.wait) as a plain vectorcall method (rust/vectorcall.rs) for
/// `wait()` and `wait(seconds)`: its frames stay on every waiting greenlet's saved C stack, and PyO3's trampoline
/// frame is about 340 bytes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<LinkCore>()?;
    let cls = py.get_type::<LinkCore>();
    vectorcall::install_method::<FastWaitForFlag>(&cls, c"_wait_for_flag", WAIT_FOR_FLAG_DOC)
}

/// `event.wait()` and `event.wait(timeout)` with `timeout` None or an exact number, taken by its vectorcall entry.
struct FastWaitForFlag;

impl vectorcall::FastCall for FastWaitForFlag {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &GENERAL_WAIT_FOR_FLAG;

    unsafe fn fast(py: Python<'_>, slf: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        let timeout = match nargs {
            0 => None,
            // SAFETY: per the trait's contract, one borrowed reference; the GIL is held.
            1 => unsafe { vectorcall::optional_seconds(*args) }?,
            _ => return None,
        };
        // SAFETY: `slf` is a LinkCore (the method descriptor checked it), a borrowed reference valid for the call.
        let this = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LinkCore>() };
        Some(LinkCore::wait_for_flag_raw(&this, timeout, true))
    }
}
