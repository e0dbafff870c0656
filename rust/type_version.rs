//! Class version tags: CPython gives a class a new version tag, or clears it, whenever the class's namespace or a
//! base's changes, and never hands out the same tag twice. So an answer about a class, kept with the tag the class
//! had before the answer was worked out, holds for as long as the class still has that tag.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// The class's version tag, if it has a valid one.
pub fn version_tag(cls: &Bound<'_, PyType>) -> Option<u32> {
    let raw = cls.as_type_ptr();
    // SAFETY: reads two fields of a live type object, with the GIL held.
    unsafe {
        ((*raw).tp_flags & ffi::Py_TPFLAGS_VALID_VERSION_TAG != 0 && (*raw).tp_version_tag != 0)
            .then_some((*raw).tp_version_tag)
    }
}

/// A yes-or-no answer about one class, kept with the version tag the class had when it was worked out.
pub struct KeptVerdict {
    /// The tag the answer was kept at (0: none kept; a valid tag is never 0).
    at: AtomicU32,
    verdict: AtomicBool,
}

impl KeptVerdict {
    pub const fn new() -> Self {
        Self { at: AtomicU32::new(0), verdict: AtomicBool::new(false) }
    }

    /// The answer about `cls`: the kept one while `cls` has the tag it was kept at, else `work_out()`'s, kept with
    /// the tag read before it ran (if `work_out` changed the class, the next call works it out again).
    pub fn get(&self, cls: &Bound<'_, PyType>, work_out: impl FnOnce() -> PyResult<bool>) -> PyResult<bool> {
        let mut tag = version_tag(cls);
        if let Some(tag) = tag.filter(|&tag| tag == self.at.load(Ordering::Relaxed)) {
            debug_assert_ne!(tag, 0);
            return Ok(self.verdict.load(Ordering::Relaxed));
        }
        if tag.is_none() {
            // a class gets a tag at a lookup through CPython's type cache: nothing may have looked at this one since
            cls.getattr(intern!(cls.py(), "__init__"))?;
            tag = version_tag(cls);
        }
        let verdict = work_out()?;
        if let Some(tag) = tag {
            self.verdict.store(verdict, Ordering::Relaxed);
            self.at.store(tag, Ordering::Relaxed);
        }
        Ok(verdict)
    }
}
