//! The ready queue's entries, how a parked greenlet is woken, and the thread-safe inbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::timers::TimerId;

/// What a parked greenlet finds when it resumes.
pub enum Wake {
    /// Woken normally, with a value for the waiter.
    Value(Py<PyAny>),
    /// Its timeout expired first.
    TimedOut,
    /// The wait failed: raise this exception instance in the waiter (a closed fd, a cancelled wait).
    Raise(Py<PyAny>),
}

impl Wake {
    /// The Python object it carries, if any (for the garbage collector).
    pub fn object(&self) -> Option<&Py<PyAny>> {
        match self {
            Wake::Value(obj) | Wake::Raise(obj) => Some(obj),
            Wake::TimedOut => None,
        }
    }
}

/// One unit of work for the hub, run in FIFO order.
pub enum Ready {
    /// Switch into `greenlet` if it is still parked under `token`; a stale entry is dropped. `wake` is None
    /// for the first switch into a greenlet that has not started.
    Resume { greenlet: Py<PyAny>, token: u64, wake: Option<Wake> },
    /// Raise `exc` in `greenlet` wherever it is (kill).
    Throw { greenlet: Py<PyAny>, exc: Py<PyAny> },
    /// Call `func(*args)` in the hub.
    Call { func: Py<PyAny>, args: Py<PyTuple> },
    /// Call a callback watcher's `func(*args)` in the hub, unless the watch `id` was stopped since it was collected.
    Watch { id: u64, func: Py<PyAny>, args: Py<PyTuple> },
    /// Run a `loop.run_callback` handle's call, unless it was stopped.
    Callback(Py<crate::watchers::Callback>),
    /// Run a fired timer's action, unless the timer was cancelled after it fired.
    Timer(TimerId),
}

impl Ready {
    /// The Python objects it holds (for the garbage collector, which asks for every entry at every full
    /// collection: so nothing is allocated here).
    pub fn objects(&self) -> impl Iterator<Item = &Py<PyAny>> {
        let pair = match self {
            Ready::Resume { greenlet, wake, .. } => [Some(greenlet), wake.as_ref().and_then(Wake::object)],
            Ready::Throw { greenlet, exc } => [Some(greenlet), Some(exc)],
            Ready::Call { func, args } | Ready::Watch { func, args, .. } => [Some(func), Some(args.as_any())],
            Ready::Callback(handle) => [Some(handle.as_any()), None], // and what it holds: see Loop::__traverse__
            Ready::Timer(_) => [None, None],
        };
        pair.into_iter().flatten()
    }
}

/// What a timer does when it fires: the same shapes as the ready entries it turns into.
pub enum TimerAction {
    Resume { greenlet: Py<PyAny>, token: u64, wake: Wake },
    Throw { greenlet: Py<PyAny>, exc: Py<PyAny> },
    Call { func: Py<PyAny>, args: Py<PyTuple> },
}

impl TimerAction {
    /// The Python objects it holds (for the garbage collector, which asks for every pending timer at every full
    /// collection: so nothing is allocated here).
    pub fn objects(&self) -> impl Iterator<Item = &Py<PyAny>> {
        let pair = match self {
            TimerAction::Resume { greenlet, wake, .. } => [Some(greenlet), wake.object()],
            TimerAction::Throw { greenlet, exc } => [Some(greenlet), Some(exc)],
            TimerAction::Call { func, args } => [Some(func), Some(args.as_any())],
        };
        pair.into_iter().flatten()
    }
}

/// Callbacks handed to the loop by other OS threads, and the waker that interrupts its poll (None once the loop
/// is destroyed).
pub struct Inbox {
    items: Mutex<Vec<(Py<PyAny>, Py<PyTuple>)>>,
    pending: AtomicBool,
    waker: Mutex<Option<Arc<Waker>>>,
}

impl Inbox {
    pub fn new(waker: Arc<Waker>) -> Self {
        Self { items: Mutex::new(Vec::new()), pending: AtomicBool::new(false), waker: Mutex::new(Some(waker)) }
    }

    fn waker(&self) -> std::sync::MutexGuard<'_, Option<Arc<Waker>>> {
        self.waker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `func(*args)` for the loop's thread and wakes its poll. Safe from any thread. False, with nothing
    /// queued (the call is dropped), once the loop is destroyed.
    pub fn push(&self, func: Py<PyAny>, args: Py<PyTuple>) -> std::io::Result<bool> {
        let waker = self.waker();
        let Some(waker) = waker.as_ref() else { return Ok(false) };
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((func, args));
        self.pending.store(true, Ordering::Release);
        waker.wake().map(|()| true)
    }

    /// Takes everything queued so far (cheap when nothing is).
    pub fn take(&self) -> Vec<(Py<PyAny>, Py<PyTuple>)> {
        if !self.pending.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut *self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Points the inbox at a rebuilt poller's waker (after fork).
    pub fn set_waker(&self, waker: Arc<Waker>) {
        *self.waker() = Some(waker);
    }

    /// Refuses pushes from now on (the loop was destroyed) and returns what is queued, for the caller to drop.
    pub fn close(&self) -> Vec<(Py<PyAny>, Py<PyTuple>)> {
        *self.waker() = None;
        self.take()
    }
}
