//! `__slots__` members of Python classes read and written in place, at the offsets their member descriptors give.
//!
//! A CPython internal: `PyMemberDescrObject`'s layout (CPython 3.9-3.13). Each user of this module runs only on the
//! versions its Python side lists, and not at all when its environment switch is off.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// Where the `__slots__` member `name` of `owner` lives in its instances (and in its subclasses' instances), or an
/// error if `owner` defines no such plain writable object slot.
pub fn slot_offset(owner: &Bound<'_, PyType>, name: &str) -> PyResult<isize> {
    let py = owner.py();
    let descriptor = owner.getattr(intern!(py, "__dict__"))?.get_item(name)?;
    let not_a_slot = || pyo3::exceptions::PyTypeError::new_err(format!("{name} is not an object slot of {owner}"));
    // SAFETY: a type check on a live object.
    let is_member = unsafe { ffi::Py_TYPE(descriptor.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) };
    if !is_member {
        return Err(not_a_slot());
    }
    // SAFETY: a member descriptor is a PyMemberDescrObject, whose `d_member` points at its PyMemberDef (pyo3-ffi
    // types the field as a PyGetSetDef pointer); both live as long as the type, which `owner` keeps alive.
    let (owner_of_descriptor, member) = unsafe {
        let object = descriptor.as_ptr().cast::<ffi::PyMemberDescrObject>();
        ((*object).d_common.d_type, *(*object).d_member.cast::<ffi::PyMemberDef>())
    };
    if owner_of_descriptor != owner.as_type_ptr()
        || member.type_code != ffi::Py_T_OBJECT_EX
        || member.flags & ffi::Py_READONLY != 0
    {
        return Err(not_a_slot());
    }
    Ok(member.offset)
}

/// Stores `value` in the empty slot at `offset` of `object`, which takes the reference (as the member descriptor's
/// setter would).
///
/// # Safety
/// `offset` must come from `slot_offset` for `object`'s class or one of its bases, and the slot must be empty.
pub unsafe fn fill_slot(object: &Bound<'_, PyAny>, offset: isize, value: Bound<'_, PyAny>) {
    // SAFETY: per the contract, the slot is an empty object pointer inside `object`.
    unsafe { *object.as_ptr().cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>() = value.into_ptr() };
}

/// The object in the slot at `offset` of `object`, None if it is empty.
///
/// # Safety
/// `offset` must come from `slot_offset` for `object`'s class or one of its bases.
pub unsafe fn read_slot<'py>(object: &Bound<'py, PyAny>, offset: isize) -> Option<Bound<'py, PyAny>> {
    // SAFETY: per the contract, the slot is an object pointer inside `object`; a borrowed reference to what it holds
    // is taken while `object` is alive.
    unsafe {
        let slot = object.as_ptr().cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>();
        Bound::from_borrowed_ptr_or_opt(object.py(), *slot)
    }
}
