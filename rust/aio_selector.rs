//! `ferrovent._core.AioSelector`: the bookkeeping and the waiting of the asyncio loop's selector
//! (python/ferrovent/asyncio/_selector.py wraps it in the `selectors` API).
//!
//! It keeps the registered fds with each fd's `SelectorKey` (`Interest`, rust/aio_interest.rs: on Linux mirrored in
//! the selector's own level-triggered epoll instance, elsewhere an array of pollfds). `select` answers with level
//! truth, as the stdlib's selectors do: one zero-timeout epoll_wait (poll(2) over every registered fd elsewhere),
//! and the ready `(key, events)` pairs built here. Only when nothing is ready and the timeout allows does the loop's
//! greenlet park, as a waiter in the fd table and behind a timer: the first edge, the timeout or `wake` resumes it.
//! On Linux it waits on the epoll fd alone, which the hub's poller watches (edge-triggered) and which turns readable
//! whenever a registered fd gets ready; elsewhere on each of its fds, and it takes its other waits back on waking.
//! The registration in the hub's poller is made on the first park and kept (until the selector closes, or the fd is
//! unregistered): so a busy asyncio loop makes no watch calls at all.
//!
//! No readiness is lost between the empty answer and the park: nothing switches in between, so the hub has not
//! polled; whatever got ready after the answer queued an edge in the hub's poller (or, on the poller's first
//! registration of the epoll fd, is found by it), and the hub's next poll delivers it to the parked waiter. An edge
//! that comes while nobody waits (the loop was busy) wakes nobody, which is right: the next park starts from an
//! empty answer again.
//!
//! Yielding: a select that does not park lets the hub run only when the hub has something to run (its ready queue
//! is not empty) or a switch interval has passed since the loop last let it run. In the first case the loop's
//! greenlet queues behind the others (FIFO, as `sleep(0)`); in the second it parks behind a zero timer, which fires
//! after the hub's next poll (the hub drains for at most a switch interval before polling): so greenlets waiting
//! on fds and timers get their turn within about two switch intervals however busy asyncio is.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, OwnedFd};

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

use crate::aio_interest::{Interest, Refused};
use crate::event_loop::{address, FdWaiter, Loop};
use crate::fdtable::Direction;
use crate::ready::{Ready, Wake};
use crate::sockops::os_error;
use crate::timers::Nanos;

/// A ready fd: its `SelectorKey`, the key's `data` (read when the key was registered: a `SelectorKey` is an
/// immutable named tuple), and the `selectors` event bits found.
pub(crate) struct ReadyFd {
    pub(crate) key: Py<PyAny>,
    pub(crate) data: Py<PyAny>,
    pub(crate) events: u32,
}

/// asyncio's per-thread state: the running loop and the async-generator hooks. Other greenlets of the thread run
/// while the loop's greenlet waits in the hub, and may run a loop of their own: they must not see this loop's, and
/// it must get it back on return.
struct ThreadAsyncioState<'py> {
    calls: &'py ThreadAsyncioCalls,
    running: Bound<'py, PyAny>,
    hooks: Bound<'py, PyAny>,
}

/// The calls that read and set `ThreadAsyncioState`: asyncio's `_get_running_loop` and `_set_running_loop` (as
/// asyncio.events has them when first needed, its C ones where `_asyncio` exists), and sys's asyncgen hooks calls.
struct ThreadAsyncioCalls {
    get_running_loop: Py<PyAny>,
    set_running_loop: Py<PyAny>,
    get_asyncgen_hooks: Py<PyAny>,
    set_asyncgen_hooks: Py<PyAny>,
}

static THREAD_ASYNCIO_CALLS: PyOnceLock<ThreadAsyncioCalls> = PyOnceLock::new();

impl ThreadAsyncioCalls {
    fn new(py: Python<'_>) -> PyResult<Self> {
        let (events, sys) = (py.import("asyncio.events")?, py.import("sys")?);
        Ok(Self {
            get_running_loop: events.getattr("_get_running_loop")?.unbind(),
            set_running_loop: events.getattr("_set_running_loop")?.unbind(),
            get_asyncgen_hooks: sys.getattr("get_asyncgen_hooks")?.unbind(),
            set_asyncgen_hooks: sys.getattr("set_asyncgen_hooks")?.unbind(),
        })
    }
}

impl<'py> ThreadAsyncioState<'py> {
    /// Keeps the thread's state and clears its running loop (the hooks are left as they are).
    fn hide(py: Python<'py>) -> PyResult<Self> {
        let calls = THREAD_ASYNCIO_CALLS.get_or_try_init(py, || ThreadAsyncioCalls::new(py))?;
        let running = calls.get_running_loop.bind(py).call0()?;
        let hooks = calls.get_asyncgen_hooks.bind(py).call0()?;
        calls.set_running_loop.bind(py).call1((py.None(),))?;
        Ok(Self { calls, running, hooks })
    }

    /// Puts back the running loop and the hooks kept (whatever other greenlets set meanwhile).
    fn show(self, py: Python<'py>) -> PyResult<()> {
        self.calls.set_running_loop.bind(py).call1((self.running,))?;
        let (firstiter, finalizer) = (self.hooks.get_item(0)?, self.hooks.get_item(1)?);
        self.calls.set_asyncgen_hooks.bind(py).call1((firstiter, finalizer)).map(drop)
    }
}

/// A registered fd's `SelectorKey` and the key's `data`.
struct Registered {
    key: Py<PyAny>,
    data: Py<PyAny>,
}

/// See the module documentation.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct AioSelector {
    lp: Py<Loop>,
    interest: RefCell<Interest<Registered>>,
    /// The loop's fork generation when the interest's kernel object was made: a fork since, and it is the parent's
    /// too (rust/fork_shared.rs).
    generation: Cell<u64>,
    /// The greenlet parked in `select`, if one is.
    parked: RefCell<Option<Py<PyAny>>>,
    /// When `select` last let the hub run, and the switch interval read then.
    yielded_at: Cell<Nanos>,
    switch_interval: Cell<Nanos>,
}

// SAFETY: every field is touched with the GIL held (each entry point is a Python call), and no borrow is held across
// a call into Python or a greenlet switch, so the GIL serializes every access, even the garbage collector's from
// another thread. ferrovent does not support free-threaded builds.
unsafe impl Sync for AioSelector {}

impl AioSelector {
    /// Level truth: the ready fds' keys and `selectors` event bits, from one zero-timeout question to the kernel
    /// (rust/aio_interest.rs), or two when the first names fds no longer registered (the second on a renewed
    /// backend, which holds only what is registered).
    fn level_pairs(&self, py: Python<'_>) -> PyResult<Vec<ReadyFd>> {
        self.renew_if_forked(py)?;
        let mut ready = Vec::new();
        let ask = |ready: &mut Vec<ReadyFd>| {
            self.interest.borrow_mut().ready(ready, |registered, events| {
                let (key, data) = (registered.key.clone_ref(py), registered.data.clone_ref(py));
                ReadyFd { key, data, events }
            })
        };
        if ask(&mut ready).map_err(kernel_error)? {
            ready.clear();
            self.renew(py)?;
            ask(&mut ready).map_err(kernel_error)?;
        }
        Ok(ready)
    }

    /// In a forked child (the loop's poller was rebuilt since the kernel object was made, and the parent shares
    /// it), gives the registrations a kernel object of the child's own, before anything asks it or changes it.
    fn renew_if_forked(&self, py: Python<'_>) -> PyResult<()> {
        let generation = self.lp.get().fork_shared.generation();
        if self.generation.get() == generation {
            return Ok(());
        }
        self.renew(py)?;
        self.generation.set(generation);
        Ok(())
    }

    /// Gives the registrations a new kernel object and retires the old one.
    fn renew(&self, py: Python<'_>) -> PyResult<()> {
        let old = self.interest.borrow_mut().renew().map_err(kernel_error)?;
        if let Some(old) = old {
            self.retire(py, old);
        }
        self.note_made();
        Ok(())
    }

    /// Tells the loop of the interest's kernel object, which a forked child must not wait on.
    fn note_made(&self) {
        if let Some(fd) = self.interest.borrow().kernel_fd() {
            self.lp.get().fork_shared.made(fd);
        }
    }

    /// Closes a kernel object the selector no longer uses, after the loop forgets its registration (made by `park`:
    /// a later fd with the same number must start clean) and wakes its waiter (a `select` parked in another greenlet,
    /// which then asks again), as `closing_fd` does.
    fn retire(&self, py: Python<'_>, kernel: OwnedFd) {
        retire_in(self.lp.get(), kernel, |lp, fd| lp.close_fd(py, fd));
    }

    /// Whether the hub should run before the loop goes on: it has work queued, or a switch interval has passed.
    fn hub_wants_turn(&self, lp: &Loop) -> bool {
        !lp.ready.borrow().is_empty()
            || !lp.arrivals.borrow().is_empty()
            || lp.clock().saturating_sub(self.yielded_at.get()) >= self.switch_interval.get()
    }

    /// Parks the current greenlet until an edge on one of `waits`, `timeout` seconds (None: no limit) or `wake`.
    fn park(&self, py: Python<'_>, lp: &Loop, timeout: Option<f64>, waits: &[(usize, Direction)]) -> PyResult<()> {
        let current = lp.current_waiter(py)?;
        let mut waited = Vec::with_capacity(waits.len());
        for &(fd, direction) in waits {
            // An fd the poller refuses (a regular file) is always ready: poll(2) reported it, so none is here.
            if lp.ensure_registered(fd, false)? {
                waited.push((fd, direction));
            }
        }
        let token = lp.park_token(&current, None);
        {
            let mut fds = lp.fds.borrow_mut();
            for &(fd, direction) in &waited {
                let waiter = FdWaiter { greenlet: current.clone().unbind(), token };
                fds.add_waiter(fd, direction, waiter, false);
            }
        }
        if let Some(seconds) = timeout {
            lp.arm_timeout(&current, token, seconds, Wake::TimedOut, true);
        }
        self.parked.replace(Some(current.clone().unbind()));
        let woke = lp.switch_away(py, &current, token);
        let parked = self.parked.take();
        drop(parked);
        drop(Self::forget_other_wakes(lp, token));
        let mut taken = Vec::new();
        {
            let mut fds = lp.fds.borrow_mut();
            for &(fd, direction) in &waited {
                taken.extend(fds.remove_waiter(fd, direction, |w| w.token == token));
            }
        }
        drop(taken); // after the borrow: the waiters hold greenlet references
        for &(fd, _) in &waited {
            if !self.interest.borrow().waits_on(fd) {
                lp.release_if_transient(fd); // unregistered while parked
            }
        }
        // A wake raising an error comes from an fd closing or a cancelled wait: the level poll that follows says what
        // is ready, as a select() would. An exception thrown into the greenlet (a kill) goes on up.
        woke.map(drop)
    }

    /// Takes out of the hub's arrivals the other wakes of a park that has ended: one poll can bring an edge for
    /// several of its fds, and these stale entries would otherwise count as work the hub has for `hub_wants_turn`.
    fn forget_other_wakes(lp: &Loop, token: u64) -> Vec<Ready> {
        let mut arrivals = lp.arrivals.borrow_mut();
        let (stale, kept): (Vec<Ready>, Vec<Ready>) = std::mem::take(&mut *arrivals)
            .into_iter()
            .partition(|entry| matches!(entry, Ready::Resume { token: t, .. } if *t == token));
        arrivals.extend(kept);
        stale // dropped by the caller, after the borrow
    }

    /// Lets the hub run once: behind the greenlets it has queued if it has any, else until after its next poll
    /// (a zero timer fires then), so that timers and fd waits are served too.
    fn yield_to_hub(&self, py: Python<'_>, lp: &Loop) -> PyResult<()> {
        if lp.ready.borrow().is_empty() {
            self.park(py, lp, Some(0.0), &[])
        } else {
            lp.sleep_current(py, 0.0, true)
        }
    }

    /// `select`, for the Rust caller (AioLoop's run_once), with each ready key's `data`.
    pub(crate) fn select_ready(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<ReadyFd>> {
        let lp = self.lp.get();
        let ready = self.level_pairs(py)?;
        let cannot_block = !ready.is_empty() || timeout.is_some_and(|t| t <= 0.0);
        if cannot_block && !self.hub_wants_turn(lp) {
            return Ok(ready);
        }
        drop(ready); // what is ready is asked again after the hub's turn
        lp.check_thread()?;
        let hidden = ThreadAsyncioState::hide(py)?;
        let waited = if cannot_block {
            self.yield_to_hub(py, lp)
        } else {
            let waits = self.interest.borrow().waits();
            self.park(py, lp, timeout, &waits)
        };
        let shown = hidden.show(py);
        waited?;
        shown?;
        self.note_yield(py, lp)?;
        self.level_pairs(py)
    }

    /// `wake`, for the Rust callers (AioLoop's call_soon).
    pub(crate) fn wake_parked(&self, py: Python<'_>) -> PyResult<()> {
        if self.parked.borrow().is_none() {
            return Ok(());
        }
        let lp = self.lp.get();
        lp.check_thread()?;
        let Some(greenlet) = self.parked.take() else { return Ok(()) };
        let token = lp.lot.borrow().token_of(address(greenlet.bind(py)));
        if let Some(token) = token {
            lp.push_ready(Ready::Resume { greenlet, token, wake: Some(Wake::Value(py.None())) });
        }
        Ok(())
    }

    fn note_yield(&self, py: Python<'_>, lp: &Loop) -> PyResult<()> {
        let interval: f64 = lp.get_switch_interval.bind(py).call0()?.extract()?;
        self.switch_interval.set(if interval > 0.0 { (interval * 1e9) as Nanos } else { 0 });
        self.yielded_at.set(lp.clock());
        Ok(())
    }
}

#[pymethods]
impl AioSelector {
    #[new]
    fn new(r#loop: Py<Loop>) -> PyResult<Self> {
        let generation = r#loop.get().fork_shared.generation();
        let selector = Self {
            lp: r#loop,
            interest: RefCell::new(Interest::new().map_err(kernel_error)?),
            generation: Cell::new(generation),
            parked: RefCell::default(),
            yielded_at: Cell::new(0),
            switch_interval: Cell::new(0),
        };
        selector.note_made();
        Ok(selector)
    }

    /// Registers `fd` for `events` (`selectors.EVENT_READ`/`EVENT_WRITE`) with `key`, or updates its registration.
    /// Raises OSError if the kernel refuses it (epoll: PermissionError for a regular file), registering nothing new.
    fn set(&self, py: Python<'_>, fd: usize, events: u32, key: Bound<'_, PyAny>) -> PyResult<()> {
        self.renew_if_forked(py)?;
        let data = key.getattr(pyo3::intern!(py, "data"))?.unbind();
        let outcome = self.interest.borrow_mut().set(fd, events, Registered { key: key.unbind(), data });
        // dropped after the borrow: the key given back may be the last reference to the old one
        match outcome {
            Ok(previous) => {
                drop(previous);
                Ok(())
            }
            Err(Refused { error, key }) => {
                drop(key);
                Err(kernel_error(error))
            }
        }
    }

    /// Forgets `fd`; the poller's registration ends unless a greenlet waits on it.
    fn remove(&self, py: Python<'_>, fd: usize) -> PyResult<()> {
        self.renew_if_forked(py)?;
        let key = self.interest.borrow_mut().remove(fd);
        drop(key);
        let lp = self.lp.get();
        if lp.check_thread().is_ok() {
            lp.release_if_transient(fd); // a destroyed loop has no registrations left to release
        }
        Ok(())
    }

    /// Forgets every fd and closes the selector's kernel object: nothing may be registered or polled after this.
    fn close(&self, py: Python<'_>) {
        let waits: Vec<usize> = self.interest.borrow().waits().into_iter().map(|(fd, _)| fd).collect();
        let (keys, kernel) = self.interest.borrow_mut().close();
        drop(keys);
        let lp = self.lp.get();
        if lp.check_thread().is_ok() {
            for fd in waits {
                lp.release_if_transient(fd); // poll(2)'s per-fd parks
            }
        }
        if let Some(kernel) = kernel {
            self.retire(py, kernel);
        }
    }

    /// The ready `(key, events)` pairs, as a selector's `select(timeout)` gives them (`timeout`: seconds, None for
    /// no limit): at once if some are ready and the hub need not run first; else after letting the hub run, parked
    /// until something is ready, the timeout or `wake` if nothing was, yielding once otherwise.
    fn select<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyList>> {
        let ready = PyList::empty(py);
        for ReadyFd { key, events, .. } in self.select_ready(py, timeout)? {
            ready.append((key, events))?;
        }
        Ok(ready)
    }

    /// Ends a `select` parked in another greenlet (no-op if none is).
    /// From another OS thread it raises InvalidThreadUseError (`call_soon_threadsafe` is the way from there).
    fn wake(&self, py: Python<'_>) -> PyResult<()> {
        self.wake_parked(py)
    }

    /// How many fds are registered.
    fn __len__(&self) -> usize {
        self.interest.borrow().len()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.lp)?;
        if let Ok(interest) = self.interest.try_borrow() {
            for registered in interest.keys() {
                visit.call(&registered.key)?;
                visit.call(&registered.data)?;
            }
        }
        if let Ok(parked) = self.parked.try_borrow() {
            if let Some(greenlet) = parked.as_ref() {
                visit.call(greenlet)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let keys = self.interest.try_borrow_mut().map(|mut i| i.take_keys());
        drop(keys);
    }
}

impl Drop for AioSelector {
    /// A selector never closed (its asyncio loop was not): the loop forgets its kernel object as in `retire`, but
    /// drops the waiters instead of waking them (a greenlet parked on it is garbage too).
    fn drop(&mut self) {
        let (keys, kernel) = self.interest.get_mut().close();
        drop(keys);
        if let Some(kernel) = kernel {
            retire_in(self.lp.get(), kernel, |lp, fd| drop(lp.forget_fd(fd)));
        }
    }
}

/// The kernel's refusal as Python's `OSError(errno, strerror)`, whose subclass Python picks by errno
/// (PermissionError for EPERM), as the stdlib's selectors raise it.
fn kernel_error(error: std::io::Error) -> PyErr {
    error.raw_os_error().map_or_else(|| error.into(), os_error)
}

/// Closes `kernel` once `forget` has made `lp` forget its fd (and the loop's fork registry, which `note_made` told,
/// too). Off the loop's thread the fd is left open instead: the loop's registration of it cannot be forgotten from
/// there, and a later fd with its number would inherit it.
fn retire_in(lp: &Loop, kernel: OwnedFd, forget: impl FnOnce(&Loop, usize)) {
    if lp.check_thread().is_ok() {
        let fd = usize::try_from(kernel.as_raw_fd()).unwrap_or(usize::MAX);
        lp.fork_shared.forget(fd);
        forget(lp, fd);
    } else if !lp.is_destroyed() {
        std::mem::forget(kernel);
    }
}
