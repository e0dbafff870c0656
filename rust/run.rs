//! The hub's run loop: drain the ready queue, poll I/O, expire timers, deliver what they brought.
//!
//! # Fairness bound
//!
//! One loop iteration is one drain followed by one poll. Two queues feed a drain: the **backlog**, the entries
//! greenlets queue themselves (spawns, `sleep(0)`, wakes and callbacks), in FIFO order, and the **arrivals**, what
//! the previous poll brought (fd events, calls from other threads, fired timers), in arrival order. A drain runs:
//!
//! 1. the backlog, until it is empty or the switch interval (`sys.getswitchinterval()`, timed from the start of the
//!    drain) is spent. The clock is read only every `CLOCK_CHECK_EVERY` entries, so this runs at least that many;
//! 2. every arrival, whatever it costs;
//! 3. the backlog again, what is left of it, while the same switch interval lasts.
//!
//! Entries queued during a drain go to the back of the backlog. So a backlog entry with `k` entries ahead of it runs
//! within `ceil((k + 1) / CLOCK_CHECK_EVERY)` iterations, however much I/O arrives meanwhile: arrivals never pass
//! older backlog and never spend its budget. And an arrival runs in the next drain, behind at most one switch
//! interval of backlog, however long the backlog is. This is gevent's bound (its callback queue runs for the switch
//! interval, checked every 50 callbacks, and libev runs every watcher callback each iteration) with one change: when
//! the backlog is cut short, what is left of it runs before the next poll's wake-ups instead of after them. When
//! the backlog empties (the usual case), the order is gevent's: wake-ups, then what they queued, then the next poll.
//!
//! No borrow of loop state is held while an entry runs: it may switch greenlets, which re-enter the loop.
//!
//! # Heartbeat
//!
//! The iteration count is bumped right after each poll returns, with one relaxed store, into an atomic other threads
//! read without the GIL-confined loop (`Heartbeat`, for ferrovent's monitoring thread). So the count moving means a
//! poll completed; a count that stays put while the hub thread is not in the poll means the loop is blocked.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::event_loop::{FdWaiter, Loop};
use crate::greenlet_api;
use crate::ready::{Ready, TimerAction, Wake};
use crate::timers::Nanos;

/// How many backlog entries run between two looks at the clock, and so the fewest a drain runs.
pub(crate) const CLOCK_CHECK_EVERY: u32 = 50;

/// Which queue a drain takes from now (the three steps above).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Step {
    #[default]
    Backlog,
    Arrivals,
    BacklogLeft,
}

/// Where the current drain is: the state behind the fairness bound above.
#[derive(Default)]
pub(crate) struct Drain {
    /// True while the hub drains the ready queue: only then may a parking greenlet hand off directly.
    active: Cell<bool>,
    step: Cell<Step>,
    deadline: Cell<Nanos>,
    /// Backlog entries taken since the clock was last read.
    since_clock_check: Cell<u32>,
    /// The switch interval is used up: the backlog is done for this drain.
    spent: Cell<bool>,
    /// Completed polls, one per iteration (gevent's `loop.iteration`): the heartbeat, shared with `Heartbeat`.
    iterations: Arc<AtomicU64>,
}

impl Drain {
    pub(crate) fn is_active(&self) -> bool {
        self.active.get()
    }

    pub(crate) fn iterations(&self) -> u64 {
        self.iterations.load(Ordering::Relaxed)
    }

    /// The heartbeat counter itself, for a `Heartbeat` handle another thread reads.
    pub(crate) fn heartbeat(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.iterations)
    }

    /// Counts one completed poll. Only the loop's thread writes, so a load and a store suffice (no read-modify-write).
    fn beat(&self) {
        self.iterations.store(self.iterations.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

impl Loop {
    /// Takes the next entry this drain may run, or None once the drain is over. An entry `accept` refuses is left
    /// where it is, and None returned.
    pub(crate) fn take_next(&self, accept: impl Fn(&Ready) -> bool) -> Option<Ready> {
        let drain = &self.drain;
        if drain.step.get() == Step::Backlog && (self.ready.borrow().is_empty() || !self.backlog_budget_left()) {
            drain.step.set(Step::Arrivals);
        }
        if drain.step.get() == Step::Arrivals {
            let mut arrivals = self.arrivals.borrow_mut();
            if !arrivals.is_empty() {
                return if accept(arrivals.front()?) { arrivals.pop_front() } else { None };
            }
            drain.step.set(Step::BacklogLeft);
        }
        if drain.step.get() == Step::BacklogLeft && !self.backlog_budget_left() {
            return None;
        }
        let mut ready = self.ready.borrow_mut();
        if !accept(ready.front()?) {
            return None;
        }
        drain.since_clock_check.set(drain.since_clock_check.get() + 1);
        ready.pop_front()
    }

    /// Whether the backlog may run another entry: always for the first `CLOCK_CHECK_EVERY` since the last look at
    /// the clock, then only within the switch interval. Once spent, it stays spent for this drain.
    fn backlog_budget_left(&self) -> bool {
        let drain = &self.drain;
        if drain.spent.get() {
            return false;
        }
        if drain.since_clock_check.get() < CLOCK_CHECK_EVERY {
            return true;
        }
        drain.since_clock_check.set(0);
        let within = self.clock() < drain.deadline.get();
        drain.spent.set(!within);
        within
    }

    fn drain_ready(&self, py: Python<'_>) -> PyResult<()> {
        let interval: f64 = self.get_switch_interval.bind(py).call0()?.extract()?;
        self.drain.deadline.set(self.deadline_after(interval));
        self.drain.since_clock_check.set(0);
        self.drain.spent.set(false);
        self.drain.step.set(Step::Backlog);
        self.drain.active.set(true);
        let result = loop {
            let Some(entry) = self.take_next(|_| true) else { break Ok(()) };
            if let Err(err) = self.deliver(py, entry) {
                break Err(err);
            }
        };
        self.drain.active.set(false);
        // Arrivals not run (an error stopped the drain) go to the front of the backlog.
        let left = std::mem::take(&mut *self.arrivals.borrow_mut());
        let mut ready = self.ready.borrow_mut();
        for entry in left.into_iter().rev() {
            ready.push_front(entry);
        }
        result
    }

    /// Runs one ready entry in the hub. An error means an exception was thrown into the hub itself.
    fn deliver(&self, py: Python<'_>, entry: Ready) -> PyResult<()> {
        match entry {
            Ready::Resume { greenlet, token, wake } => {
                let greenlet = greenlet.into_bound(py);
                if self.claim(&greenlet, token) {
                    self.resume_from_hub(py, &greenlet, wake)?;
                }
                Ok(())
            }
            Ready::Throw { greenlet, exc } => self.throw_from_hub(py, &greenlet.into_bound(py), &exc.into_bound(py)),
            Ready::Call { func, args } => self.call_from_hub(py, func.into_bound(py), args.into_bound(py)),
            Ready::Watch { id, func, args } => match self.watchers.take_pending(id) {
                true => self.call_from_hub(py, func.into_bound(py), args.into_bound(py)),
                false => Ok(()),
            },
            Ready::Callback(handle) => match handle.get().take() {
                Some((func, args)) => self.call_from_hub(py, func.into_bound(py), args.into_bound(py)),
                None => Ok(()),
            },
            Ready::Timer(id) => {
                let action = self.timers.borrow_mut().take(id);
                match action {
                    None => Ok(()),
                    Some(TimerAction::Resume { greenlet, token, wake }) => {
                        self.deliver(py, Ready::Resume { greenlet, token, wake: Some(wake) })
                    }
                    Some(TimerAction::Throw { greenlet, exc }) => self.deliver(py, Ready::Throw { greenlet, exc }),
                    Some(TimerAction::Call { func, args }) => self.deliver(py, Ready::Call { func, args }),
                }
            }
        }
    }

    fn resume_from_hub(&self, py: Python<'_>, greenlet: &Bound<'_, PyAny>, wake: Option<Wake>) -> PyResult<()> {
        if let Some(wake) = wake {
            self.wake_slot.replace(Some(wake));
        }
        let result = greenlet_api::switch(greenlet).map(drop);
        self.after_hub_switch(py, greenlet, result)
    }

    fn throw_from_hub(&self, py: Python<'_>, greenlet: &Bound<'_, PyAny>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        if greenlet_api::started(greenlet)? && !greenlet_api::active(greenlet)? {
            return Ok(()); // dead: nothing to kill
        }
        let result = greenlet_api::throw(greenlet, exc).map(drop);
        self.after_hub_switch(py, greenlet, result)
    }

    fn call_from_hub(&self, py: Python<'_>, func: Bound<'_, PyAny>, args: Bound<'_, PyTuple>) -> PyResult<()> {
        let result = func.call1(args).map(drop);
        self.after_hub_switch(py, &func, result)
    }

    /// The hub's view of a switch or callback that came back with an error. An error raised by a greenlet or
    /// a callback is reported and the loop goes on; GreenletExit can only have been thrown into the hub itself
    /// (greenlets that end with it return normally), so it stops the loop.
    fn after_hub_switch(&self, py: Python<'_>, context: &Bound<'_, PyAny>, result: PyResult<()>) -> PyResult<()> {
        let Err(err) = result else { return Ok(()) };
        if err.is_instance(py, greenlet_api::greenlet_exit(py)?.as_any()) {
            return Err(err);
        }
        self.report_error(py, Some(context), err);
        Ok(())
    }

    /// Hands an error to the hub's `handle_error(context, type, value, tb)`, as gevent's loop does.
    pub(crate) fn report_error(&self, py: Python<'_>, context: Option<&Bound<'_, PyAny>>, err: PyErr) {
        let context = context.map_or_else(|| py.None().into_bound(py), Clone::clone);
        let (typ, value, tb) = (err.get_type(py), err.value(py).clone(), err.traceback(py));
        let tb = tb.map_or_else(|| py.None().into_bound(py), Bound::into_any);
        if let Err(secondary) = self.current_hub(py).call_method1("handle_error", (context, typ, value, tb)) {
            secondary.write_unraisable(py, None);
        }
    }

    /// Whether anything referenced could still wake a greenlet (less what `unref()` discounted).
    pub(crate) fn alive(&self) -> bool {
        !self.ready.borrow().is_empty() || self.referenced_count() > self.unrefs.get()
    }

    /// Referenced timers, fd waits and `add_ref`s: what keeps `run()` going.
    pub(crate) fn referenced_count(&self) -> usize {
        self.timers.borrow().referenced() + self.fds.borrow().referenced() + self.keepalive.get()
    }

    /// How long the next poll may block: not at all while work is ready.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.borrow().is_empty()
            || !self.idle_waiters.borrow().is_empty()
            || self.watchers.poll_must_not_block()
        {
            return Some(Duration::ZERO);
        }
        let next = self.timers.borrow_mut().next_deadline();
        next.map(|deadline| Duration::from_nanos(deadline.saturating_sub(self.clock())))
    }

    /// Polls I/O and turns fd events and inbox callbacks into arrivals (`arrivals` comes in empty).
    fn poll_io(&self, py: Python<'_>, timeout: Option<Duration>, arrivals: &mut Vec<Ready>) -> PyResult<()> {
        let mut poller = self.poller.borrow_mut().take().ok_or_else(|| PyRuntimeError::new_err("loop is polling"))?;
        let mut readiness = std::mem::take(&mut *self.readiness.borrow_mut());
        let outcome = if timeout == Some(Duration::ZERO) {
            poller.poll(timeout, &mut readiness)
        } else {
            crate::cpython::trim_idle(py, timeout, || {
                // After a burst: the queue, and the arrivals buffer the run loop keeps (empty here).
                self.ready.borrow_mut().shrink_to_fit();
                arrivals.shrink_to_fit();
            });
            let (p, r, outcome) = py.detach(move || {
                let outcome = poller.poll(timeout, &mut readiness);
                (poller, readiness, outcome)
            });
            poller = p;
            readiness = r;
            outcome
        };
        *self.poller.borrow_mut() = Some(poller);
        outcome.map_err(PyErr::from)?;
        self.now.set(self.clock());

        let mut woken = Vec::new();
        {
            let mut fds = self.fds.borrow_mut();
            for r in readiness.drain(..) {
                fds.on_event(r, &mut woken);
            }
        }
        *self.readiness.borrow_mut() = readiness;
        let ready_value = pyo3::types::PyBool::new(py, true).to_owned().into_any().unbind();
        for FdWaiter { greenlet, token } in woken {
            let wake = Some(Wake::Value(ready_value.clone_ref(py)));
            arrivals.push(Ready::Resume { greenlet, token, wake });
        }
        arrivals.extend(self.inbox.take().into_iter().map(|(func, args)| Ready::Call { func, args }));
        Ok(())
    }

    /// Collects fired timers as arrivals, in deadline order.
    fn expire_timers(&self, arrivals: &mut Vec<Ready>) {
        let mut fired = Vec::new();
        self.timers.borrow_mut().expire(self.now.get(), &mut fired);
        arrivals.extend(fired.into_iter().map(Ready::Timer));
    }

    /// Moves what one poll brought, in arrival order, to the middle of the next drain; `arrivals` is left empty,
    /// its capacity kept for the next poll.
    fn queue_arrivals(&self, arrivals: &mut Vec<Ready>) {
        self.arrivals.borrow_mut().extend(arrivals.drain(..));
    }

    /// Wakes idle waiters once nothing else is ready.
    fn run_idle(&self, py: Python<'_>) {
        if !self.ready.borrow().is_empty() || !self.arrivals.borrow().is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut *self.idle_waiters.borrow_mut());
        for (greenlet, token) in waiters {
            let wake = Some(Wake::Value(py.None()));
            self.push_ready(Ready::Resume { greenlet, token, wake });
        }
    }

    /// Runs pending signal handlers; an exception they raise (KeyboardInterrupt) goes to the hub's error handler,
    /// which raises it in the main greenlet.
    fn check_signals(&self, py: Python<'_>) {
        if let Err(err) = py.check_signals() {
            self.report_error(py, None, err);
        }
    }

    /// The hub's loop: iterations of drain and poll until `stop()` or nothing referenced is left.
    pub(crate) fn run_until_idle(&self, py: Python<'_>) -> PyResult<()> {
        // One buffer for what every poll brings, reused rather than allocated per iteration. It belongs to this
        // frame, not to the loop's state: no other greenlet can reach it, whatever the calls below run.
        let mut arrivals = Vec::new();
        loop {
            if self.stopping.replace(false) {
                return Ok(());
            }
            self.drain_ready(py)?;
            if self.is_destroyed() || (!self.alive() && self.idle_waiters.borrow().is_empty()) {
                return Ok(());
            }
            self.run_prepare_watchers(py);
            self.poll_io(py, self.poll_timeout(), &mut arrivals)?;
            self.drain.beat();
            self.expire_timers(&mut arrivals);
            self.collect_watchers(py, &mut arrivals);
            self.queue_arrivals(&mut arrivals);
            self.run_idle(py);
            self.check_signals(py);
        }
    }
}
