//! The calling thread's loop, so module-level waits (`sleep`) skip the Python-level hub lookup.

use std::cell::RefCell;

use pyo3::prelude::*;

use crate::event_loop::Loop;

thread_local! {
    static CURRENT: RefCell<Option<Py<Loop>>> = const { RefCell::new(None) };
}

/// Records `loop_` as this thread's loop (the hub calls this when it is made).
pub fn set(loop_: Option<Py<Loop>>) {
    CURRENT.with(|current| *current.borrow_mut() = loop_);
}

/// This thread's loop, creating the hub (through `ferrovent.hub.get_hub`) if the thread has none yet.
pub fn get(py: Python<'_>) -> PyResult<Bound<'_, Loop>> {
    let found = CURRENT.with(|current| current.borrow().as_ref().map(|l| l.clone_ref(py)));
    if let Some(loop_) = found {
        return Ok(loop_.into_bound(py));
    }
    let hub = py.import("ferrovent.hub")?.call_method0("get_hub")?;
    Ok(hub.getattr("loop")?.cast_into::<Loop>()?)
}

/// `sleep(seconds=0, ref=True)`: parks the current greenlet for `seconds`; 0 yields to everything already ready.
#[pyfunction]
#[pyo3(signature = (seconds=0.0, r#ref=true))]
pub fn sleep(py: Python<'_>, seconds: f64, r#ref: bool) -> PyResult<()> {
    get(py)?.borrow().sleep_current(py, seconds, r#ref)
}
