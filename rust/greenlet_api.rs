//! greenlet's C API, imported from the `greenlet._C_API` capsule.
//!
//! The capsule is a table of function pointers (see greenlet.h). Every function here is a thin, safe
//! wrapper: it turns greenlet's new-reference-or-NULL convention into `PyResult<Bound<PyAny>>`.

use std::os::raw::c_int;
use std::ptr;
use std::sync::OnceLock;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;

// Slot numbers in the capsule's table, fixed by greenlet.h.
const SLOT_GREENLET_EXIT: usize = 2;
const SLOT_GETCURRENT: usize = 4;
const SLOT_THROW: usize = 5;
const SLOT_SWITCH: usize = 6;
const SLOT_SET_PARENT: usize = 7;
const SLOT_ACTIVE: usize = 10;
const SLOT_STARTED: usize = 9;

type GetCurrentFn = unsafe extern "C" fn() -> *mut ffi::PyObject;
type ThrowFn = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut ffi::PyObject,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;
type SwitchFn = unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject;
type FlagFn = unsafe extern "C" fn(*mut ffi::PyObject) -> c_int;
type SetParentFn = unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> c_int;

/// The subset of the capsule's table that the loop uses.
struct Api {
    get_current: GetCurrentFn,
    throw: ThrowFn,
    switch: SwitchFn,
    set_parent: SetParentFn,
    started: FlagFn,
    active: FlagFn,
    greenlet_exit: usize,
}

static API: OnceLock<Api> = OnceLock::new();
/// An empty tuple kept for the life of the process: switching with no arguments.
static EMPTY_ARGS: OnceLock<Py<PyAny>> = OnceLock::new();

/// Imports the capsule once; later calls are free.
pub fn init(py: Python<'_>) -> PyResult<()> {
    if API.get().is_some() {
        return Ok(());
    }
    py.import("greenlet")?;
    // SAFETY: the name is a NUL-terminated C string; PyCapsule_Import returns NULL with an exception set on failure.
    let table = unsafe { ffi::PyCapsule_Import(c"greenlet._C_API".as_ptr(), 0) } as *const *const std::ffi::c_void;
    if table.is_null() {
        return Err(PyErr::take(py).unwrap_or_else(|| PyRuntimeError::new_err("greenlet._C_API is missing")));
    }
    // SAFETY: greenlet.h guarantees the table holds PyGreenlet_API_pointers (12) entries, each a function pointer
    // of the signature documented there for its slot; the module stays imported (and the table alive) for good.
    let api = unsafe {
        Api {
            get_current: std::mem::transmute::<*const std::ffi::c_void, GetCurrentFn>(*table.add(SLOT_GETCURRENT)),
            throw: std::mem::transmute::<*const std::ffi::c_void, ThrowFn>(*table.add(SLOT_THROW)),
            switch: std::mem::transmute::<*const std::ffi::c_void, SwitchFn>(*table.add(SLOT_SWITCH)),
            set_parent: std::mem::transmute::<*const std::ffi::c_void, SetParentFn>(*table.add(SLOT_SET_PARENT)),
            started: std::mem::transmute::<*const std::ffi::c_void, FlagFn>(*table.add(SLOT_STARTED)),
            active: std::mem::transmute::<*const std::ffi::c_void, FlagFn>(*table.add(SLOT_ACTIVE)),
            greenlet_exit: *table.add(SLOT_GREENLET_EXIT) as usize,
        }
    };
    let _ = API.set(api);
    let _ = EMPTY_ARGS.set(pyo3::types::PyTuple::empty(py).into_any().unbind());
    Ok(())
}

fn api() -> &'static Api {
    API.get().expect("greenlet C API used before ferrovent._core was initialised")
}

fn owned_or_err(py: Python<'_>, raw: *mut ffi::PyObject) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: greenlet returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }
}

/// `greenlet.getcurrent()`.
pub fn current(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: GetCurrent takes no arguments and needs only the GIL, which `py` proves.
    owned_or_err(py, unsafe { (api().get_current)() })
}

/// greenlet's switch into `g` with no arguments: a new reference, or NULL with an exception set.
fn raw_switch(g: &Bound<'_, PyAny>) -> *mut ffi::PyObject {
    let args = EMPTY_ARGS.get().map_or(ptr::null_mut(), |a| a.as_ptr());
    // SAFETY: `g` is a live greenlet (callers only store greenlets), `args` is a tuple, kwargs may be NULL.
    unsafe { (api().switch)(g.as_ptr(), args, ptr::null_mut()) }
}

/// `g.switch()` with no arguments; returns what the greenlet that switches back passes.
/// Any greenlet may run before this returns.
pub fn switch<'py>(g: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    owned_or_err(g.py(), raw_switch(g))
}

/// `switch` for the wait path, which keeps its frames small: true on success (the value passed back is dropped),
/// false with the exception left set.
pub fn switch_raw(g: &Bound<'_, PyAny>) -> bool {
    let result = raw_switch(g);
    if result.is_null() {
        return false;
    }
    // SAFETY: `result` is a new reference owned here.
    unsafe { ffi::Py_DECREF(result) };
    true
}

/// `g.throw(exc)`: raises the exception instance `exc` inside `g`. Any greenlet may run before this returns.
pub fn throw<'py>(g: &Bound<'py, PyAny>, exc: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = g.py();
    let (typ, val) = if exc.is_instance_of::<pyo3::types::PyType>() {
        (exc.clone(), py.None().into_bound(py))
    } else {
        (exc.get_type().into_any(), exc.clone())
    };
    // SAFETY: `g` is a greenlet, `typ` an exception class, `val` an instance or None; tb may be NULL.
    owned_or_err(py, unsafe { (api().throw)(g.as_ptr(), typ.as_ptr(), val.as_ptr(), ptr::null_mut()) })
}

/// `g.parent = parent`, with greenlet's checks (a greenlet, no cycle, the same thread).
pub fn set_parent(g: &Bound<'_, PyAny>, parent: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: SetParent takes any objects: it checks both are greenlets, or fails with -1 and an exception.
    match unsafe { (api().set_parent)(g.as_ptr(), parent.as_ptr()) } {
        -1 => Err(PyErr::fetch(g.py())),
        _ => Ok(()),
    }
}

/// Whether `g` has started running (and so a plain switch resumes rather than starts it). An error if `g` is
/// not a greenlet.
pub fn started(g: &Bound<'_, PyAny>) -> PyResult<bool> {
    // SAFETY: the flag functions take any object: they read a greenlet's state, or fail with -1 and an exception.
    flag(g.py(), unsafe { (api().started)(g.as_ptr()) })
}

/// Whether `g` is started and not dead. An error if `g` is not a greenlet.
pub fn active(g: &Bound<'_, PyAny>) -> PyResult<bool> {
    // SAFETY: as for `started`.
    flag(g.py(), unsafe { (api().active)(g.as_ptr()) })
}

/// A flag function's result: 0 or 1, or -1 with an exception set.
fn flag(py: Python<'_>, result: c_int) -> PyResult<bool> {
    match result {
        -1 => Err(PyErr::fetch(py)),
        other => Ok(other != 0),
    }
}

/// The `greenlet.GreenletExit` class.
pub fn greenlet_exit(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    let raw = api().greenlet_exit as *mut ffi::PyObject;
    // SAFETY: the slot holds a borrowed pointer to the GreenletExit type object (alive as long as greenlet is), or
    // NULL, which becomes an error.
    let obj = unsafe { Bound::from_borrowed_ptr_or_err(py, raw) }?;
    Ok(obj.cast_into::<pyo3::types::PyType>()?)
}
