//! The calling thread's loop, so module-level waits (`sleep`) skip the Python-level hub lookup.
//!
//! The thread-local holds a weak reference: a strong one would keep a finished thread's hub and loop alive (its
//! destructor runs without the GIL, so the release would only be queued).

use std::cell::RefCell;
use std::ffi::CStr;
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyWeakrefReference;

use crate::event_loop::Loop;
use crate::vectorcall::{self, Arguments, Object};

/// A thread's weak reference to its loop. The hub clears it while the thread's Python state still exists (see
/// `ferrovent.hub`); thread-local destructors run after that state is gone, when no Python object may be touched,
/// so a reference still held then is abandoned rather than released.
struct ThreadLoop(Option<Py<PyWeakrefReference>>);

impl Drop for ThreadLoop {
    fn drop(&mut self) {
        if let Some(weak) = self.0.take() {
            std::mem::forget(weak);
        }
    }
}

thread_local! {
    static CURRENT: RefCell<ThreadLoop> = const { RefCell::new(ThreadLoop(None)) };
}

/// Records `loop_` as this thread's loop (the hub calls this when it is made), or forgets it.
pub fn set(loop_: Option<&Bound<'_, Loop>>) -> PyResult<()> {
    let weak = loop_.map(|l| PyWeakrefReference::new(l.as_any())).transpose()?.map(Bound::unbind);
    let previous = CURRENT.with(|current| std::mem::replace(&mut current.borrow_mut().0, weak));
    drop(previous); // outside the borrow: releasing it may run Python code
    Ok(())
}

/// Forgets this thread's loop if it is `loop_` (it was destroyed).
pub fn forget(loop_: &Bound<'_, Loop>) -> PyResult<()> {
    let py = loop_.py();
    let current = CURRENT.with(|current| current.borrow().0.as_ref().and_then(|weak| weak.bind(py).upgrade()));
    if current.is_some_and(|found| found.is(loop_)) {
        set(None)?;
    }
    Ok(())
}

/// This thread's loop if it has one; None rather than making a hub.
pub fn existing(py: Python<'_>) -> Option<Bound<'_, Loop>> {
    let found = CURRENT.with(|current| current.borrow().0.as_ref().and_then(|weak| weak.bind(py).upgrade()));
    found.and_then(|loop_| loop_.cast_into::<Loop>().ok())
}

/// This thread's loop, creating the hub (through `ferrovent.hub.get_hub`) if the thread has none yet.
pub fn get(py: Python<'_>) -> PyResult<Bound<'_, Loop>> {
    if let Some(loop_) = existing(py) {
        return Ok(loop_);
    }
    let hub = py.import("ferrovent.hub")?.call_method0("get_hub")?;
    let loop_ = hub.getattr("loop")?.cast_into::<Loop>()?;
    loop_.get().check_thread()?; // refuses a destroyed loop
    Ok(loop_)
}

/// `sleep(seconds=0, ref=True)` with PyO3's argument handling: the call shapes `sleep_entry` passes on (keywords,
/// `ref`, a seconds that is not an exact float or int), with PyO3's errors. Not a module attribute.
#[pyfunction]
#[pyo3(signature = (seconds=0.0, r#ref=true))]
fn sleep(py: Python<'_>, seconds: f64, r#ref: bool) -> PyResult<()> {
    // SAFETY: a new reference, or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, sleep_here(py, seconds, r#ref)) }.map(drop)
}

/// Parks the current greenlet in this thread's loop: None, or NULL with the exception set (no `PyResult` in the
/// frames a sleeping greenlet keeps; see `Loop::sleep_current_raw`).
#[inline(never)]
fn sleep_here(py: Python<'_>, seconds: f64, referenced: bool) -> *mut ffi::PyObject {
    match loop_or_raise(py) {
        Some(loop_) => loop_.get().sleep_current_raw(py, seconds, referenced),
        None => ptr::null_mut(),
    }
}

/// This thread's loop, or None with the exception set.
#[inline(never)]
fn loop_or_raise(py: Python<'_>) -> Option<Bound<'_, Loop>> {
    get(py).map_err(|err| err.restore(py)).ok()
}

/// The PyO3-wrapped `sleep`, for the call shapes the fast entry does not take.
static SLEEP_WITH_ARGUMENTS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The docstring, with the signature CPython reads into `__text_signature__` (what PyO3 would write).
const SLEEP_DOC: &CStr =
    c"sleep(seconds=0.0, ref=...)\n--\n\n`sleep(seconds=0, ref=True)`: parks the current greenlet for \
`seconds`; 0 yields to everything already ready.";

/// Adds `sleep`: a plain vectorcall builtin (rust/vectorcall.rs), whose C frame stays on every sleeping greenlet's
/// saved stack, so it is kept small (PyO3's trampoline frame is ~340 bytes, copied out and back at every switch).
/// `sleep()` and `sleep(x)` with `x` an exact float or int are handled here; every other shape goes to the
/// PyO3-wrapped `sleep`, which parses and fails exactly as before.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let general = wrap_pyfunction!(sleep, m)?.into_any();
    vectorcall::install_function::<FastSleep>(m, c"sleep", general, SLEEP_DOC)
}

/// `sleep()` and `sleep(seconds)` with `seconds` an exact float or int, taken by its vectorcall entry.
struct FastSleep;

impl vectorcall::FastCall for FastSleep {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &SLEEP_WITH_ARGUMENTS;

    unsafe fn fast(py: Python<'_>, _: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        let seconds = match nargs {
            0 => 0.0,
            // SAFETY: per the trait's contract, one borrowed reference; the GIL is held.
            1 => unsafe { vectorcall::exact_seconds(*args) }?,
            _ => return None,
        };
        Some(sleep_here(py, seconds, true))
    }
}
