//! Callback watchers: the loop's gevent-style face (`loop.io`, `prepare`, `check`, `idle`, `run_callback`'s handle)
//! for libraries that integrate below the greenlet level (zmq.green, uWSGI's plugin, pika's adapter).
//!
//! Greenlets never come through here: they park in the fd table and the timer heap (wait.rs), and that path costs
//! nothing more for watchers existing. A watcher is a Python callable the hub calls at a fixed point of each loop
//! iteration (rust/run.rs):
//!
//! - prepare: just before the poll, called there and then;
//! - io: after the poll, for as long as its fd is ready in a direction it watches (level-triggered, as with libev:
//!   a callback that leaves data unread is called again on the next iteration). The poller stays edge-triggered;
//!   its registration of the fd only ends a blocking poll. Each iteration with io watchers reads their fds' level
//!   with one zero-timeout poll(2); while one was ready, the next poll does not block, since no new edge may come;
//! - check: after the poll, beside the fd events and fired timers;
//! - idle: after the poll, only when no event of its priority or a higher one is to run (libev's rule); while one is
//!   active the poll does not block.
//!
//! Callbacks from the poll join the iteration's arrivals, so they run in the hub with errors reported. Liveness is
//! not counted here: the Python watcher holds the loop's `add_ref` while it is active and referenced.
//!
//! Priority (libev's): among one iteration's arrivals, the callbacks of watchers with a higher priority run first,
//! everything else counting as priority 0; equal priorities keep arrival order. Timer watchers are timers of the
//! heap (`watch_timer`) whose priority is remembered here. Only while some watcher has a non-zero priority are the
//! arrivals looked at at all, so greenlet wakes cost nothing more.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::event_loop::Loop;
use crate::hashers::{IntMap, IntSet};
use crate::poll_bits::{poll_now, poll_request, ready_directions};
use crate::ready::{Ready, TimerAction};
use crate::timers::TimerId;

/// libev's event bits, which gevent's API exposes: `READ`, `WRITE` (rust/poll_bits.rs), and `ERROR` for an fd that
/// went bad.
pub(crate) use crate::poll_bits::{READ, WRITE};
pub const ERROR: u32 = 0x8000_0000;

/// When in an iteration a watcher's callback runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Io { fd: usize, events: u32 },
    Prepare,
    Check,
    Idle,
}

struct Watch {
    id: u64,
    kind: Kind,
    callback: Py<PyAny>,
    priority: i32,
}

/// The active watchers of one loop.
#[derive(Default)]
pub(crate) struct Watchers {
    list: RefCell<Vec<Watch>>,
    next_id: Cell<u64>,
    /// An io watcher's fd was ready at the last look (or one just started): the next poll must not block.
    io_hot: Cell<bool>,
    /// Watches in `list` with a non-zero priority.
    prioritized: Cell<usize>,
    /// The non-zero priorities of timer watchers' pending timers.
    timer_priorities: RefCell<IntMap<TimerId, i32>>,
    /// Watches whose callback was collected and has not run yet (libev's "pending").
    pending: RefCell<IntSet<u64>>,
}

impl Watchers {
    fn add(&self, kind: Kind, callback: Py<PyAny>, priority: i32) -> u64 {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        self.list.borrow_mut().push(Watch { id, kind, callback, priority });
        if priority != 0 {
            self.prioritized.set(self.prioritized.get() + 1);
        }
        id
    }

    fn remove(&self, id: u64) -> Option<Watch> {
        let mut list = self.list.borrow_mut();
        let index = list.iter().position(|w| w.id == id)?;
        let watch = list.remove(index);
        self.pending.borrow_mut().remove(&id); // as libev's: a stopped watcher's collected callback does not run
        if watch.priority != 0 {
            self.prioritized.set(self.prioritized.get() - 1);
        }
        Some(watch)
    }

    /// The ids, callbacks and priorities of the watchers of one kind, in the order they were started.
    fn callbacks(&self, py: Python<'_>, kind: Kind) -> Vec<(u64, Py<PyAny>, i32)> {
        let list = self.list.borrow();
        list.iter().filter(|w| w.kind == kind).map(|w| (w.id, w.callback.clone_ref(py), w.priority)).collect()
    }

    /// The ready entry that runs a watch's collected callback; the watch is pending until then.
    fn collected(&self, id: u64, func: Py<PyAny>, args: Py<PyTuple>) -> Ready {
        self.pending.borrow_mut().insert(id);
        Ready::Watch { id, func, args }
    }

    /// Ends a watch's pending state as its callback is about to run; false if it was stopped meanwhile.
    pub(crate) fn take_pending(&self, id: u64) -> bool {
        self.pending.borrow_mut().remove(&id)
    }

    /// Whether any watcher has a non-zero priority, so that arrivals must be ordered.
    fn ordering(&self) -> bool {
        self.prioritized.get() > 0 || !self.timer_priorities.borrow().is_empty()
    }

    /// The priority of an arrival: a fired timer watcher's (forgotten now), else 0.
    fn arrival_priority(&self, entry: &Ready) -> i32 {
        match entry {
            Ready::Timer(id) => self.timer_priorities.borrow_mut().remove(id).unwrap_or(0),
            _ => 0,
        }
    }

    fn has(&self, kind: Kind) -> bool {
        self.list.borrow().iter().any(|w| w.kind == kind)
    }

    /// Whether an io watcher watches `fd` (its registration must outlive greenlet waits).
    pub(crate) fn watches_fd(&self, fd: usize) -> bool {
        self.list.borrow().iter().any(|w| matches!(w.kind, Kind::Io { fd: f, .. } if f == fd))
    }

    /// Fds io watchers watch, for re-registration after fork.
    pub(crate) fn watched_fds(&self) -> Vec<usize> {
        let list = self.list.borrow();
        list.iter().filter_map(|w| if let Kind::Io { fd, .. } = w.kind { Some(fd) } else { None }).collect()
    }

    /// Whether the next poll must not block: an io watcher's fd may be ready with no edge to come, or an idle
    /// watcher waits for a poll that finds nothing.
    pub(crate) fn poll_must_not_block(&self) -> bool {
        self.io_hot.get() || self.has(Kind::Idle)
    }

    /// Shows the garbage collector every callback held, unless the list is being changed right now.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(list) = self.list.try_borrow() {
            for watch in list.iter() {
                visit.call(&watch.callback)?;
            }
        }
        Ok(())
    }

    /// The io watchers whose fds are ready, as `(id, callback, revents, priority)`; one zero-timeout poll(2) for all.
    /// A watcher whose fd is no longer open gets `READ | WRITE | ERROR` once and is stopped, as libev does.
    /// `gone` gets the fds of watchers stopped that way.
    fn ready_io(&self, py: Python<'_>, gone: &mut Vec<usize>) -> Vec<(u64, Py<PyAny>, u32, i32)> {
        let watched: Vec<(u64, usize, u32, i32)> = self
            .list
            .borrow()
            .iter()
            .filter_map(|w| match w.kind {
                Kind::Io { fd, events } => Some((w.id, fd, events, w.priority)),
                _ => None,
            })
            .collect();
        self.io_hot.set(false);
        if watched.is_empty() {
            return Vec::new();
        }
        let mut pollfds: Vec<libc::pollfd> = watched
            .iter()
            .map(|&(_, fd, events, _)| libc::pollfd {
                fd: RawFd::try_from(fd).unwrap_or(-1),
                events: poll_request(events),
                revents: 0,
            })
            .collect();
        match poll_now(&mut pollfds) {
            Ok(0) => return Vec::new(),
            Ok(_) => {}
            Err(_) => {
                self.io_hot.set(true); // interrupted (a signal): look again next iteration, without blocking first
                return Vec::new();
            }
        }
        let mut fired = Vec::new();
        for (&(id, fd, _, priority), pollfd) in watched.iter().zip(&pollfds) {
            let revents = libev_bits(pollfd.events, pollfd.revents);
            if revents == 0 {
                continue;
            }
            let callback = self.list.borrow().iter().find(|w| w.id == id).map(|w| w.callback.clone_ref(py));
            if revents & ERROR != 0 {
                drop(self.remove(id)); // its fd is gone: called once more, then stopped
                gone.push(fd);
            } else {
                self.io_hot.set(true);
            }
            fired.extend(callback.map(|callback| (id, callback, revents, priority)));
        }
        fired
    }
}

/// Reorders `arrivals` by `priorities` (one each), highest first, keeping arrival order among equals.
fn order_by_priority(arrivals: &mut Vec<Ready>, priorities: Vec<i32>) {
    if priorities.iter().all(|&priority| priority == 0) {
        return;
    }
    let mut tagged: Vec<(i32, Ready)> = priorities.into_iter().zip(arrivals.drain(..)).collect();
    tagged.sort_by_key(|&(priority, _)| Reverse(priority)); // stable
    arrivals.extend(tagged.into_iter().map(|(_, entry)| entry));
}

/// libev's event bits for what poll(2) reported (`revents`) on a watcher's fd asked about `requested`: the ready
/// directions, and for an fd no longer open every direction and `ERROR`, as libev does.
fn libev_bits(requested: libc::c_short, revents: libc::c_short) -> u32 {
    if revents & libc::POLLNVAL != 0 {
        return READ | WRITE | ERROR;
    }
    ready_directions(requested, revents)
}

impl Loop {
    /// Calls every prepare watcher, in the hub, just before the poll, higher priorities first. Errors go to the hub's
    /// error handler.
    pub(crate) fn run_prepare_watchers(&self, py: Python<'_>) {
        let mut callbacks = self.watchers.callbacks(py, Kind::Prepare);
        callbacks.sort_by_key(|&(_, _, priority)| Reverse(priority));
        for (_, callback, _) in callbacks {
            let callback = callback.into_bound(py);
            if let Err(err) = callback.call0() {
                self.report_error(py, Some(&callback), err);
            }
        }
    }

    /// Adds the callbacks of ready io watchers to what the poll brought, then those of idle watchers if nothing
    /// else is to run, then those of check watchers; then orders them all by priority if any watcher has one.
    pub(crate) fn collect_watchers(&self, py: Python<'_>, arrivals: &mut Vec<Ready>) {
        let ordering = self.watchers.ordering();
        let mut priorities: Vec<i32> = Vec::new();
        if ordering {
            priorities.extend(arrivals.iter().map(|entry| self.watchers.arrival_priority(entry)));
        }
        let mut gone = Vec::new();
        let ready_io = self.watchers.ready_io(py, &mut gone);
        for fd in gone {
            self.release_if_transient(fd); // so that a new fd with the same number is registered afresh
        }
        // As libev's: an idle watcher runs when no event of its priority or a higher one is pending (prepare, check
        // and idle callbacks are no events). What has no priority of its own (greenlet wakes, callbacks) counts as 0.
        let mut busiest = ready_io.iter().map(|&(_, _, _, priority)| priority).max();
        if ordering {
            busiest = busiest.max(priorities.iter().copied().max());
        } else if !arrivals.is_empty() {
            busiest = busiest.max(Some(0));
        }
        if !self.ready.borrow().is_empty() {
            busiest = busiest.max(Some(0));
        }
        let mut add = |entry: Ready, priority: i32| {
            arrivals.push(entry);
            if ordering {
                priorities.push(priority);
            }
        };
        let watchers = &self.watchers;
        for (id, func, revents, priority) in ready_io {
            if let Ok(args) = PyTuple::new(py, [revents]) {
                add(watchers.collected(id, func, args.unbind()), priority);
            }
        }
        let mut phases = watchers.callbacks(py, Kind::Idle);
        phases.retain(|&(_, _, priority)| busiest.is_none_or(|busiest| priority > busiest));
        phases.extend(watchers.callbacks(py, Kind::Check));
        for (id, func, priority) in phases {
            add(watchers.collected(id, func, PyTuple::empty(py).unbind()), priority);
        }
        if ordering {
            order_by_priority(arrivals, priorities);
        }
    }

    fn check_watcher_thread(slf: &Bound<'_, Loop>) -> PyResult<()> {
        slf.get().check_thread()
    }

    /// Registers a watched fd with the poller, so that its edges end a blocking poll. A regular file cannot be
    /// registered; poll(2) reports it always ready, which the level check sees.
    fn register_watched_fd(&self, fd: usize) -> PyResult<()> {
        self.ensure_registered(fd, false).map(drop)
    }
}

/// Starts calling `callback(revents)` in the hub whenever `fd` is ready for `events` (`READ`, `WRITE` or both).
/// Returns the id `unwatch` takes.
#[pyfunction]
#[pyo3(signature = (r#loop, fd, events, callback, priority=0))]
pub fn watch_io(r#loop: &Bound<'_, Loop>, fd: i64, events: u32, callback: Py<PyAny>, priority: i32) -> PyResult<u64> {
    Loop::check_watcher_thread(r#loop)?;
    let fd = usize::try_from(fd).map_err(|_| PyValueError::new_err(format!("invalid file descriptor: {fd}")))?;
    if events & (READ | WRITE) == 0 || events & !(READ | WRITE) != 0 {
        return Err(PyValueError::new_err(format!("illegal event mask: {events:#x}")));
    }
    let this = r#loop.get();
    this.register_watched_fd(fd)?;
    let id = this.watchers.add(Kind::Io { fd, events }, callback, priority);
    this.watchers.io_hot.set(true);
    Ok(id)
}

/// Starts calling `callback()` in the hub at one point of each iteration: `"prepare"`, `"check"` or `"idle"`.
#[pyfunction]
#[pyo3(signature = (r#loop, phase, callback, priority=0))]
pub fn watch_phase(r#loop: &Bound<'_, Loop>, phase: &str, callback: Py<PyAny>, priority: i32) -> PyResult<u64> {
    Loop::check_watcher_thread(r#loop)?;
    let kind = match phase {
        "prepare" => Kind::Prepare,
        "check" => Kind::Check,
        "idle" => Kind::Idle,
        other => return Err(PyValueError::new_err(format!("unknown watcher phase: {other:?}"))),
    };
    Ok(r#loop.get().watchers.add(kind, callback, priority))
}

/// Calls `callback()` in the hub after `seconds`, ordered among its iteration's arrivals by `priority`; the timer
/// does not keep the loop alive by itself. Returns the id `unwatch_timer` takes.
#[pyfunction]
#[pyo3(signature = (r#loop, seconds, callback, priority=0))]
pub fn watch_timer(r#loop: &Bound<'_, Loop>, seconds: f64, callback: Py<PyAny>, priority: i32) -> PyResult<TimerId> {
    Loop::check_watcher_thread(r#loop)?;
    let this = r#loop.get();
    let args = PyTuple::empty(r#loop.py()).unbind();
    let id = this.schedule_timer(seconds, TimerAction::Call { func: callback, args }, false);
    if priority != 0 {
        this.watchers.timer_priorities.borrow_mut().insert(id, priority);
    }
    Ok(id)
}

/// Cancels a timer `watch_timer` started; False if it already ran or was cancelled.
#[pyfunction]
pub fn unwatch_timer(r#loop: &Bound<'_, Loop>, id: TimerId) -> PyResult<bool> {
    Loop::check_watcher_thread(r#loop)?;
    let this = r#loop.get();
    this.watchers.timer_priorities.borrow_mut().remove(&id);
    let action = this.timers.borrow_mut().cancel(id);
    Ok(action.is_some()) // dropped after the borrow: it may hold the last reference to the callback
}

/// Whether a watcher `watch_io` or `watch_phase` started has its callback collected and not yet run.
#[pyfunction]
pub fn watch_pending(r#loop: &Bound<'_, Loop>, id: u64) -> bool {
    r#loop.get().watchers.pending.borrow().contains(&id)
}

/// Stops a watcher `watch_io` or `watch_phase` started; False if it was already stopped.
#[pyfunction]
pub fn unwatch(r#loop: &Bound<'_, Loop>, id: u64) -> PyResult<bool> {
    Loop::check_watcher_thread(r#loop)?;
    let this = r#loop.get();
    let Some(watch) = this.watchers.remove(id) else { return Ok(false) };
    if let Kind::Io { fd, .. } = watch.kind {
        this.release_if_transient(fd);
    }
    drop(watch); // may drop the last reference to the callback: no borrow is held here
    Ok(true)
}

/// The handle `loop.run_callback` returns: true while the call is still to run; `stop()` cancels it.
///
/// Not tracked by the garbage collector, so that scheduling a callback costs one small allocation and no
/// collections: while pending it is held by the loop's ready queue, whose traversal shows the collector what it
/// holds (`traverse`); once run or stopped it holds nothing.
#[pyclass(frozen, module = "ferrovent._core", name = "callback")]
pub struct Callback {
    call: Mutex<Option<(Py<PyAny>, Py<PyTuple>)>>,
}

impl Callback {
    pub(crate) fn scheduled(func: Py<PyAny>, args: Py<PyTuple>) -> Self {
        Self { call: Mutex::new(Some((func, args))) }
    }

    fn call(&self) -> MutexGuard<'_, Option<(Py<PyAny>, Py<PyTuple>)>> {
        self.call.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the call out, once: None if it was stopped or has run.
    pub(crate) fn take(&self) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        self.call().take()
    }

    /// Shows the garbage collector what a pending call holds (for the loop's traversal).
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(call) = self.call.try_lock() {
            if let Some((func, args)) = call.as_ref() {
                visit.call(func)?;
                visit.call(args)?;
            }
        }
        Ok(())
    }
}

#[pymethods]
impl Callback {
    #[new]
    #[pyo3(signature = (func, *args))]
    fn new(func: Py<PyAny>, args: Py<PyTuple>) -> Self {
        Self::scheduled(func, args)
    }

    /// Runs the call now if it is still pending (the thread-safe path queues the handle itself).
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let Some((func, args)) = self.take() else { return Ok(()) };
        func.bind(py).call1(args.bind(py)).map(drop)
    }

    /// Cancels the call if it has not run.
    fn stop(&self) {
        let dropped = self.take();
        drop(dropped); // after the lock is released: dropping may run Python code
    }

    /// The same as `stop()`.
    fn close(&self) {
        self.stop();
    }

    /// True until the call has run or was stopped.
    #[getter]
    fn pending(&self) -> bool {
        self.call().is_some()
    }

    fn __bool__(&self) -> bool {
        self.pending()
    }

    /// The function to call; None once it has run or was stopped.
    #[getter]
    fn callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.call().as_ref().map(|(func, _)| func.clone_ref(py))
    }

    /// The arguments it will be called with; None once it has run or was stopped.
    #[getter]
    fn args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.call().as_ref().map(|(_, args)| args.clone_ref(py))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let call = self.call().as_ref().map(|(func, args)| (func.clone_ref(py), args.clone_ref(py)));
        match call {
            Some((func, args)) => format!("<callback {} args={}>", func.bind(py), args.bind(py)),
            None => "<callback stopped>".to_owned(),
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Callback>()?;
    m.add_function(wrap_pyfunction!(watch_io, m)?)?;
    m.add_function(wrap_pyfunction!(watch_phase, m)?)?;
    m.add_function(wrap_pyfunction!(unwatch, m)?)?;
    m.add_function(wrap_pyfunction!(watch_timer, m)?)?;
    m.add_function(wrap_pyfunction!(watch_pending, m)?)?;
    m.add_function(wrap_pyfunction!(unwatch_timer, m)?)?;
    m.add("READ", READ)?;
    m.add("WRITE", WRITE)?;
    m.add("ERROR", ERROR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_fd_reports_its_ready_directions() {
        assert_eq!(libev_bits(libc::POLLIN | libc::POLLOUT, libc::POLLOUT), WRITE);
        assert_eq!(libev_bits(libc::POLLIN, libc::POLLHUP), READ);
        assert_eq!(libev_bits(libc::POLLIN, 0), 0);
    }

    #[test]
    fn a_closed_fd_reports_error_with_both_directions() {
        assert_eq!(libev_bits(libc::POLLIN, libc::POLLNVAL), READ | WRITE | ERROR);
    }
}
