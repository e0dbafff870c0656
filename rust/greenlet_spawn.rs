//! `Greenlet.spawn`: `cls(*args, **kwargs)`, then the new greenlet's `start()`, in one plain vectorcall builtin.
//!
//! A spawn is paid once per greenlet. As a Python classmethod it cost a frame and a repacking of its arguments
//! into a tuple and a dict before the class call repacked them again (about a tenth of spawn-and-join). Here the
//! caller's argument vector goes to the class as it is, then `start` is looked up on the instance (so a subclass's
//! override runs); or, for the classes that keep Greenlet's own `__init__` and `start`, the greenlet is built and
//! started without either Python frame (greenlet_new).

use std::ffi::CStr;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;

use crate::greenlet_new;
use crate::vectorcall;

const SPAWN_DOC: &CStr = c"spawn(cls, /, *args, **kwargs)\n--\n\nCreates a greenlet of this class with these \
arguments (``run`` first), starts it and returns it.";

/// Adds `spawn_greenlet`, which `ferrovent.greenlet` makes `Greenlet.spawn` (a classmethod; named `spawn`, as a
/// bound method pickles by its name).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("spawn_greenlet", vectorcall::function(m, c"spawn", spawn_entry, SPAWN_DOC)?)
}

/// CPython's entry point for `spawn_greenlet(cls, *args, **kwargs)`.
unsafe extern "C" fn spawn_entry(
    _: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a vectorcall builtin with the GIL held, `nargsf` positional arguments in `args` and
    // `kwnames` NULL or a tuple naming the keyword arguments that follow them.
    std::panic::catch_unwind(|| unsafe {
        let py = Python::assume_attached();
        vectorcall::into_result(py, spawn(py, args, nargsf, kwnames))
    })
    .unwrap_or_else(|_| vectorcall::panicked())
}

/// # Safety
/// As `spawn_entry`'s arguments, with the GIL held.
unsafe fn spawn(
    py: Python<'_>,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY: `nargsf` is what CPython passed.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) };
    if nargs < 1 {
        return Err(PyTypeError::new_err("spawn() missing required argument 'cls' (pos 1)"));
    }
    // SAFETY: `args` holds `nargs` positionals (at least the class), then one value per name in `kwnames`: the
    // greenlet is built and started from the rest (greenlet_new), or the class is called with them, unchanged.
    // The call's result is a new reference, or NULL with an exception set.
    unsafe {
        if let Some(spawned) = greenlet_new::spawn(py, *args, args.add(1), (nargs - 1) as usize, kwnames) {
            return spawned.map(Bound::unbind);
        }
        let made = ffi::PyObject_Vectorcall(*args, args.add(1), (nargs - 1) as usize, kwnames);
        let greenlet = Bound::from_owned_ptr_or_err(py, made)?;
        greenlet.call_method0(intern!(py, "start"))?;
        Ok(greenlet.unbind())
    }
}
