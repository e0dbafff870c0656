//! The wait fast paths: a greenlet parks in the loop and switches away, with no Python objects built for it.
//!
//! Parking records a token (and a timer or fd slot); whoever resumes the greenlet puts a `Wake` in the loop's
//! wake slot first. While the hub drains the ready queue, a parking greenlet hands off straight to the next
//! ready greenlet instead of going through the hub (one switch instead of two); past the switch interval, or
//! when the next entry is not a plain resume, it switches to the hub.

use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::event_loop::{address, timeout_sentinel, BlockingSwitchOutError, FdWaiter, InvalidSwitchError, Loop};
use crate::fdtable::Direction;
use crate::greenlet_api;
use crate::parking::Parked;
use crate::poll_bits::poll_now;
use crate::ready::{Ready, TimerAction, Wake};

/// Level truth for one direction of an fd, from a zero-timeout poll(2).
pub fn level_ready(fd: usize, direction: Direction) -> PyResult<bool> {
    let events = match direction {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    let mut pollfd = libc::pollfd { fd: i32::try_from(fd).unwrap_or(-1), events, revents: 0 };
    let found = poll_now(std::slice::from_mut(&mut pollfd))?;
    Ok(found > 0 && pollfd.revents != 0)
}

/// Where a parking greenlet goes next.
enum Next<'py> {
    /// It was the next ready entry itself.
    Me,
    Greenlet(Bound<'py, PyAny>),
    Hub,
}

impl Loop {
    /// The current greenlet, refusing the hub: a blocking call there could never be woken.
    pub(crate) fn current_waiter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let current = greenlet_api::current(py)?;
        if self.is_hub(&current) {
            return Err(BlockingSwitchOutError::new_err(
                "Impossible to call blocking function in the event loop callback",
            ));
        }
        Ok(current)
    }

    pub(crate) fn park_token(&self, current: &Bound<'_, PyAny>, fd: Option<(usize, Direction)>) -> u64 {
        let mut lot = self.lot.borrow_mut();
        let token = lot.new_token();
        lot.park(address(current), Parked::new(token, fd));
        token
    }

    pub(crate) fn arm_timeout(
        &self,
        current: &Bound<'_, PyAny>,
        token: u64,
        seconds: f64,
        wake: Wake,
        referenced: bool,
    ) {
        let action = TimerAction::Resume { greenlet: current.clone().unbind(), token, wake };
        let deadline = self.deadline_after(seconds);
        let id = self.timers.borrow_mut().insert(deadline, action, referenced);
        self.lot.borrow_mut().set_timer(address(current), id);
    }

    /// Switches away from the parked `current` and returns the wake it was resumed with.
    ///
    /// Everything on the C stack under a switch stays there while the greenlet is parked (greenlet copies it to
    /// the heap), so the frames on the way to the switch are kept small: the work before and after it is done in
    /// out-of-line calls that have returned by then.
    pub(crate) fn switch_away(&self, py: Python<'_>, current: &Bound<'_, PyAny>, token: u64) -> PyResult<Wake> {
        let switched = self.switch_to_next(py, current);
        self.resumed(py, current, token, switched)
    }

    /// Switches to the next ready greenlet, or to the hub. False if the switch raised (the error is set).
    #[inline(never)]
    pub(crate) fn switch_to_next(&self, py: Python<'_>, current: &Bound<'_, PyAny>) -> bool {
        match self.next_to_run(py, current) {
            Next::Me => true,
            Next::Greenlet(greenlet) => greenlet_api::switch_raw(&greenlet),
            Next::Hub => greenlet_api::switch_raw(&self.current_hub(py)),
        }
    }

    /// What the resumed greenlet finds: the wake it was resumed with, or why there is none.
    #[inline(never)]
    pub(crate) fn resumed(
        &self,
        py: Python<'_>,
        current: &Bound<'_, PyAny>,
        token: u64,
        switched: bool,
    ) -> PyResult<Wake> {
        let outcome = if switched { Ok(()) } else { Err(PyErr::fetch(py)) };
        let taken = self.wake_slot.borrow_mut().take();
        match (outcome, taken) {
            (Ok(()), Some(wake)) => Ok(wake),
            (Ok(()), None) => {
                self.abandon_wait(current, token);
                Err(InvalidSwitchError::new_err(format!(
                    "Invalid switch into {}: resumed by something other than the loop",
                    current.repr().map_or_else(|_| "<greenlet>".to_owned(), |r| r.to_string())
                )))
            }
            (Err(err), wake) => {
                drop(wake);
                self.abandon_wait(current, token);
                Err(err)
            }
        }
    }

    /// While the hub is draining, the next ready greenlet to hand off to directly, as the drain would run it
    /// (rust/run.rs); else the hub. `Me` when the next entry resumes `current` itself (its wake is then in the slot).
    #[inline(never)]
    fn next_to_run<'py>(&self, py: Python<'py>, current: &Bound<'py, PyAny>) -> Next<'py> {
        if !self.drain.is_active() {
            return Next::Hub;
        }
        loop {
            // Only greenlets already running are handed off to: one started here would inherit this greenlet's
            // C stack depth and Python recursion depth, and a chain of such starts would overflow both.
            let entry = self.take_next(
                |entry| matches!(entry, Ready::Resume { greenlet, .. } if greenlet_api::started(greenlet.bind(py)).is_ok_and(|s| s)),
            );
            let Some(Ready::Resume { greenlet, token, wake }) = entry else { return Next::Hub };
            let greenlet = greenlet.into_bound(py);
            if !self.claim(&greenlet, token) {
                continue; // stale
            }
            if let Some(wake) = wake {
                self.wake_slot.replace(Some(wake));
            }
            return if greenlet.is(current) { Next::Me } else { Next::Greenlet(greenlet) };
        }
    }

    /// `sleep(seconds)`: 0 or less yields to everything already ready.
    pub(crate) fn sleep_current(&self, py: Python<'_>, seconds: f64, referenced: bool) -> PyResult<()> {
        let slept = self.sleep_current_raw(py, seconds, referenced);
        // SAFETY: a new reference, or NULL with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(py, slept) }.map(drop)
    }

    /// `sleep_current` in CPython's convention: None, or NULL with the exception set. The `sleep` builtin's frames
    /// stay on every sleeping greenlet's saved C stack, and a `PyResult` (64 bytes) would sit in this frame and in
    /// each caller's; so the work before and after the switch is out of line, and only a pointer comes back.
    pub(crate) fn sleep_current_raw(&self, py: Python<'_>, seconds: f64, referenced: bool) -> *mut ffi::PyObject {
        let Some((current, token)) = self.park_to_sleep(py, seconds, referenced) else {
            return ptr::null_mut();
        };
        let switched = self.switch_to_next(py, &current);
        self.woke_from_sleep(py, &current, token, switched)
    }

    /// What a sleep returns once its greenlet is resumed, as `sleep_current_raw` does.
    #[inline(never)]
    fn woke_from_sleep(
        &self,
        py: Python<'_>,
        current: &Bound<'_, PyAny>,
        token: u64,
        switched: bool,
    ) -> *mut ffi::PyObject {
        match woke_without_value(py, self.resumed(py, current, token, switched)) {
            Ok(()) => py.None().into_ptr(),
            Err(err) => raised(py, err),
        }
    }

    /// Parks the current greenlet for `sleep`, behind a timer or at the back of the ready queue. None, with the
    /// exception set, if it cannot park.
    #[inline(never)]
    fn park_to_sleep<'py>(&self, py: Python<'py>, seconds: f64, referenced: bool) -> Option<(Bound<'py, PyAny>, u64)> {
        let current = match self.current_waiter(py) {
            Ok(current) => current,
            Err(err) => {
                err.restore(py);
                return None;
            }
        };
        let token = self.park_token(&current, None);
        let wake = Wake::Value(py.None());
        if seconds > 0.0 {
            self.arm_timeout(&current, token, seconds, wake, referenced);
        } else {
            let greenlet = current.clone().unbind();
            self.push_ready(Ready::Resume { greenlet, token, wake: Some(wake) });
        }
        Some((current, token))
    }

    /// `park(timeout)`: returns the value given to `wake()`, or TIMEOUT.
    pub(crate) fn park_current(&self, py: Python<'_>, timeout: Option<f64>, referenced: bool) -> PyResult<Py<PyAny>> {
        let current = self.current_waiter(py)?;
        let token = self.park_token(&current, None);
        if let Some(seconds) = timeout {
            self.arm_timeout(&current, token, seconds, Wake::TimedOut, referenced);
        }
        match self.switch_away(py, &current, token)? {
            Wake::Value(value) => Ok(value),
            Wake::TimedOut => Ok(timeout_sentinel(py)?.clone_ref(py).into_any()),
            Wake::Raise(exc) => Err(PyErr::from_value(exc.into_bound(py))),
        }
    }

    /// `idle()`: parks until the loop has run everything that was ready.
    pub(crate) fn idle_current(&self, py: Python<'_>) -> PyResult<()> {
        let current = self.current_waiter(py)?;
        let token = self.park_token(&current, None);
        self.idle_waiters.borrow_mut().push((current.clone().unbind(), token));
        woke_without_value(py, self.switch_away(py, &current, token))
    }

    /// Parks until the next readiness edge of `fd` in `direction`, the timeout, or the fd's closing.
    ///
    /// The frame of this function stays on every parked greenlet's saved C stack (every idle connection's), so it
    /// only switches: the parking before and the outcome after are out-of-line calls that have returned by then.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn wait_fd_current(
        &self,
        py: Python<'_>,
        fd: usize,
        direction: Direction,
        timeout: Option<f64>,
        timeout_exc: Option<Bound<'_, PyAny>>,
        referenced: bool,
        persistent: bool,
    ) -> PyResult<bool> {
        let Some((current, token)) = self.park_on_fd(py, fd, direction, timeout, referenced, persistent)? else {
            return Ok(true);
        };
        let switched = self.switch_to_next(py, &current);
        self.fd_wait_ended(py, (&current, token, switched), fd, persistent, timeout_exc)
    }

    /// Parks the current greenlet on `fd` (and its timeout); None if the poller refuses the fd (a regular file,
    /// always ready: the wait is over at once).
    #[inline(never)]
    fn park_on_fd<'py>(
        &self,
        py: Python<'py>,
        fd: usize,
        direction: Direction,
        timeout: Option<f64>,
        referenced: bool,
        persistent: bool,
    ) -> PyResult<Option<(Bound<'py, PyAny>, u64)>> {
        let current = self.current_waiter(py)?;
        if !self.ensure_registered(fd, persistent)? {
            return Ok(None);
        }
        let token = self.park_token(&current, Some((fd, direction)));
        let waiter = FdWaiter { greenlet: current.clone().unbind(), token };
        self.fds.borrow_mut().add_waiter(fd, direction, waiter, referenced);
        if let Some(seconds) = timeout {
            self.arm_timeout(&current, token, seconds, Wake::TimedOut, referenced);
        }
        Ok(Some((current, token)))
    }

    /// What an fd wait returns once its greenlet is resumed (`switch`: the parked greenlet, its token and whether
    /// the switch succeeded): true on readiness, false on a timeout without an exception to raise.
    #[inline(never)]
    fn fd_wait_ended(
        &self,
        py: Python<'_>,
        (current, token, switched): (&Bound<'_, PyAny>, u64, bool),
        fd: usize,
        persistent: bool,
        timeout_exc: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let woke = self.resumed(py, current, token, switched);
        if !persistent {
            self.release_if_transient(fd);
        }
        match woke? {
            Wake::Value(_) => Ok(true),
            Wake::TimedOut => match timeout_exc {
                Some(exc) => Err(PyErr::from_value(exc)),
                None => Ok(false),
            },
            Wake::Raise(exc) => Err(PyErr::from_value(exc.into_bound(py))),
        }
    }
}

/// Sets `err` as the current exception and returns the NULL that says so.
#[cold]
#[inline(never)]
fn raised(py: Python<'_>, err: PyErr) -> *mut ffi::PyObject {
    err.restore(py);
    ptr::null_mut()
}

/// The outcome of a wait that returns nothing (sleep, idle): an exception thrown in, or nothing.
#[inline(never)]
fn woke_without_value(py: Python<'_>, woke: PyResult<Wake>) -> PyResult<()> {
    match woke? {
        Wake::Raise(exc) => Err(PyErr::from_value(exc.into_bound(py))),
        Wake::Value(_) | Wake::TimedOut => Ok(()),
    }
}
