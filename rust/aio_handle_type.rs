//! `_core.aio_handle_class(base, slots)`: the class of the handles `AioLoop.call_soon` makes (rust/aio_loop.rs), a
//! subclass of `asyncio.Handle` defined at the C level, named `Handle`, adding nothing but a direct `tp_traverse`.
//!
//! Why: the cyclic collector traverses every handle queued in the loop several times (each young collection
//! while it waits, then the older ones it is promoted to). `asyncio.Handle`'s own traverse is CPython's generic
//! one for `__slots__` classes, which walks the member table of each class in the MRO at every call; this one
//! visits the same object slots, at the offsets their member descriptors gave when the class was made, in the
//! same (offset) order, then the type (as every heap type's traverse must). Nothing is left unvisited: the class
//! is made only when `base` holds no object pointer besides those slots (its size says so: no `__dict__`, no
//! items, only `__weakref__` besides), so cycles through a handle are found and freed as before.
//!
//! Everything else is `base`'s: `tp_clear` is `base`'s (CPython's generic slot clearing, which for this class
//! clears `base`'s slots), `tp_dealloc` CPython's default for heap types (`base`'s: a dealloc of our own measured
//! 3% fewer instructions per `call_soon`, but would refuse `__class__` assignment between this class and
//! asyncio's, and need CPython's finalizer and trashcan internals), the methods, `__repr__` and the rest are found
//! on `base` through the MRO, so a method replaced on `asyncio.Handle` is what the handles run. The class adds no
//! slot and is not subclassable. `__module__` is `ferrovent.asyncio._handle`, where the class is published, so
//! pickle finds it as it finds `asyncio.Handle`.
//!
//! A CPython internal (the member descriptors' offsets, and the instance layout), used only on the Python
//! versions python/ferrovent/asyncio/_handle.py lists, and not at all with `FERROVENT_ASYNCIO_HANDLE_CLASS=0`.

use std::ffi::{c_int, c_void, CStr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicIsize, Ordering};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::slots::slot_offset;

/// The spec's name: `__module__` is what precedes the last dot (the class's `__name__`, and the name in error
/// messages, is then set to what follows it).
const SPEC_NAME: &CStr = c"ferrovent.asyncio._handle.Handle";

/// The class made, and the base it was made for (one per process: asyncio's `Handle`).
static HANDLE_CLASS: PyOnceLock<(Py<PyType>, Py<PyType>)> = PyOnceLock::new();

/// How many object slots the base has: asyncio.Handle's seven, on every Python version listed.
const SLOT_COUNT: usize = 7;

/// Where the first of the base's object slots is: they are contiguous, `SLOT_COUNT` of them (checked when the
/// class is made, before which nothing reads this).
static FIRST_SLOT: AtomicIsize = AtomicIsize::new(0);

/// Adds `aio_handle_class`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(aio_handle_class, m)?)
}

/// Whether `candidate` is the class `aio_handle_class` made for `base`.
pub fn is_handle_class(candidate: &Bound<'_, PyType>, base: &Bound<'_, PyType>) -> bool {
    HANDLE_CLASS.get(candidate.py()).is_some_and(|(made, made_for)| made.is(candidate) && made_for.is(base))
}

/// The subclass of `base` (asyncio.Handle) whose instances `AioLoop` makes (see the module documentation), made
/// at the first call; `slots` names every object slot of `base`. TypeError if `base` holds object pointers other
/// than those slots (and its weak reference list), or if the class was made for another base.
#[pyfunction]
fn aio_handle_class<'py>(base: &Bound<'py, PyType>, slots: Vec<String>) -> PyResult<Bound<'py, PyType>> {
    let py = base.py();
    let (made, made_for) =
        HANDLE_CLASS.get_or_try_init(py, || make_class(base, &slots).map(|made| (made, base.clone().unbind())))?;
    if !made_for.is(base) {
        return Err(PyTypeError::new_err("the handle class was made for another base"));
    }
    Ok(made.bind(py).clone())
}

fn make_class(base: &Bound<'_, PyType>, slots: &[String]) -> PyResult<Py<PyType>> {
    let py = base.py();
    let mut offsets = slots.iter().map(|name| slot_offset(base, name)).collect::<PyResult<Vec<isize>>>()?;
    offsets.sort_unstable();
    offsets.dedup();
    let first = check_layout(base, &offsets)?;
    let base_type = base.as_type_ptr();
    // SAFETY: reads fields of a live type object.
    let clear = unsafe { (*base_type).tp_clear }.ok_or_else(|| PyTypeError::new_err("the base has no tp_clear"))?;
    let mut type_slots = [
        ffi::PyType_Slot { slot: ffi::Py_tp_traverse, pfunc: traverse as ffi::traverseproc as *mut c_void },
        ffi::PyType_Slot { slot: ffi::Py_tp_clear, pfunc: clear as *mut c_void },
        ffi::PyType_Slot { slot: 0, pfunc: std::ptr::null_mut() },
    ];
    let mut spec = ffi::PyType_Spec {
        name: SPEC_NAME.as_ptr(),
        basicsize: 0, // the base's
        itemsize: 0,
        // not Py_TPFLAGS_BASETYPE: a subclass's generic traverse would visit the type a second time
        flags: u32::try_from(ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_HAVE_GC).expect("type flags fit in 32 bits"),
        slots: type_slots.as_mut_ptr(),
    };
    // Published before the class exists: `traverse` may run as soon as it does.
    FIRST_SLOT.store(first, Ordering::Relaxed);
    // SAFETY: `spec` and its slots are valid for the call, `SPEC_NAME` for the process (CPython 3.11 keeps the
    // pointer as the type's name until `__name__` is set below); `base` is a live type. A new reference to the
    // type, or NULL with an exception set.
    let class = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpecWithBases(&raw mut spec, base.as_ptr()))?
            .cast_into_unchecked::<PyType>()
    };
    // `__name__`'s setter also makes the type's C name (error messages) "Handle", as asyncio.Handle's is.
    class.setattr("__name__", base.getattr("__name__")?)?;
    class.setattr("__doc__", base.getattr("__doc__")?)?;
    Ok(class.unbind())
}

/// The offset of the first of `offsets`, or TypeError unless they are `SLOT_COUNT` contiguous object slots and
/// the instances of `base` hold no other object pointer but their weak reference list: no items, no `__dict__`,
/// nothing but `PyObject`'s header, those slots and `__weakref__`.
fn check_layout(base: &Bound<'_, PyType>, offsets: &[isize]) -> PyResult<isize> {
    let pointer = isize::try_from(size_of::<*mut ffi::PyObject>()).expect("a pointer's size fits");
    let header = isize::try_from(size_of::<ffi::PyObject>()).expect("an object header's size fits");
    // SAFETY: reads fields of a live type object.
    let (basicsize, itemsize, dictoffset, weaklistoffset, flags, grand_base) = unsafe {
        let t = base.as_type_ptr();
        ((*t).tp_basicsize, (*t).tp_itemsize, (*t).tp_dictoffset, (*t).tp_weaklistoffset, (*t).tp_flags, (*t).tp_base)
    };
    let first = offsets.first().copied().unwrap_or(0);
    let contiguous = offsets.len() == SLOT_COUNT && offsets.iter().zip(0..).all(|(&at, i)| at == first + i * pointer);
    let slots_end = first + isize::try_from(SLOT_COUNT).expect("a count of slots fits") * pointer;
    let laid_out = contiguous
        && first == header
        && weaklistoffset == slots_end
        && basicsize == slots_end + pointer
        && itemsize == 0
        && dictoffset == 0
        && flags & ffi::Py_TPFLAGS_HEAPTYPE != 0
        && flags & ffi::Py_TPFLAGS_HAVE_GC != 0
        && grand_base == std::ptr::addr_of_mut!(ffi::PyBaseObject_Type);
    if !laid_out {
        return Err(PyTypeError::new_err(format!("{base} is not laid out as asyncio.Handle")));
    }
    Ok(first)
}

/// The object slots of `object`, an instance of the class.
///
/// # Safety
/// `object` is a live instance of the class (its slots are where `FIRST_SLOT` says: checked when it was made).
unsafe fn slots_of(object: *mut ffi::PyObject) -> *mut *mut ffi::PyObject {
    // SAFETY: per the contract, inside `object`.
    unsafe { object.cast::<u8>().offset(FIRST_SLOT.load(Ordering::Relaxed)).cast() }
}

/// The class's `tp_traverse`: each non-empty object slot, in offset order, then the type.
///
/// # Safety
/// Called only by CPython (the collector, `gc.get_referents`) with an instance of the class.
unsafe extern "C" fn traverse(object: *mut ffi::PyObject, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
    let body = AssertUnwindSafe(|| {
        // SAFETY: per the contract, the instance's object slots, each NULL if empty, a live object otherwise.
        let values = unsafe { std::slice::from_raw_parts(slots_of(object), SLOT_COUNT) };
        for &value in values {
            if !value.is_null() {
                // SAFETY: what the collector passed, with a live object.
                let result = unsafe { visit(value, arg) };
                if result != 0 {
                    return result;
                }
            }
        }
        // SAFETY: the instance's type, a heap type its instances hold a reference to.
        unsafe { visit(ffi::Py_TYPE(object).cast(), arg) }
    });
    // a traverse that skipped references would corrupt the collector's counts: no way on but to stop
    std::panic::catch_unwind(body).unwrap_or_else(|_| std::process::abort())
}
