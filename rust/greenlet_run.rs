//! The first code a started Greenlet runs, in Rust.
//!
//! A Greenlet's `run` is `run_current_greenlet`, which greenlet calls first in the new greenlet. Were it Python,
//! its frame would sit under the greenlet's function for the greenlet's whole life, with a second interpreter C
//! frame for the `f(*args, **kwargs)` call, and it would be the frame that makes CPython give the greenlet a fresh
//! 16 KiB frame-stack chunk. From Rust, the function's frame is the greenlet's first Python frame, and before it is pushed the
//! greenlet gets a small frame stack of its own (`frame_stack`).
//!
//! Everything under the function's call stays on a parked greenlet's C stack, which greenlet copies to the heap
//! while the greenlet is parked; so this is one plain C function shared by every Greenlet (no per-greenlet bound
//! method, no PyO3 trampoline) that finds its greenlet with `getcurrent()`, and only the call itself is done in
//! its frame: the steps before and after are out-of-line calls. The steps stay in Python where they are policy
//! (`_begin`, `_returned`, `_raised`).

use std::ptr;

use pyo3::ffi;
use pyo3::intern;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::cpython::frame_stack;
use crate::greenlet_api;

/// `Greenlet.run`: on an instance, the shared `run_current_greenlet` (what greenlet calls at start, and what a
/// subclass's own run() reaches with `super().run()`); on the class, the descriptor itself.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct GreenletRun {
    function: Py<PyAny>,
}

#[pymethods]
impl GreenletRun {
    fn __get__(
        slf: &Bound<'_, Self>,
        instance: Option<&Bound<'_, PyAny>>,
        _owner: Option<&Bound<'_, PyAny>>,
    ) -> Py<PyAny> {
        match instance {
            Some(_) => slf.get().function.clone_ref(slf.py()),
            None => slf.clone().into_any().unbind(),
        }
    }
}

/// Adds `run_current_greenlet` and the `GreenletRun` descriptor that gives it out (as `greenlet_run`).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The definition must outlive the function object: made once per process and never freed.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"run_current_greenlet".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: run_entry },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: c"Runs the current Greenlet's function and records how it ended.".as_ptr(),
    }));
    // SAFETY: `def` is valid for the life of the process; no self or module object. A new reference, or NULL with
    // an exception set, which becomes an error.
    let function =
        unsafe { Bound::from_owned_ptr_or_err(m.py(), ffi::PyCFunction_NewEx(def, ptr::null_mut(), ptr::null_mut())) }?;
    m.add("run_current_greenlet", &function)?;
    m.add_class::<GreenletRun>()?;
    m.add("greenlet_run", Bound::new(m.py(), GreenletRun { function: function.unbind() })?)
}

/// CPython's entry point (NOARGS: both arguments unused).
unsafe extern "C" fn run_entry(_: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a builtin with the GIL held.
    std::panic::catch_unwind(|| unsafe { run_greenlet() }).unwrap_or_else(|_| panicked())
}

#[cold]
#[inline(never)]
fn panicked() -> *mut ffi::PyObject {
    // SAFETY: only called from `run_entry`, which holds the GIL.
    let py = unsafe { Python::assume_attached() };
    PanicException::new_err("ferrovent: panic while running a greenlet").restore(py);
    ptr::null_mut()
}

/// Runs the current greenlet's function; returns None, or NULL with an exception set. Errors from the function
/// (or from unpacking its arguments) are the greenlet's outcome, not this call's: only a failure in the
/// bookkeeping itself propagates (to the hub, which reports it).
///
/// # Safety
/// The GIL is held.
#[inline(never)]
unsafe fn run_greenlet() -> *mut ffi::PyObject {
    frame_stack::give_current_greenlet_a_small_stack();
    let mut call = [ptr::null_mut(); 4];
    // SAFETY: the GIL is held; `begin` fills `call` with new references (or NULL for bad arguments).
    if !unsafe { begin(&mut call) } {
        return ptr::null_mut();
    }
    let [_, function, args, kwargs] = call;
    let result = if args.is_null() {
        ptr::null_mut() // the arguments' error is set: it becomes the greenlet's failure
    } else {
        // SAFETY: `args` is a tuple and `kwargs` a dict or NULL for none (see `begin`); we hold all of them for
        // the call.
        unsafe { ffi::PyObject_Call(function, args, kwargs) }
    };
    // SAFETY: as above; `result` is a new reference or NULL with an exception set; `call`'s references pass on.
    unsafe { finish(call, result) }
}

/// Fills `call` with the current greenlet, the function to call (from `_begin`, which marks the greenlet as run),
/// its arguments as a tuple and its keyword arguments as a dict (NULL for none: `_kwargs` is None until someone
/// reads `kwargs`), all new references. Arguments that cannot be made so leave both NULL, with their error set.
/// False, with an exception set, if the greenlet or its function cannot be had.
///
/// # Safety
/// The GIL is held.
#[inline(never)]
unsafe fn begin(call: &mut [*mut ffi::PyObject; 4]) -> bool {
    // SAFETY: as documented.
    let py = unsafe { Python::assume_attached() };
    let found = greenlet_api::current(py).and_then(|g| Ok((g.call_method0(intern!(py, "_begin"))?, g)));
    let (function, greenlet) = match found {
        Ok(found) => found,
        Err(err) => {
            err.restore(py);
            return false;
        }
    };
    // As `f(*args, **kwargs)` would take them: any iterable, any mapping.
    let arguments = || -> PyResult<(Bound<'_, PyAny>, Option<Bound<'_, PyAny>>)> {
        let args = greenlet.getattr(intern!(py, "args"))?;
        let args = match args.cast_into::<PyTuple>() {
            Ok(tuple) => tuple.into_any(),
            Err(other) => py.get_type::<PyTuple>().call1((other.into_inner(),))?,
        };
        let kwargs = greenlet.getattr(intern!(py, "_kwargs"))?;
        if kwargs.is_none() {
            return Ok((args, None));
        }
        let kwargs = match kwargs.cast_into::<PyDict>() {
            Ok(dict) => dict.into_any(),
            Err(other) => py.get_type::<PyDict>().call1((other.into_inner(),))?,
        };
        Ok((args, Some(kwargs)))
    };
    let [args, kwargs] = arguments().map_or_else(
        |err| {
            err.restore(py);
            [ptr::null_mut(); 2]
        },
        |(args, kwargs)| [args.into_ptr(), kwargs.map_or(ptr::null_mut(), Bound::into_ptr)],
    );
    *call = [greenlet.into_ptr(), function.into_ptr(), args, kwargs];
    true
}

/// Records the call's result (`_returned` or `_raised`, which also free the greenlet's function and arguments).
/// Returns as `run_greenlet` does.
///
/// # Safety
/// The GIL is held; `call` holds the new references `begin` filled in (only the arguments may be NULL), handed
/// over; `result` is a new reference or NULL with an exception set.
#[inline(never)]
unsafe fn finish(call: [*mut ffi::PyObject; 4], result: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: as documented.
    let py = unsafe { Python::assume_attached() };
    let [greenlet, function, args, kwargs] = call;
    // SAFETY: as documented: new references we now own; the greenlet and function are never NULL here.
    let (greenlet, _held) = unsafe {
        let held = [function, args, kwargs].map(|obj| Bound::from_owned_ptr_or_opt(py, obj));
        (Bound::from_owned_ptr(py, greenlet), held)
    };
    // SAFETY: as documented.
    let recorded = match unsafe { Bound::from_owned_ptr_or_err(py, result) } {
        Ok(value) => greenlet.call_method1(intern!(py, "_returned"), (value,)),
        Err(err) => {
            let exc_info = (err.get_type(py), err.value(py).clone(), err.traceback(py));
            greenlet.call_method1(intern!(py, "_raised"), (exc_info,))
        }
    };
    match recorded {
        Ok(_) => py.None().into_ptr(),
        Err(err) => fail(py, err),
    }
}

#[cold]
#[inline(never)]
fn fail(py: Python<'_>, err: PyErr) -> *mut ffi::PyObject {
    err.restore(py);
    ptr::null_mut()
}
