//! `Greenlet.run`, in Rust: the first code a started Greenlet runs.
//!
//! greenlet calls `self.run()` as the new greenlet's first frame. Were `run` Python, its frame would sit under the
//! greenlet's function for the greenlet's whole life, with a second interpreter C frame for the `f(*args,
//! **kwargs)` call, and it would be the frame that makes CPython give the greenlet a fresh 16 KiB frame-stack
//! chunk. From Rust, the function's frame is the greenlet's first Python frame, and before it is pushed the
//! greenlet gets a small frame stack of its own (`frame_stack`).
//!
//! Everything under the function's call stays on a parked greenlet's C stack, which greenlet copies to the heap
//! while the greenlet is parked; so `run` is a plain C method bound straight to the instance (no bound-method
//! object, no PyO3 trampoline), and only the call itself is done in its frame: the steps before and after are
//! out-of-line calls. The steps stay in Python where they are policy (`_begin`, `_report_result`,
//! `_report_error`, `_free`).

use std::ptr;
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::intern;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::frame_stack;

/// The descriptor a Greenlet class holds as `run`: on an instance it gives `run` bound to that instance.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct GreenletRun;

/// `run`'s method definition, made once and kept for the life of the process (CPython points at it).
struct RunDef(*mut ffi::PyMethodDef);
// SAFETY: the definition is immutable once made; CPython only reads it, with the GIL held.
unsafe impl Send for RunDef {}
// SAFETY: as above.
unsafe impl Sync for RunDef {}

static RUN_DEF: OnceLock<RunDef> = OnceLock::new();

fn run_def() -> *mut ffi::PyMethodDef {
    RUN_DEF
        .get_or_init(|| {
            RunDef(Box::into_raw(Box::new(ffi::PyMethodDef {
                ml_name: c"run".as_ptr(),
                ml_meth: ffi::PyMethodDefPointer { PyCFunction: run_entry },
                ml_flags: ffi::METH_NOARGS,
                ml_doc: c"Runs the greenlet's function and records how it ended.".as_ptr(),
            })))
        })
        .0
}

#[pymethods]
impl GreenletRun {
    #[new]
    fn new() -> Self {
        Self
    }

    fn __get__(
        slf: &Bound<'_, Self>,
        instance: Option<&Bound<'_, PyAny>>,
        _owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(instance) = instance else { return Ok(slf.clone().into_any().unbind()) };
        // SAFETY: the definition lives for the process; `instance` is a live object, which the new function
        // holds a reference to. A new reference, or NULL with an exception set, which becomes an error.
        let bound = unsafe { ffi::PyCFunction_NewEx(run_def(), instance.as_ptr(), ptr::null_mut()) };
        // SAFETY: `bound` is a new reference or NULL, as above.
        unsafe { Bound::from_owned_ptr_or_err(slf.py(), bound) }.map(Bound::unbind)
    }
}

/// CPython's entry point for `greenlet.run()`: `instance` is the greenlet, the second argument unused (NOARGS).
unsafe extern "C" fn run_entry(instance: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the GIL held, and `instance` is the live object the method is bound to.
    std::panic::catch_unwind(|| unsafe { run_greenlet(instance) }).unwrap_or_else(|_| panicked())
}

#[cold]
#[inline(never)]
fn panicked() -> *mut ffi::PyObject {
    // SAFETY: only called from `run_entry`, which holds the GIL.
    let py = unsafe { Python::assume_attached() };
    PanicException::new_err("ferrovent: panic while running a greenlet").restore(py);
    ptr::null_mut()
}

/// Runs the greenlet's function; returns None, or NULL with an exception set. Errors from the function are the
/// greenlet's outcome, not this call's: only a failure in the bookkeeping itself propagates (to the hub, which
/// reports it).
///
/// # Safety
/// The GIL is held and `instance` is a live greenlet, borrowed for the call.
#[inline(never)]
unsafe fn run_greenlet(instance: *mut ffi::PyObject) -> *mut ffi::PyObject {
    frame_stack::give_current_greenlet_a_small_stack();
    // SAFETY: `instance` is live and borrowed for the call (see above).
    let call = unsafe { begin(instance) };
    if call.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `begin` returned a tuple (function, args tuple, kwargs dict), which we hold for the call.
    let result = unsafe {
        ffi::PyObject_Call(
            ffi::PyTuple_GET_ITEM(call, 0),
            ffi::PyTuple_GET_ITEM(call, 1),
            ffi::PyTuple_GET_ITEM(call, 2),
        )
    };
    // SAFETY: as for `begin`; `result` is PyObject_Call's new reference or NULL; `call` is ours to release.
    unsafe { finish(instance, result, call) }
}

/// `(_begin(), args, kwargs)`: the function to call (`_begin` marks the greenlet as run), its args tuple and
/// kwargs dict; a new reference, or NULL with an exception set.
///
/// # Safety
/// As for `run_greenlet`.
#[inline(never)]
unsafe fn begin(instance: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the caller holds the GIL; `instance` is live for the call.
    let (py, greenlet) = unsafe { attached(instance) };
    let call = || -> PyResult<Bound<'_, PyAny>> {
        let function = greenlet.call_method0(intern!(py, "_begin"))?;
        let args = greenlet.getattr(intern!(py, "args"))?.cast_into::<PyTuple>()?;
        let kwargs = greenlet.getattr(intern!(py, "kwargs"))?.cast_into::<PyDict>()?;
        Ok((function, args, kwargs).into_pyobject(py)?.into_any())
    };
    call().map_or_else(|err| fail(py, err), Bound::into_ptr)
}

/// Records the call's result, then frees the greenlet's function and arguments whatever happens. Returns as
/// `run_greenlet` does.
///
/// # Safety
/// As for `run_greenlet`; `result` is a new reference or NULL with an exception set; `call` a new reference.
#[inline(never)]
unsafe fn finish(
    instance: *mut ffi::PyObject,
    result: *mut ffi::PyObject,
    call: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the caller holds the GIL; `instance` is live for the call.
    let (py, greenlet) = unsafe { attached(instance) };
    // SAFETY: `call` is a new reference the caller hands over; `result` as documented above.
    let (call, result) = unsafe { (Bound::from_owned_ptr(py, call), Bound::from_owned_ptr_or_err(py, result)) };
    drop(call);
    let outcome = match result {
        Ok(value) => greenlet.call_method1(intern!(py, "_report_result"), (value,)),
        Err(err) => {
            let exc_info = (err.get_type(py), err.value(py).clone(), err.traceback(py));
            greenlet.call_method1(intern!(py, "_report_error"), (exc_info,))
        }
    };
    let freed = greenlet.call_method0(intern!(py, "_free"));
    match outcome.and(freed) {
        Ok(_) => py.None().into_ptr(),
        Err(err) => fail(py, err),
    }
}

/// The GIL token and the greenlet, from `run`'s raw arguments.
///
/// # Safety
/// The GIL is held and `instance` is live for `'py`.
unsafe fn attached<'py>(instance: *mut ffi::PyObject) -> (Python<'py>, Bound<'py, PyAny>) {
    // SAFETY: as documented.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: as documented; a borrowed pointer becomes a new strong reference.
    (py, unsafe { Bound::from_borrowed_ptr(py, instance) })
}

#[cold]
#[inline(never)]
fn fail(py: Python<'_>, err: PyErr) -> *mut ffi::PyObject {
    err.restore(py);
    ptr::null_mut()
}
