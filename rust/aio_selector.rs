//! `ferrovent._core.AioSelector`: the bookkeeping and the waiting of the asyncio loop's selector
//! (python/ferrovent/asyncio/_selector.py wraps it in the `selectors` API).
//!
//! It keeps the registered fds as an array of pollfds, ready to hand to poll(2), with each fd's `SelectorKey`.
//! `select` answers with level truth, as the stdlib's selectors do: one zero-timeout poll(2) over the registered
//! fds, and the ready `(key, events)` pairs built here. Only when nothing is ready and the timeout allows does the
//! loop's greenlet park, as a waiter in the fd table on each of its fds (the poller's edge-triggered registration,
//! made on the first park and kept until the fd is unregistered) and behind a timer: the first edge, the timeout or
//! `wake` resumes it, and it takes its other waits back. So a busy asyncio loop makes no watch calls at all.
//!
//! Yielding: a select that does not park lets the hub run only when the hub has something to run (its ready queue
//! is not empty) or a switch interval has passed since the loop last let it run. In the first case the loop's
//! greenlet queues behind the others (FIFO, as `sleep(0)`); in the second it parks behind a zero timer, which fires
//! after the hub's next poll (the hub drains for at most a switch interval before polling): so greenlets waiting
//! on fds and timers get their turn within about two switch intervals however busy asyncio is.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;

use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::event_loop::{address, FdWaiter, Loop};
use crate::fdtable::Direction;
use crate::ready::{Ready, Wake};
use crate::timers::Nanos;

/// The `selectors` module's event bits.
const EVENT_READ: u32 = 1;
const EVENT_WRITE: u32 = 2;

/// A ready fd: its `SelectorKey`, the key's `data` if known (read when the key was registered: a `SelectorKey` is
/// an immutable named tuple), and the `selectors` event bits found.
pub(crate) struct ReadyFd {
    pub(crate) key: Py<PyAny>,
    pub(crate) data: Option<Py<PyAny>>,
    pub(crate) events: u32,
}

/// A `(key, events)` pair of the `selectors` API.
type KeyEvents = (Py<PyAny>, u32);

/// A registered fd's `SelectorKey` and the key's `data`.
struct Registered {
    key: Py<PyAny>,
    data: Py<PyAny>,
}

/// The registered fds: pollfds in one array (what poll(2) takes), with each fd's key at the same index.
struct Interest<K> {
    pollfds: Vec<libc::pollfd>,
    keys: Vec<K>,
    index: HashMap<usize, usize>,
}

impl<K> Default for Interest<K> {
    fn default() -> Self {
        Self { pollfds: Vec::new(), keys: Vec::new(), index: HashMap::new() }
    }
}

impl<K> Interest<K> {
    fn set(&mut self, fd: usize, events: u32, key: K) -> Option<K> {
        let pollfd = libc::pollfd { fd: RawFd::try_from(fd).unwrap_or(-1), events: poll_bits(events), revents: 0 };
        match self.index.get(&fd) {
            Some(&i) => {
                self.pollfds[i] = pollfd;
                Some(std::mem::replace(&mut self.keys[i], key))
            }
            None => {
                self.index.insert(fd, self.pollfds.len());
                self.pollfds.push(pollfd);
                self.keys.push(key);
                None
            }
        }
    }

    fn remove(&mut self, fd: usize) -> Option<K> {
        let i = self.index.remove(&fd)?;
        self.pollfds.swap_remove(i);
        let key = self.keys.swap_remove(i);
        if let Some(moved) = self.pollfds.get(i) {
            self.index.insert(usize::try_from(moved.fd).unwrap_or(usize::MAX), i);
        }
        Some(key)
    }

    /// The fds and directions to wait on for the next edge.
    fn waits(&self) -> Vec<(usize, Direction)> {
        let mut waits = Vec::with_capacity(self.pollfds.len());
        for p in &self.pollfds {
            let fd = usize::try_from(p.fd).unwrap_or(usize::MAX);
            if p.events & libc::POLLIN != 0 {
                waits.push((fd, Direction::Read));
            }
            if p.events & libc::POLLOUT != 0 {
                waits.push((fd, Direction::Write));
            }
        }
        waits
    }
}

/// poll(2)'s request bits for the `selectors` event bits.
fn poll_bits(events: u32) -> libc::c_short {
    let mut bits = 0;
    if events & EVENT_READ != 0 {
        bits |= libc::POLLIN;
    }
    if events & EVENT_WRITE != 0 {
        bits |= libc::POLLOUT;
    }
    bits
}

/// The `selectors` event bits poll(2) reported for a pollfd. A hang-up, an error or a closed fd makes every
/// registered direction ready: the callback's own syscall then says what happened.
fn ready_bits(pollfd: &libc::pollfd) -> u32 {
    let failed = pollfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
    let mut bits = 0;
    if pollfd.events & libc::POLLIN != 0 && (failed || pollfd.revents & libc::POLLIN != 0) {
        bits |= EVENT_READ;
    }
    if pollfd.events & libc::POLLOUT != 0 && (failed || pollfd.revents & libc::POLLOUT != 0) {
        bits |= EVENT_WRITE;
    }
    bits
}

/// See the module documentation.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct AioSelector {
    lp: Py<Loop>,
    interest: RefCell<Interest<Registered>>,
    /// The greenlet parked in `wait`, if one is.
    parked: RefCell<Option<Py<PyAny>>>,
    /// When `wait` last let the hub run, and the switch interval read then.
    yielded_at: Cell<Nanos>,
    switch_interval: Cell<Nanos>,
}

// SAFETY: every field is touched with the GIL held (each entry point is a Python call), and no borrow is held across
// a call into Python or a greenlet switch, so the GIL serializes every access, even the garbage collector's from
// another thread. ferrovent does not support free-threaded builds.
unsafe impl Sync for AioSelector {}

impl AioSelector {
    /// Level truth: the ready fds' keys and `selectors` event bits, from one zero-timeout poll(2) over every
    /// registered fd.
    fn level_pairs(&self, py: Python<'_>) -> PyResult<Vec<ReadyFd>> {
        let mut interest = self.interest.borrow_mut();
        if interest.pollfds.is_empty() {
            return Ok(Vec::new());
        }
        let count = libc::nfds_t::try_from(interest.pollfds.len()).unwrap_or(libc::nfds_t::MAX);
        // SAFETY: `pollfds` is a valid, exclusively borrowed array of `count` pollfds; the timeout is zero, and
        // poll(2) only writes their `revents`.
        let found = unsafe { libc::poll(interest.pollfds.as_mut_ptr(), count, 0) };
        if found < 0 {
            let err = std::io::Error::last_os_error();
            return if err.raw_os_error() == Some(libc::EINTR) { Ok(Vec::new()) } else { Err(err.into()) };
        }
        let mut left = found;
        let mut ready = Vec::with_capacity(usize::try_from(found).unwrap_or(0));
        let Interest { pollfds, keys, .. } = &*interest;
        for (pollfd, registered) in pollfds.iter().zip(keys) {
            if left == 0 {
                break;
            }
            if pollfd.revents == 0 {
                continue;
            }
            left -= 1;
            let events = ready_bits(pollfd);
            if events != 0 {
                let (key, data) = (registered.key.clone_ref(py), Some(registered.data.clone_ref(py)));
                ready.push(ReadyFd { key, data, events });
            }
        }
        Ok(ready)
    }

    /// `level_pairs` as the `selectors` API gives them: a list of `(key, events)` tuples.
    fn level<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ready = PyList::empty(py);
        for ReadyFd { key, events, .. } in self.level_pairs(py)? {
            ready.append((key, events))?;
        }
        Ok(ready)
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
            if !self.interest.borrow().index.contains_key(&fd) {
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

    /// `poll`, for the Rust caller (AioLoop's run_once), with each ready key's `data`.
    pub(crate) fn poll_ready(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Vec<ReadyFd>>> {
        let lp = self.lp.get();
        let ready = self.level_pairs(py)?;
        let cannot_block = !ready.is_empty() || timeout.is_some_and(|t| t <= 0.0);
        Ok((cannot_block && !self.hub_wants_turn(lp)).then_some(ready))
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
    fn new(r#loop: Py<Loop>) -> Self {
        Self {
            lp: r#loop,
            interest: RefCell::default(),
            parked: RefCell::default(),
            yielded_at: Cell::new(0),
            switch_interval: Cell::new(0),
        }
    }

    /// Registers `fd` for `events` (`selectors.EVENT_READ`/`EVENT_WRITE`) with `key`, or updates its registration.
    fn set(&self, fd: usize, events: u32, key: Bound<'_, PyAny>) -> PyResult<()> {
        let data = key.getattr(pyo3::intern!(key.py(), "data"))?.unbind();
        let previous = self.interest.borrow_mut().set(fd, events, Registered { key: key.unbind(), data });
        drop(previous); // after the borrow: it may be the last reference
        Ok(())
    }

    /// Forgets `fd`; the poller's registration ends unless a greenlet waits on it.
    fn remove(&self, fd: usize) {
        let key = self.interest.borrow_mut().remove(fd);
        drop(key);
        let lp = self.lp.get();
        if lp.check_thread().is_ok() {
            lp.release_if_transient(fd); // a destroyed loop has no registrations left to release
        }
    }

    /// Forgets every fd.
    fn clear(&self) {
        let fds: Vec<usize> = self.interest.borrow().index.keys().copied().collect();
        for fd in fds {
            self.remove(fd);
        }
    }

    /// The ready fds (keys and event bits) if they can be given without switching, else None (call `wait`).
    /// `timeout`: seconds, None for no limit.
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Vec<KeyEvents>>> {
        let ready = self.poll_ready(py, timeout)?;
        Ok(ready.map(|ready| ready.into_iter().map(|ReadyFd { key, events, .. }| (key, events)).collect()))
    }

    /// As `poll`, letting the hub run first: parks until something is ready, the timeout or `wake` if nothing is
    /// ready, else yields once. Returns the ready `(key, events)` pairs.
    fn wait<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyList>> {
        let lp = self.lp.get();
        lp.check_thread()?;
        // whether anything is ready (the pairs themselves are made after the hub's turn)
        let ready = !self.level_pairs(py)?.is_empty();
        if ready || timeout.is_some_and(|t| t <= 0.0) {
            self.yield_to_hub(py, lp)?;
        } else {
            let waits = self.interest.borrow().waits();
            self.park(py, lp, timeout, &waits)?;
        }
        self.note_yield(py, lp)?;
        self.level(py)
    }

    /// Ends a `wait` parked in another greenlet (no-op if none is).
    /// From another OS thread it raises InvalidThreadUseError (`call_soon_threadsafe` is the way from there).
    fn wake(&self, py: Python<'_>) -> PyResult<()> {
        self.wake_parked(py)
    }

    /// How many fds are registered.
    fn __len__(&self) -> usize {
        self.interest.borrow().pollfds.len()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.lp)?;
        if let Ok(interest) = self.interest.try_borrow() {
            for registered in &interest.keys {
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
        let interest = self.interest.try_borrow_mut().map(|mut i| std::mem::take(&mut *i));
        drop(interest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pollfd(fd: RawFd, events: libc::c_short, revents: libc::c_short) -> libc::pollfd {
        libc::pollfd { fd, events, revents }
    }

    #[test]
    fn ready_bits_keep_to_the_registered_directions() {
        assert_eq!(ready_bits(&pollfd(3, libc::POLLIN, libc::POLLIN)), EVENT_READ);
        assert_eq!(ready_bits(&pollfd(3, libc::POLLIN | libc::POLLOUT, libc::POLLOUT)), EVENT_WRITE);
        assert_eq!(ready_bits(&pollfd(3, libc::POLLOUT, libc::POLLIN)), 0);
    }

    #[test]
    fn a_failed_or_closed_fd_is_ready_in_every_registered_direction() {
        assert_eq!(ready_bits(&pollfd(3, libc::POLLIN, libc::POLLHUP)), EVENT_READ);
        assert_eq!(ready_bits(&pollfd(3, libc::POLLIN | libc::POLLOUT, libc::POLLNVAL)), EVENT_READ | EVENT_WRITE);
    }

    #[test]
    fn removing_an_fd_keeps_the_others_indexed() {
        let mut interest = Interest::default();
        for fd in [4, 5, 6] {
            interest.set(fd, EVENT_READ, fd);
        }
        assert_eq!(interest.remove(4), Some(4));
        assert_eq!(interest.index.get(&6), Some(&0));
        assert_eq!(interest.index.get(&5), Some(&1));
        assert_eq!(interest.set(5, EVENT_READ | EVENT_WRITE, 50), Some(5));
        assert_eq!(interest.keys, vec![6, 50]);
        assert_eq!(interest.waits(), vec![(6, Direction::Read), (5, Direction::Read), (5, Direction::Write)]);
        assert_eq!(interest.remove(4), None);
    }
}
