//! `ferrovent._core.Loop`: the reactor one hub greenlet runs.
//!
//! The hub's `run()` (rust/run.rs, where its fairness bound is written) alternates between draining the ready
//! queue and polling I/O with the GIL released. Loop state sits in `Cell`/`RefCell`s confined to the
//! loop's thread; no borrow is ever held across a greenlet switch or a call into Python (another greenlet may
//! re-enter the loop meanwhile).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

use crate::fdtable::{Direction, FdTable};
use crate::fork_shared::ForkShared;
use crate::greenlet_api;
use crate::parking::{Parked, ParkingLot};
use crate::poller::{Poller, Readiness};
use crate::ready::{Inbox, Ready, TimerAction, Wake};
use crate::run::Drain;
use crate::timers::{Nanos, TimerHeap, TimerId};
use crate::watchers::{Callback, Watchers};

pyo3::create_exception!(
    ferrovent._core,
    BlockingSwitchOutError,
    pyo3::exceptions::PyAssertionError,
    "A blocking call was made from the hub (an event loop callback), which would block forever."
);
pyo3::create_exception!(
    ferrovent._core,
    InvalidSwitchError,
    pyo3::exceptions::PyAssertionError,
    "A greenlet parked in the loop was switched into by something other than the loop."
);

pyo3::create_exception!(
    ferrovent._core,
    InvalidThreadUseError,
    pyo3::exceptions::PyRuntimeError,
    "An object bound to one OS thread's hub was used from another thread."
);
pyo3::create_exception!(
    ferrovent._core,
    ConcurrentObjectUseError,
    pyo3::exceptions::PyAssertionError,
    "Two greenlets tried to wait on the same object in the same way at once (e.g. two readers of one socket)."
);

/// A greenlet parked on an fd.
pub struct FdWaiter {
    pub greenlet: Py<PyAny>,
    pub token: u64,
}

/// The sentinel `park()` returns when its timeout expires.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct TimedOutType;

#[pymethods]
impl TimedOutType {
    fn __repr__(&self) -> &'static str {
        "ferrovent._core.TIMEOUT"
    }
}

static TIMEOUT: PyOnceLock<Py<TimedOutType>> = PyOnceLock::new();

pub fn timeout_sentinel(py: Python<'_>) -> PyResult<&Py<TimedOutType>> {
    TIMEOUT.get_or_try_init(py, || Py::new(py, TimedOutType))
}

/// The address of a Python object: the key greenlets are parked under.
pub fn address(obj: &Bound<'_, PyAny>) -> usize {
    obj.as_ptr() as usize
}

/// The event loop. One per hub, used only from the thread that made it (other threads go through
/// `ThreadsafeHandle`).
#[pyclass(frozen, subclass, module = "ferrovent._core")]
pub struct Loop {
    /// The thread whose hub runs this loop: the only one allowed to wait in it or schedule on it. None once the
    /// loop is destroyed, so every entry point's thread check refuses it at no extra cost.
    owner: Cell<Option<std::thread::ThreadId>>,
    /// The hub greenlet the loop runs in and parked greenlets switch to. A destroyed hub's next hub takes the loop
    /// over (rust/handover.rs), so it can change, but only while no `run()` is on any stack.
    hub: RefCell<Py<PyAny>>,
    /// The address of `hub`, which the wait path compares the current greenlet with, reading no borrow flag.
    hub_address: Cell<usize>,
    pub(crate) poller: RefCell<Option<Poller>>,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) ready: RefCell<VecDeque<Ready>>,
    /// What the last poll brought, run in the middle of the next drain (rust/run.rs).
    pub(crate) arrivals: RefCell<VecDeque<Ready>>,
    pub(crate) timers: RefCell<TimerHeap<TimerAction>>,
    pub(crate) fds: RefCell<FdTable<FdWaiter>>,
    pub(crate) lot: RefCell<ParkingLot>,
    pub(crate) idle_waiters: RefCell<Vec<(Py<PyAny>, u64)>>,
    /// The wake handed to the greenlet being resumed; it takes it as soon as it runs.
    pub(crate) wake_slot: RefCell<Option<Wake>>,
    origin: Instant,
    pub(crate) now: Cell<Nanos>,
    pub(crate) drain: Drain,
    pub(crate) keepalive: Cell<usize>,
    /// `unref()` calls not yet matched by `ref()`: libev's loop-level unref, counted against what keeps it alive.
    pub(crate) unrefs: Cell<usize>,
    pub(crate) stopping: Cell<bool>,
    pub(crate) get_switch_interval: Py<PyAny>,
    pub(crate) readiness: RefCell<Vec<Readiness>>,
    /// Callback watchers (gevent's `loop.io`, `prepare`, ...): rust/watchers.rs.
    pub(crate) watchers: Watchers,
    /// Kernel objects a forked child must replace (rust/fork_shared.rs): `reinit` wakes their waiters with EBADF
    /// instead of registering them again, so their owners make the child its own.
    pub(crate) fork_shared: ForkShared,
}

// SAFETY: the loop's Cell/RefCell state is only touched with the GIL held (every entry point is a Python call, and
// `poll_io` moves the poller out before releasing the GIL), and no borrow is ever held across a GIL release; so the
// GIL serializes every access, even from another thread (the garbage collector's traversal, or a misuse that
// `check_thread` then refuses). ferrovent does not support free-threaded builds.
unsafe impl Sync for Loop {}

impl Loop {
    /// Refuses calls from a thread other than the loop's: they would wait in, or schedule on, the wrong loop.
    pub(crate) fn check_thread(&self) -> PyResult<()> {
        if self.owner.get() == Some(std::thread::current().id()) {
            return Ok(());
        }
        if self.owner.get().is_none() {
            return Err(PyValueError::new_err("operation on destroyed loop"));
        }
        Err(InvalidThreadUseError::new_err(
            "this loop belongs to another thread: use its run_callback_threadsafe() from other threads",
        ))
    }

    /// Whether `greenlet` is the loop's hub (where a blocking wait is refused).
    pub(crate) fn is_hub(&self, greenlet: &Bound<'_, PyAny>) -> bool {
        address(greenlet) == self.hub_address.get()
    }

    /// The loop's hub, as a new reference: a switch to it holds no borrow of the loop.
    pub(crate) fn current_hub<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.hub.borrow().bind(py).clone()
    }

    /// Makes `hub` the greenlet the loop runs in; returns the previous one, for the caller to drop outside borrows.
    pub(crate) fn replace_hub(&self, hub: Py<PyAny>) -> Py<PyAny> {
        self.hub_address.set(hub.as_ptr() as usize);
        self.hub.replace(hub)
    }

    pub(crate) fn is_destroyed(&self) -> bool {
        self.owner.get().is_none()
    }

    /// Nanoseconds since the loop was made, read fresh from the monotonic clock.
    pub(crate) fn clock(&self) -> Nanos {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The deadline `seconds` from now. Computed from a fresh clock reading, so a timer never fires early.
    pub(crate) fn deadline_after(&self, seconds: f64) -> Nanos {
        let delay = if seconds.is_finite() && seconds > 0.0 { (seconds * 1e9) as u64 } else { 0 };
        self.clock().saturating_add(delay)
    }

    pub(crate) fn push_ready(&self, entry: Ready) {
        self.ready.borrow_mut().push_back(entry);
    }

    /// Undoes what a parked wait registered: its timer and its place in an fd's queue.
    pub(crate) fn release_parked(&self, parked: Parked) {
        if let Some(timer) = parked.timer() {
            // Dropping the action may drop the last reference to Python objects: take it out first.
            let action = self.timers.borrow_mut().cancel(timer);
            drop(action);
        }
        if let Some((fd, direction)) = parked.fd() {
            let waiter = self.fds.borrow_mut().remove_waiter(fd, direction, |w| w.token == parked.token);
            drop(waiter);
        }
    }

    /// Unparks `greenlet` if it is still parked under `token`. False for a stale wake.
    pub(crate) fn claim(&self, greenlet: &Bound<'_, PyAny>, token: u64) -> bool {
        let parked = self.lot.borrow_mut().claim(address(greenlet), token);
        match parked {
            Some(parked) => {
                self.release_parked(parked);
                true
            }
            None => false,
        }
    }

    /// Forgets the current greenlet's wait after it was resumed by an exception or an invalid switch.
    pub(crate) fn abandon_wait(&self, greenlet: &Bound<'_, PyAny>, token: u64) {
        let parked = self.lot.borrow_mut().claim(address(greenlet), token);
        if let Some(parked) = parked {
            self.release_parked(parked);
        }
    }

    fn fd_of(fd: i64) -> PyResult<usize> {
        usize::try_from(fd).map_err(|_| PyValueError::new_err(format!("invalid file descriptor: {fd}")))
    }

    /// Registers the fd with the poller on its first wait. False if the poller refuses it (a regular file):
    /// such an fd is always ready, as with poll(2). `persistent`: the caller will call `closing_fd` before closing.
    pub(crate) fn ensure_registered(&self, fd: usize, persistent: bool) -> PyResult<bool> {
        if self.fds.borrow().is_registered(fd) {
            self.fds.borrow_mut().mark_registered(fd, persistent);
            return Ok(true);
        }
        let raw = RawFd::try_from(fd).map_err(|_| PyValueError::new_err("file descriptor out of range"))?;
        let registered = {
            let poller = self.poller.borrow();
            let poller = poller.as_ref().ok_or_else(|| PyRuntimeError::new_err("loop is polling"))?;
            poller.register(raw)
        };
        match registered {
            Ok(()) => {
                self.fds.borrow_mut().mark_registered(fd, persistent);
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Drops a registration that nobody promised to close once its last waiter has gone.
    pub(crate) fn release_if_transient(&self, fd: usize) {
        if self.watchers.watches_fd(fd) {
            return;
        }
        if self.fds.borrow_mut().release_if_transient(fd) {
            if let Some(poller) = self.poller.borrow().as_ref() {
                poller.deregister(RawFd::try_from(fd).unwrap_or(-1));
            }
        }
    }

    /// `wait_read`/`wait_write`: level truth first, then a transient registration for the next edge.
    fn wait_level(
        &self,
        py: Python<'_>,
        fd: i64,
        direction: Direction,
        timeout: Option<f64>,
        timeout_exc: Option<Bound<'_, PyAny>>,
        referenced: bool,
    ) -> PyResult<bool> {
        self.check_thread()?;
        let fd = Self::fd_of(fd)?;
        if crate::wait::level_ready(fd, direction)? {
            return Ok(true);
        }
        self.wait_fd_current(py, fd, direction, timeout, timeout_exc, referenced, false)
    }

    /// Wakes every greenlet in `waiters` by raising `exc` in it.
    fn raise_in_waiters(&self, waiters: Vec<FdWaiter>, exc: &Bound<'_, PyAny>) {
        for FdWaiter { greenlet, token } in waiters {
            let wake = Some(Wake::Raise(exc.clone().unbind()));
            self.push_ready(Ready::Resume { greenlet, token, wake });
        }
    }

    /// Forgets `fd`'s registration and takes its waiters, for the caller to wake or drop (`closing_fd`).
    pub(crate) fn forget_fd(&self, fd: usize) -> Vec<FdWaiter> {
        let mut waiters = Vec::new();
        let was_registered = self.fds.borrow_mut().close(fd, &mut waiters);
        if was_registered {
            if let Some(poller) = self.poller.borrow().as_ref() {
                poller.deregister(RawFd::try_from(fd).unwrap_or(-1));
            }
        }
        waiters
    }

    /// `closing_fd` on the loop's thread: forgets `fd` and wakes its waiters with OSError(EBADF).
    pub(crate) fn close_fd(&self, py: Python<'_>, fd: usize) {
        let waiters = self.forget_fd(fd);
        if !waiters.is_empty() {
            let exc = PyOSError::new_err((libc::EBADF, "File descriptor was closed in another greenlet"));
            self.raise_in_waiters(waiters, exc.value(py).as_any());
        }
    }

    pub(crate) fn schedule_timer(&self, seconds: f64, action: TimerAction, referenced: bool) -> TimerId {
        let deadline = self.deadline_after(seconds);
        self.timers.borrow_mut().insert(deadline, action, referenced)
    }
}

#[pymethods]
impl Loop {
    #[new]
    fn new(py: Python<'_>, hub: Py<PyAny>) -> PyResult<Self> {
        greenlet_api::init(py)?;
        let poller = Poller::new()?;
        let inbox = Arc::new(Inbox::new(poller.waker()));
        let get_switch_interval = py.import("sys")?.getattr("getswitchinterval")?.unbind();
        Ok(Self {
            owner: Cell::new(Some(std::thread::current().id())),
            hub_address: Cell::new(hub.as_ptr() as usize),
            hub: RefCell::new(hub),
            poller: RefCell::new(Some(poller)),
            inbox,
            ready: RefCell::new(VecDeque::new()),
            arrivals: RefCell::new(VecDeque::new()),
            timers: RefCell::new(TimerHeap::default()),
            fds: RefCell::new(FdTable::default()),
            lot: RefCell::new(ParkingLot::default()),
            idle_waiters: RefCell::new(Vec::new()),
            wake_slot: RefCell::new(None),
            origin: Instant::now(),
            now: Cell::new(0),
            drain: Drain::default(),
            keepalive: Cell::new(0),
            unrefs: Cell::new(0),
            stopping: Cell::new(false),
            get_switch_interval,
            readiness: RefCell::new(Vec::new()),
            watchers: Watchers::default(),
            fork_shared: ForkShared::default(),
        })
    }

    /// Shows the garbage collector every object the loop holds, so a hub and loop no longer used (a finished
    /// thread's) are collected despite referring to each other. A borrow in progress means the loop is running on
    /// this thread right now: nothing it holds can be garbage then, so it is skipped.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(hub) = self.hub.try_borrow() {
            visit.call(&*hub)?;
        }
        visit.call(&self.get_switch_interval)?;
        for queue in [&self.ready, &self.arrivals] {
            let Ok(queue) = queue.try_borrow() else { continue };
            for obj in queue.iter().flat_map(Ready::objects) {
                visit.call(obj)?;
            }
            for entry in queue.iter() {
                if let Ready::Callback(handle) = entry {
                    handle.get().traverse(&visit)?;
                }
            }
        }
        if let Ok(timers) = self.timers.try_borrow() {
            for obj in timers.actions().flat_map(TimerAction::objects) {
                visit.call(obj)?;
            }
        }
        if let Ok(fds) = self.fds.try_borrow() {
            for waiter in fds.waiters() {
                visit.call(&waiter.greenlet)?;
            }
        }
        if let Ok(idle) = self.idle_waiters.try_borrow() {
            for (greenlet, _) in idle.iter() {
                visit.call(greenlet)?;
            }
        }
        if let Ok(slot) = self.wake_slot.try_borrow() {
            if let Some(obj) = slot.as_ref().and_then(Wake::object) {
                visit.call(obj)?;
            }
        }
        self.watchers.traverse(&visit)
    }

    /// Makes this the calling thread's loop, used by the module-level waits.
    fn make_current(slf: &Bound<'_, Self>) -> PyResult<()> {
        crate::current::set(Some(slf))
    }

    /// Stops this being the calling thread's loop (the hub was destroyed).
    #[staticmethod]
    fn forget_current() -> PyResult<()> {
        crate::current::set(None)
    }

    /// The hub greenlet this loop switches to.
    #[getter]
    fn hub<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.current_hub(py)
    }

    /// Runs until nothing referenced is left (or `stop()`); called by the hub greenlet.
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        self.check_thread()?;
        if !self.is_hub(&greenlet_api::current(py)?) {
            return Err(PyRuntimeError::new_err("Loop.run() must be called from the hub greenlet"));
        }
        self.run_until_idle(py)
    }

    /// Makes `run()` return after the current iteration.
    fn stop(&self) {
        self.stopping.set(true);
    }

    /// The loop's cached monotonic time, in seconds.
    fn now(&self) -> f64 {
        self.now.get() as f64 / 1e9
    }

    /// Refreshes the cached time.
    fn update_now(&self) {
        self.now.set(self.clock());
    }

    /// Schedules the first switch into a greenlet that has not started (spawn).
    fn start(&self, greenlet: Bound<'_, PyAny>) -> PyResult<()> {
        self.check_thread()?;
        let token = {
            let mut lot = self.lot.borrow_mut();
            let token = lot.new_token();
            lot.park(address(&greenlet), Parked::new(token, None));
            token
        };
        self.push_ready(Ready::Resume { greenlet: greenlet.unbind(), token, wake: None });
        Ok(())
    }

    /// Forgets whatever `greenlet` is parked on, so no pending wake reaches it (cancels a `start`).
    fn unpark(&self, greenlet: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.check_thread()?;
        let parked = self.lot.borrow_mut().unpark(address(greenlet));
        Ok(parked.map(|p| self.release_parked(p)).is_some())
    }

    /// Whether `greenlet` is parked in the loop (waiting, or started but not yet run).
    fn is_parked(&self, greenlet: &Bound<'_, PyAny>) -> bool {
        self.lot.borrow().token_of(address(greenlet)).is_some()
    }

    /// Wakes a greenlet parked in `park()` (or any wait), which returns `value`. False if it is not parked.
    #[pyo3(signature = (greenlet, value=None))]
    fn wake(&self, py: Python<'_>, greenlet: Bound<'_, PyAny>, value: Option<Py<PyAny>>) -> PyResult<bool> {
        self.check_thread()?;
        let Some(token) = self.lot.borrow().token_of(address(&greenlet)) else { return Ok(false) };
        let wake = Some(Wake::Value(value.unwrap_or_else(|| py.None())));
        self.push_ready(Ready::Resume { greenlet: greenlet.unbind(), token, wake });
        Ok(true)
    }

    /// Wakes a parked greenlet by raising `exc` in its wait. False if it is not parked.
    fn wake_raise(&self, greenlet: Bound<'_, PyAny>, exc: Py<PyAny>) -> PyResult<bool> {
        self.check_thread()?;
        let Some(token) = self.lot.borrow().token_of(address(&greenlet)) else { return Ok(false) };
        self.push_ready(Ready::Resume { greenlet: greenlet.unbind(), token, wake: Some(Wake::Raise(exc)) });
        Ok(true)
    }

    /// Schedules `exc` to be raised in `greenlet` wherever it is (gevent's kill).
    fn throw(&self, greenlet: Py<PyAny>, exc: Py<PyAny>) -> PyResult<()> {
        self.check_thread()?;
        self.push_ready(Ready::Throw { greenlet, exc });
        Ok(())
    }

    /// Schedules `func(*args)` to run in the hub, after everything already ready; the handle returned cancels it.
    #[pyo3(signature = (func, *args))]
    fn run_callback(&self, py: Python<'_>, func: Py<PyAny>, args: Py<PyTuple>) -> PyResult<Py<Callback>> {
        self.check_thread()?;
        let handle = Py::new(py, Callback::scheduled(func, args))?;
        self.push_ready(Ready::Callback(handle.clone_ref(py)));
        Ok(handle)
    }

    /// Runs `func(*args)` in the hub after `seconds`; returns a timer id for `cancel_timer`.
    #[pyo3(signature = (seconds, func, *args, r#ref=true))]
    fn call_later(&self, seconds: f64, func: Py<PyAny>, args: Py<PyTuple>, r#ref: bool) -> PyResult<TimerId> {
        self.check_thread()?;
        Ok(self.schedule_timer(seconds, TimerAction::Call { func, args }, r#ref))
    }

    /// Raises `exc` in `greenlet` after `seconds` (a Timeout); returns a timer id for `cancel_timer`.
    #[pyo3(signature = (seconds, greenlet, exc, r#ref=true))]
    fn throw_later(&self, seconds: f64, greenlet: Py<PyAny>, exc: Py<PyAny>, r#ref: bool) -> PyResult<TimerId> {
        self.check_thread()?;
        Ok(self.schedule_timer(seconds, TimerAction::Throw { greenlet, exc }, r#ref))
    }

    /// Cancels a timer; its action never runs after this. False if it already ran or was cancelled.
    fn cancel_timer(&self, id: TimerId) -> PyResult<bool> {
        self.check_thread()?;
        let action = self.timers.borrow_mut().cancel(id);
        Ok(action.is_some())
    }

    /// Whether a timer is still to run.
    fn timer_pending(&self, id: TimerId) -> bool {
        self.timers.borrow().is_pending(id)
    }

    /// Whether a timer has expired and its action waits in this iteration's arrivals (libev's "pending").
    fn timer_fired(&self, id: TimerId) -> bool {
        self.timers.borrow().is_fired(id)
    }

    /// Parks the current greenlet for `seconds` (0: yield to everything already ready).
    #[pyo3(signature = (seconds=0.0, r#ref=true))]
    fn sleep(&self, py: Python<'_>, seconds: f64, r#ref: bool) -> PyResult<()> {
        self.check_thread()?;
        self.sleep_current(py, seconds, r#ref)
    }

    /// Parks the current greenlet until `wake()` (returning its value) or the timeout (returning TIMEOUT).
    #[pyo3(signature = (timeout=None, r#ref=true))]
    fn park(&self, py: Python<'_>, timeout: Option<f64>, r#ref: bool) -> PyResult<Py<PyAny>> {
        self.check_thread()?;
        self.park_current(py, timeout, r#ref)
    }

    /// Parks the current greenlet until the loop has nothing else to run (`ferrovent.idle()`; gevent's
    /// `loop.idle()` makes an idle watcher instead).
    fn park_until_idle(&self, py: Python<'_>) -> PyResult<()> {
        self.check_thread()?;
        self.idle_current(py)
    }

    /// Waits until `fd` is readable: returns True at once if it already is (level truth), else parks.
    /// On timeout raises `timeout_exc` if given, else returns False.
    #[pyo3(signature = (fd, timeout=None, timeout_exc=None, r#ref=true))]
    fn wait_read(
        &self,
        py: Python<'_>,
        fd: i64,
        timeout: Option<f64>,
        timeout_exc: Option<Bound<'_, PyAny>>,
        r#ref: bool,
    ) -> PyResult<bool> {
        self.wait_level(py, fd, Direction::Read, timeout, timeout_exc, r#ref)
    }

    /// Waits until `fd` is writable; as `wait_read`.
    #[pyo3(signature = (fd, timeout=None, timeout_exc=None, r#ref=true))]
    fn wait_write(
        &self,
        py: Python<'_>,
        fd: i64,
        timeout: Option<f64>,
        timeout_exc: Option<Bound<'_, PyAny>>,
        r#ref: bool,
    ) -> PyResult<bool> {
        self.wait_level(py, fd, Direction::Write, timeout, timeout_exc, r#ref)
    }

    /// The socket layer's wait after EAGAIN: parks for the next readiness edge with no level check.
    /// With `exclusive`, a second greenlet waiting the same way on the same fd gets ConcurrentObjectUseError.
    /// `persistent`: the caller calls `closing_fd` before it closes the fd, so the registration may outlive the wait
    /// (the socket layer); otherwise it ends with the last waiter, as with `wait_read`.
    #[pyo3(signature = (fd, writable, timeout=None, timeout_exc=None, r#ref=true, exclusive=false, persistent=true))]
    #[allow(clippy::too_many_arguments)]
    fn wait_fd(
        &self,
        py: Python<'_>,
        fd: i64,
        writable: bool,
        timeout: Option<f64>,
        timeout_exc: Option<Bound<'_, PyAny>>,
        r#ref: bool,
        exclusive: bool,
        persistent: bool,
    ) -> PyResult<bool> {
        self.check_thread()?;
        let fd = Self::fd_of(fd)?;
        let direction = if writable { Direction::Write } else { Direction::Read };
        if exclusive && self.fds.borrow().has_waiters(fd, direction) {
            let way = if writable { "writing to" } else { "reading from" };
            return Err(ConcurrentObjectUseError::new_err(format!(
                "This socket is already used by another greenlet: another greenlet is {way} fd {fd}"
            )));
        }
        self.wait_fd_current(py, fd, direction, timeout, timeout_exc, r#ref, persistent)
    }

    /// Call before closing `fd`: forgets its registration and wakes its waiters with OSError(EBADF).
    fn closing_fd(&self, py: Python<'_>, fd: i64) -> PyResult<()> {
        self.check_thread()?;
        self.close_fd(py, Self::fd_of(fd)?);
        Ok(())
    }

    /// Wakes every greenlet waiting on `fd` by raising `exc` in it; the fd stays registered.
    fn cancel_wait(&self, fd: i64, exc: Bound<'_, PyAny>) -> PyResult<()> {
        self.check_thread()?;
        let fd = Self::fd_of(fd)?;
        let mut waiters = Vec::new();
        self.fds.borrow_mut().take_waiters(fd, &mut waiters);
        self.raise_in_waiters(waiters, &exc);
        Ok(())
    }

    /// Keeps the loop alive while work it will be told about is outstanding elsewhere (a thread pool job).
    fn add_ref(&self) {
        self.keepalive.set(self.keepalive.get() + 1);
    }

    /// Undoes one `add_ref`.
    fn remove_ref(&self) {
        self.keepalive.set(self.keepalive.get().saturating_sub(1));
    }

    /// A handle other OS threads use to read this loop's iteration count, the monitoring thread's heartbeat.
    fn heartbeat(&self) -> Heartbeat {
        Heartbeat { iterations: self.drain.heartbeat() }
    }

    /// libev's `ev_ref`: one more thing keeps `run()` going; undoes an `unref()` first.
    fn r#ref(&self) {
        match self.unrefs.get() {
            0 => self.add_ref(),
            n => self.unrefs.set(n - 1),
        }
    }

    /// libev's `ev_unref`: one thing fewer keeps `run()` going, even an active watcher (gevent's loop unrefs its
    /// own helper watchers this way). Undoes a `ref()` first.
    fn unref(&self) {
        match self.keepalive.get() {
            0 => self.unrefs.set(self.unrefs.get() + 1),
            n => self.keepalive.set(n - 1),
        }
    }

    /// How many things keep `run()` going (libev's `activecnt`): ready entries, referenced timers, fd waits and
    /// watchers, and `ref()`s, less `unref()`s; may be negative.
    #[getter]
    fn activecnt(&self) -> PyResult<i64> {
        if self.is_destroyed() {
            return Err(PyValueError::new_err("operation on destroyed loop"));
        }
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let pending = self.ready.borrow().len() + self.arrivals.borrow().len(); // callbacks, wakes: each holds the loop as a libev watcher would
        Ok(count(self.referenced_count()) + count(pending) - count(self.unrefs.get()))
    }

    /// Stops the loop for good and closes its poller: `run()` returns, and every later wait, schedule or watcher on
    /// it raises ValueError. False if it was destroyed already. Greenlets parked in it are never resumed.
    fn destroy(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let this = slf.get();
        if this.is_destroyed() {
            return Ok(false);
        }
        this.check_thread()?;
        this.owner.set(None);
        this.stopping.set(true);
        let poller = this.poller.borrow_mut().take();
        drop(poller);
        let queued = this.inbox.close(); // the waker's fd closes with it, the poller's gone
        drop(queued);
        crate::current::forget(slf)?; // module-level waits must not find it
        Ok(true)
    }

    /// Whether `destroy()` was called.
    #[getter]
    fn destroyed(&self) -> bool {
        self.is_destroyed()
    }

    /// A handle other OS threads use to run callbacks in this loop.
    fn threadsafe(&self) -> ThreadsafeHandle {
        ThreadsafeHandle { inbox: Arc::clone(&self.inbox) }
    }

    /// Rebuilds the poller and waker in a forked child (kqueue is not inherited; epoll is shared with the parent).
    fn reinit(&self, py: Python<'_>) -> PyResult<()> {
        if self.is_destroyed() {
            return Ok(()); // nothing to rebuild
        }
        self.check_thread()?;
        let poller = Poller::new()?;
        self.inbox.set_waker(poller.waker());
        *self.poller.borrow_mut() = Some(poller);
        self.fds.borrow_mut().forget_registrations();
        for fd in self.fork_shared.forked() {
            self.close_fd(py, fd);
        }
        let mut busy = self.fds.borrow().fds_with_waiters();
        busy.extend(self.watchers.watched_fds());
        for fd in busy {
            self.ensure_registered(fd, false)?;
        }
        Ok(())
    }

    /// Entries waiting in the ready queue (with the arrivals of the last poll not yet run).
    #[getter]
    fn ready_count(&self) -> usize {
        self.ready.borrow().len() + self.arrivals.borrow().len()
    }

    /// Pending timers.
    #[getter]
    fn timer_count(&self) -> usize {
        self.timers.borrow().len()
    }

    /// Greenlets parked in the loop (any wait, or spawned and not yet run).
    #[getter]
    fn parked_count(&self) -> usize {
        self.lot.borrow().len()
    }

    /// Greenlets parked on fds.
    #[getter]
    fn fd_waiter_count(&self) -> usize {
        self.fds.borrow().waiting()
    }

    /// Fds registered with the poller (counted when asked).
    #[getter]
    fn registered_fd_count(&self) -> usize {
        self.fds.borrow().registered()
    }

    /// Completed loop iterations (one drain and one poll each).
    #[getter]
    fn iteration(&self) -> u64 {
        self.drain.iterations()
    }

    /// Whether `run()` would keep going: anything ready or referenced remains.
    #[getter]
    fn alive_now(&self) -> bool {
        self.alive()
    }
}

/// A loop's iteration count, readable from any thread: it moves each time the loop completes a poll.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct Heartbeat {
    iterations: Arc<AtomicU64>,
}

#[pymethods]
impl Heartbeat {
    /// The loop's completed iterations so far.
    #[getter]
    fn iterations(&self) -> u64 {
        self.iterations.load(Ordering::Relaxed)
    }
}

/// The thread-safe face of a loop: other OS threads queue callbacks through it and wake the poll.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct ThreadsafeHandle {
    inbox: Arc<Inbox>,
}

#[pymethods]
impl ThreadsafeHandle {
    /// Runs `func(*args)` in the loop's thread, from any thread.
    #[pyo3(signature = (func, *args))]
    fn run_callback(&self, func: Py<PyAny>, args: Py<PyTuple>) -> PyResult<()> {
        // Dropped (returning normally) once the loop is destroyed: the calling thread may race with the loop's
        // end (a thread pool job, an Event set for a finished thread), and nothing would run the call anyway.
        self.inbox.push(func, args).map(drop).map_err(PyErr::from)
    }
}
