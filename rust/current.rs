//! The calling thread's loop, so module-level waits (`sleep`) skip the Python-level hub lookup.
//!
//! The thread-local holds a weak reference: a strong one would keep a finished thread's hub and loop alive (its
//! destructor runs without the GIL, so the release would only be queued).

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;

use crate::event_loop::Loop;

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

/// This thread's loop, creating the hub (through `ferrovent.hub.get_hub`) if the thread has none yet.
pub fn get(py: Python<'_>) -> PyResult<Bound<'_, Loop>> {
    let found = CURRENT.with(|current| current.borrow().0.as_ref().and_then(|weak| weak.bind(py).upgrade()));
    if let Some(loop_) = found {
        if let Ok(loop_) = loop_.cast_into::<Loop>() {
            return Ok(loop_);
        }
    }
    let hub = py.import("ferrovent.hub")?.call_method0("get_hub")?;
    let loop_ = hub.getattr("loop")?.cast_into::<Loop>()?;
    loop_.get().check_thread()?; // refuses a destroyed loop
    Ok(loop_)
}

/// `sleep(seconds=0, ref=True)`: parks the current greenlet for `seconds`; 0 yields to everything already ready.
#[pyfunction]
#[pyo3(signature = (seconds=0.0, r#ref=true))]
pub fn sleep(py: Python<'_>, seconds: f64, r#ref: bool) -> PyResult<()> {
    get(py)?.borrow().sleep_current(py, seconds, r#ref)
}
