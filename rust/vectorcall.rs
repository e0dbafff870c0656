//! Plain vectorcall entry points for the hottest calls (`sleep`, a queue's `put` and `get`, a socket's `recv` and
//! `recv_into`), where PyO3's trampoline and argument parsing cost more than the work itself, or its frame would
//! stay on every parked greenlet's saved C stack.
//!
//! Each entry handles only its common call shape itself and passes every other shape on, unchanged, to the
//! PyO3-wrapped function or method it stands in front of; so signatures, defaults and error messages stay PyO3's.
//! The entries are made with the public C API (`PyCFunction_NewEx`, `PyDescr_NewMethod`): no CPython internals.

use std::ffi::CStr;
use std::panic::AssertUnwindSafe;
use std::ptr;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// An object pointer as an entry receives and returns it.
pub type Object = *mut ffi::PyObject;

/// A vectorcall entry's argument array.
pub type Arguments = *const *mut ffi::PyObject;

/// A vectorcall entry's C signature (`METH_FASTCALL | METH_KEYWORDS`).
pub type Entry = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

/// A method definition that lives as long as the process (functions and descriptors keep a pointer to it).
fn leaked_def(name: &'static CStr, entry: Entry, doc: &'static CStr) -> *mut ffi::PyMethodDef {
    Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: entry },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    }))
}

/// A module-level builtin `name` of module `m` calling `entry` (which takes every call shape itself; see
/// `install_function` for one that passes shapes on). `doc` starts with the signature line CPython reads into
/// `__text_signature__` (`name(...)\n--\n\n`).
pub fn function<'py>(
    m: &Bound<'py, PyModule>,
    name: &'static CStr,
    entry: Entry,
    doc: &'static CStr,
) -> PyResult<Bound<'py, PyAny>> {
    let def = leaked_def(name, entry, doc);
    let module_name = m.name()?;
    // SAFETY: `def` lives for the process; no self; the module name is a str. A new reference, or NULL with an
    // exception set, which becomes an error.
    unsafe { Bound::from_owned_ptr_or_err(m.py(), ffi::PyCFunction_NewEx(def, ptr::null_mut(), module_name.as_ptr())) }
}

/// Puts a method `name` calling `entry` on `cls` in place of the one there, and returns the one that was there.
/// The method descriptor checks that `self` is an instance of `cls` before `entry` runs.
fn replace_method<'py>(
    cls: &Bound<'py, PyType>,
    name: &'static CStr,
    entry: Entry,
    doc: &'static CStr,
) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let attribute = attribute_name(name)?;
    let previous = cls.getattr(attribute)?;
    let def = leaked_def(name, entry, doc);
    // SAFETY: `cls` is a live type and `def` lives for the process. A new reference, or NULL with an exception set.
    let descriptor = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(cls.as_type_ptr(), def)) }?;
    cls.setattr(attribute, descriptor)?;
    Ok(previous)
}

fn attribute_name(name: &'static CStr) -> PyResult<&'static str> {
    name.to_str().map_err(|e| PyErr::new::<pyo3::exceptions::PyValueError, _>(e.to_string()))
}

/// Puts `C`'s vectorcall entry (`fast_entry::<C>`) on `cls` as method `name`, keeping the PyO3 method that was
/// there as `C::GENERAL` for the call shapes `C` passes on.
pub fn install_method<C: FastCall>(cls: &Bound<'_, PyType>, name: &'static CStr, doc: &'static CStr) -> PyResult<()> {
    let general = replace_method(cls, name, fast_entry::<C>, doc)?;
    C::GENERAL.get_or_init(cls.py(), || general.unbind());
    Ok(())
}

/// Adds `C`'s vectorcall entry (`fast_entry::<C>`) to module `m` as builtin `name`, with `general` (the PyO3
/// function it stands in front of, not itself a module attribute) as `C::GENERAL`. `doc` starts with the signature
/// line CPython reads into `__text_signature__` (`name(...)\n--\n\n`), as PyO3 would write it.
pub fn install_function<C: FastCall>(
    m: &Bound<'_, PyModule>,
    name: &'static CStr,
    general: Bound<'_, PyAny>,
    doc: &'static CStr,
) -> PyResult<()> {
    C::GENERAL.get_or_init(m.py(), || general.unbind());
    m.add(attribute_name(name)?, function(m, name, fast_entry::<C>, doc)?)
}

/// Calls `general` (a function, or with `slf` a method descriptor) with the arguments an entry received.
///
/// # Safety
/// The GIL is held; `args`, `nargsf` and `kwnames` are what CPython passed the entry; `slf` is a live object or
/// NULL.
unsafe fn pass_on(
    general: &Py<PyAny>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let nargsf = nargsf as usize;
    if slf.is_null() {
        // SAFETY: per the contract, the arguments are passed on unchanged to a live callable.
        return unsafe { ffi::PyObject_Vectorcall(general.as_ptr(), args, nargsf, kwnames) };
    }
    // SAFETY: per the contract, `args` holds `nargs` positionals, then one value per name in `kwnames` (a tuple).
    unsafe {
        let nargs = usize::try_from(ffi::PyVectorcall_NARGS(nargsf)).unwrap_or(0);
        let keywords = if kwnames.is_null() { 0 } else { usize::try_from(ffi::PyTuple_GET_SIZE(kwnames)).unwrap_or(0) };
        let mut all = Vec::with_capacity(1 + nargs + keywords);
        all.push(slf);
        all.extend_from_slice(std::slice::from_raw_parts(args, nargs + keywords));
        ffi::PyObject_Vectorcall(general.as_ptr(), all.as_ptr(), 1 + nargs, kwnames)
    }
}

/// Passes a call an entry did not take on to `general` once it is set; out of line, so that the entry's frame,
/// which stays on the saved stack of every greenlet parked in a fast call, does not grow by it.
///
/// # Safety
/// As `pass_on`.
#[inline(never)]
unsafe fn pass_on_to(
    py: Python<'_>,
    general: &PyOnceLock<Py<PyAny>>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    match installed(py, general) {
        // SAFETY: per the contract.
        Ok(general) => unsafe { pass_on(general, slf, args, nargsf, kwnames) },
        Err(err) => into_result(py, Err(err)),
    }
}

/// The general callable an `install_*` call stored in `general`, or the error of a module not initialised.
pub fn installed<'a>(py: Python<'_>, general: &'a PyOnceLock<Py<PyAny>>) -> PyResult<&'a Py<PyAny>> {
    general.get(py).ok_or_else(|| PyRuntimeError::new_err("ferrovent._core is not initialised"))
}

/// A method or module function whose common call shapes a vectorcall entry (`fast_entry`) takes itself.
pub trait FastCall {
    /// The PyO3 method or function the entry stands in front of, for every other call shape.
    const GENERAL: &'static PyOnceLock<Py<PyAny>>;

    /// A call without keywords, given the positional count: its result in CPython's convention (a new reference,
    /// or NULL with the exception set, so a call that waits keeps no `PyResult` in its frames); None for a shape
    /// to pass on.
    ///
    /// # Safety
    /// The GIL is held, `args` holds `nargs` borrowed references, and `slf` is an instance of the method's class
    /// (NULL for a module function).
    unsafe fn fast(py: Python<'_>, slf: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object>;

    /// A call with keywords, as `fast`; by default every such shape is passed on.
    ///
    /// # Safety
    /// As `fast`, and `kwnames` is the tuple of keyword names whose values follow the positionals in `args`.
    unsafe fn fast_with_keywords(
        _py: Python<'_>,
        _slf: Object,
        _args: Arguments,
        _nargs: ffi::Py_ssize_t,
        _kwnames: Object,
    ) -> Option<Object> {
        None
    }
}

/// CPython's entry point for `C`: the shapes `C` takes, everything else passed on to `C::GENERAL`; no panic
/// unwinds into CPython.
///
/// # Safety
/// Called only by CPython, with the GIL held and the vectorcall arguments: through a method descriptor of `C`'s
/// class (`install_method`), `slf` an instance of the class (the descriptor checked it), or as a module builtin
/// (`install_function`), `slf` NULL.
unsafe extern "C" fn fast_entry<C: FastCall>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let body = AssertUnwindSafe(|| {
        // SAFETY: per the contract, the GIL is held.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: `nargsf` is what CPython passed.
        let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) };
        // SAFETY: per the contract, `args` holds `nargs` positionals, then the values `kwnames` names, if any.
        let taken = unsafe {
            if kwnames.is_null() {
                C::fast(py, slf, args, nargs)
            } else {
                C::fast_with_keywords(py, slf, args, nargs, kwnames)
            }
        };
        match taken {
            Some(result) => result,
            // SAFETY: the arguments CPython passed, passed on unchanged.
            None => unsafe { pass_on_to(py, C::GENERAL, slf, args, nargsf, kwnames) },
        }
    });
    std::panic::catch_unwind(body).unwrap_or_else(|_| panicked())
}

/// An entry's result: the object (a new reference), or NULL with the error set.
pub fn into_result(py: Python<'_>, result: PyResult<Py<PyAny>>) -> *mut ffi::PyObject {
    match result {
        Ok(value) => value.into_ptr(),
        Err(err) => {
            err.restore(py);
            ptr::null_mut()
        }
    }
}

/// What an entry returns when its body panicked (never in release builds, which abort on panic).
#[cold]
#[inline(never)]
pub fn panicked() -> *mut ffi::PyObject {
    // SAFETY: only called from an entry, which CPython calls with the GIL held.
    let py = unsafe { Python::assume_attached() };
    PanicException::new_err("ferrovent: panic in a vectorcall entry").restore(py);
    ptr::null_mut()
}

/// `seconds` as a float when it is an exact float or an int a float can hold; None for anything else.
///
/// # Safety
/// `seconds` is a valid borrowed reference and the GIL is held.
pub unsafe fn exact_seconds(seconds: *mut ffi::PyObject) -> Option<f64> {
    // SAFETY: per the contract; the float and int checks read only the type, PyLong_AsDouble only the int.
    unsafe {
        if ffi::PyFloat_CheckExact(seconds) != 0 {
            return Some(ffi::PyFloat_AS_DOUBLE(seconds));
        }
        if ffi::PyLong_CheckExact(seconds) != 0 {
            let value = ffi::PyLong_AsDouble(seconds);
            if value == -1.0 && !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear(); // too large: the general path raises its own error
                return None;
            }
            return Some(value);
        }
    }
    None
}

/// A `timeout` argument: None as `Some(None)`, an exact float or int as its seconds; None for anything else.
///
/// # Safety
/// As `exact_seconds`.
pub unsafe fn optional_seconds(timeout: *mut ffi::PyObject) -> Option<Option<f64>> {
    // SAFETY: per the contract, the GIL is held.
    if timeout == unsafe { ffi::Py_None() } {
        return Some(None);
    }
    // SAFETY: per the contract.
    unsafe { exact_seconds(timeout) }.map(Some)
}

/// An exact int that `T` holds (`usize` for a size, `c_int` for flags); None for anything else.
///
/// # Safety
/// `value` is a valid borrowed reference and the GIL is held.
pub unsafe fn exact_int<T: TryFrom<isize>>(value: *mut ffi::PyObject) -> Option<T> {
    // SAFETY: per the contract; the check reads only the type, PyLong_AsSsize_t only the int.
    unsafe {
        if ffi::PyLong_CheckExact(value) == 0 {
            return None;
        }
        let wide = ffi::PyLong_AsSsize_t(value);
        if wide == -1 && !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear(); // too large: the general path raises its own error
            return None;
        }
        T::try_from(wide).ok()
    }
}

/// A `bool` argument that is exactly True or False; None for anything else.
///
/// # Safety
/// The GIL is held.
pub unsafe fn exact_bool(value: *mut ffi::PyObject) -> Option<bool> {
    // SAFETY: per the contract, the GIL is held; the singletons are only compared with.
    unsafe {
        if value == ffi::Py_True() {
            Some(true)
        } else if value == ffi::Py_False() {
            Some(false)
        } else {
            None
        }
    }
}

/// A `True` or `False`, as an entry returns it (a new reference).
pub fn bool_result(py: Python<'_>, value: bool) -> *mut ffi::PyObject {
    pyo3::types::PyBool::new(py, value).to_owned().into_any().unbind().into_ptr()
}
