//! Handing a loop from a destroyed hub to the thread's next hub (gevent's `hub.destroy(destroy_loop=False)`, the
//! default for the default loop).
//!
//! `retire_hub` runs when a hub is destroyed and its loop kept. What the hub scheduled for its greenlets is dropped,
//! so no greenlet of the dead hub is ever resumed (its parent is gone): wakes, spawns not yet run, kills and
//! `run_callback` calls in the ready queue, every parked greenlet's wait (its timeout, its place on an fd) and the
//! Timeouts armed to be thrown into them. What belongs to the loop stays and runs under the next hub, as on gevent:
//! watchers, timers scheduled with `call_later` (timer watchers, `spawn_later`), fd registrations, and calls queued
//! from other threads.
//!
//! `adopt_hub` makes the next hub the greenlet the loop runs in. It swaps the hub once, while no `run()` is on any
//! stack (the previous hub has ended), so the wait path reads the same fields as ever and holds no borrow of the hub.

use std::collections::VecDeque;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::event_loop::Loop;
use crate::greenlet_api;
use crate::ready::{Ready, TimerAction};

impl Loop {
    /// Drops everything queued or parked for greenlets (see the module's comment); the objects are released only
    /// once no borrow of the loop is held, since releasing them may run Python code.
    fn forget_greenlets(&self) {
        let belongs_to_loop =
            |entry: &Ready| matches!(entry, Ready::Call { .. } | Ready::Watch { .. } | Ready::Timer(_));
        let mut dropped: Vec<Ready> = Vec::new();
        for queue in [&self.ready, &self.arrivals] {
            let entries = std::mem::take(&mut *queue.borrow_mut());
            let (kept, gone): (VecDeque<Ready>, VecDeque<Ready>) = entries.into_iter().partition(belongs_to_loop);
            *queue.borrow_mut() = kept;
            dropped.extend(gone);
        }
        drop(dropped);
        let parked = self.lot.borrow_mut().take_all();
        for wait in parked {
            let fd = wait.fd();
            self.release_parked(wait);
            if let Some((fd, _)) = fd {
                self.release_if_transient(fd);
            }
        }
        let throws = self.timers.borrow_mut().cancel_where(|action| matches!(action, TimerAction::Throw { .. }));
        drop(throws);
        let idle = std::mem::take(&mut *self.idle_waiters.borrow_mut());
        drop(idle);
        let wake = self.wake_slot.borrow_mut().take();
        drop(wake);
    }
}

/// Called by `Hub.destroy()` when the loop outlives its hub: forgets the hub's greenlets, keeps the loop's own
/// watchers and timers for the next hub.
#[pyfunction]
pub fn retire_hub(r#loop: &Bound<'_, Loop>) -> PyResult<()> {
    let this = r#loop.get();
    this.check_thread()?;
    this.forget_greenlets();
    Ok(())
}

/// Makes `hub` (a greenlet of the loop's thread) the one the loop runs in, once the previous one has ended.
#[pyfunction]
pub fn adopt_hub(r#loop: &Bound<'_, Loop>, hub: Bound<'_, PyAny>) -> PyResult<()> {
    let this = r#loop.get();
    this.check_thread()?;
    let previous = this.current_hub(r#loop.py());
    greenlet_api::started(&hub)?; // refuses anything but a greenlet
    if !previous.is(&hub) && greenlet_api::active(&previous)? {
        return Err(PyRuntimeError::new_err("this loop's hub is still running: destroy it before handing its loop on"));
    }
    this.stopping.set(false); // the previous hub's destroy() stopped it
    drop(this.replace_hub(hub.unbind()));
    Ok(())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(retire_hub, m)?)?;
    m.add_function(wrap_pyfunction!(adopt_hub, m)?)?;
    Ok(())
}
