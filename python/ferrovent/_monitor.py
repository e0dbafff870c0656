"""The monitoring thread behind ``config.monitor_thread`` (gevent's ``gevent._monitor``): one real OS thread per
hub that notices when the hub's loop is blocked and when the process uses too much memory.

How a block is seen, at no cost per greenlet switch: the Rust loop counts its iterations, one relaxed store each
time a poll returns (rust/run.rs), and `ferrovent._core.Heartbeat` lets this thread read the count. Every
``config.max_blocking_time`` seconds the thread looks: if the count has not moved since its last look, and at both
looks the hub greenlet was suspended (some other greenlet of the hub's thread was running instead of the loop),
then the loop has not polled for at least that long. That block is reported once (gevent reports it again at each
look): an `ferrovent.events.EventLoopBlocked` event, then, if ``config.print_blocking_reports``, the report on the
hub's ``exception_stream``: the blocking greenlet, the stack of the hub's thread, and every thread and greenlet.

Memory: on the main thread's hub, and when psutil is installed, every ``config.memory_monitor_period`` seconds
(at least `PeriodicMonitoringThread.min_memory_monitor_period`) the process's memory use (USS, else RSS) is
compared with ``config.max_memory_usage``: `MemoryUsageThresholdExceeded` when above it and still growing,
`MemoryUsageUnderThreshold` once back under it.

More checks can run on the thread: ``hub.periodic_monitoring_thread.add_monitoring_function(f, period)`` calls
``f(hub)`` there every ``period`` seconds. The thread stops when its hub is destroyed or garbage-collected, or on
``kill()``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import weakref
from typing import Any, Callable, Optional

from greenlet import getcurrent, greenlet

from ferrovent._config import config
from ferrovent._tracer import blocking_report
from ferrovent.events import (
    EventLoopBlocked,
    IPeriodicMonitorThread,
    MemoryUsageThresholdExceeded,
    MemoryUsageUnderThreshold,
    implementer,
    notify,
)
from ferrovent.monkey import get_original

__all__ = ["PeriodicMonitoringThread"]

# The real thread primitives, even after monkey-patching: this thread has no hub to yield to.
get_ident = get_original("_thread", "get_ident")
start_new_thread = get_original("_thread", "start_new_thread")
thread_sleep = get_original("time", "sleep")


class MonitorWarning(RuntimeWarning):
    """Warns that a part of the monitoring cannot run (memory use without psutil)."""


class _MonitorEntry:
    """One monitoring function, how often it runs (seconds; 0 or less: never), and when it last ran."""

    __slots__ = ("function", "period", "last_run_time")

    def __init__(self, function: Callable[[Any], Any], period: float) -> None:
        self.function = function
        self.period = period
        self.last_run_time = 0.0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _MonitorEntry) and (self.function, self.period) == (other.function, other.period)

    def __hash__(self) -> int:
        return hash((self.function, self.period))

    def __repr__(self) -> str:
        return repr((self.function, self.period, self.last_run_time))


def _this_process() -> Any:
    """psutil's handle on this process, or None without psutil (or when the platform refuses)."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        return psutil.Process()
    except psutil.Error:
        return None


class _BlockWatch:
    """What the last look at a hub's loop saw, to tell the next look whether the loop stayed blocked between."""

    __slots__ = ("iterations", "hub_suspended", "reported", "ignored", "ignored_at")

    def __init__(self) -> None:
        self.iterations = -1
        self.hub_suspended = False
        #: The iteration count whose block was reported: a block is reported once, not at every look.
        self.reported = -1
        #: A greenlet that may block without being reported (a thread pool worker waiting for jobs), until it
        #: switches away or the loop moves on.
        self.ignored: Optional[weakref.ref] = None
        self.ignored_at = -1


@implementer(IPeriodicMonitorThread)
class PeriodicMonitoringThread:
    """The monitoring thread of one hub: runs its monitoring functions, each at its period, until killed."""

    #: Seconds slept between looks when every monitoring function is disabled.
    inactive_sleep_time = 2.0
    #: The shortest sleep between looks, whatever the periods.
    min_sleep_time = 0.005
    #: The shortest period of the memory check: reading memory use is not cheap.
    min_memory_monitor_period = 2

    _memory_exceeded = 0

    def __init__(self, hub: Any) -> None:
        assert get_ident() == hub.thread_ident, "start the monitoring thread from the hub's thread"
        self._hub_wref = weakref.ref(hub, self._on_hub_gc)
        self.should_run = True
        heartbeat = getattr(hub.loop, "heartbeat", None)
        #: The loop's iteration count, readable here; None for a loop that offers none (no block is then seen).
        self._heartbeat = heartbeat() if heartbeat is not None else None
        self._watch = _BlockWatch()
        #: The longest block seen so far, in seconds (at the resolution of ``max_blocking_time``).
        self.longest_block = 0.0
        self._block_seen_since = 0.0
        self._monitoring_functions = [_MonitorEntry(self.monitor_blocking, config.max_blocking_time)]
        self._calculated_sleep_time = config.max_blocking_time
        self.monitor_thread_ident = start_new_thread(self, ())
        self.pid = os.getpid()

    @property
    def hub(self) -> Any:
        """The hub watched, or None once it is gone."""
        return self._hub_wref()

    def _on_fork(self) -> None:
        """In a forked child (called by ``hub.reinit()``): the thread did not survive the fork, start it again."""
        if os.getpid() != self.pid:
            self.pid = os.getpid()
            self.monitor_thread_ident = start_new_thread(self, ())

    def monitoring_functions(self) -> list[_MonitorEntry]:
        """The entries run by the thread; the first, the blocking check, follows ``config.max_blocking_time``."""
        blocking_period = config.max_blocking_time
        if blocking_period != self._monitoring_functions[0].period:
            self._monitoring_functions[0].period = blocking_period
            self._calculated_sleep_time = min(entry.period for entry in self._monitoring_functions)
        return self._monitoring_functions

    def add_monitoring_function(self, function: Callable[[Any], Any], period: Optional[float]) -> None:
        """Runs ``function(hub)`` in this thread every ``period`` seconds; a new period replaces the old one, and
        None removes the function."""
        if not callable(function):
            raise ValueError("function must be callable")
        if period is None:
            entries = [entry for entry in self._monitoring_functions if entry.function != function]
        elif period <= 0:
            raise ValueError("Period must be positive.")
        else:
            added = _MonitorEntry(function, period)
            entries = [added if entry.function == function else entry for entry in self._monitoring_functions]
            if added not in entries:
                entries.append(added)
        self._monitoring_functions = entries
        self._calculated_sleep_time = min(entry.period for entry in entries)

    def calculate_sleep_time(self) -> float:
        """How long to sleep before the next look: the shortest period, bounded below by `min_sleep_time`."""
        shortest = self._calculated_sleep_time
        if shortest <= 0:
            return self.inactive_sleep_time
        return max(shortest, self.min_sleep_time)

    def kill(self) -> None:
        """Stops the thread after its current sleep."""
        self.should_run = False

    def _on_hub_gc(self, _ref: Any) -> None:
        self.kill()

    def __call__(self) -> None:
        """The thread's body: sleep, then run each function whose period has passed, until killed."""
        getcurrent().gevent_monitoring_thread = weakref.ref(self)
        try:
            while self.should_run:
                functions = self.monitoring_functions()
                thread_sleep(self.calculate_sleep_time())
                hub = self.hub
                if hub is None or hub.dead:  # nothing left to watch (a hub not started yet still will be)
                    self.kill()
                if not self.should_run:  # killed while asleep
                    break
                now = time.perf_counter()
                for entry in functions:
                    if entry.period and entry.last_run_time + entry.period <= now:
                        entry.last_run_time = now
                        entry.function(hub)
                del hub  # the hub must be free to go while this thread sleeps
        except SystemExit:
            pass
        except BaseException:
            if sys is None or sys.stderr is None:  # interpreter shutdown: nothing to report to
                return
            hub = self.hub
            if hub is not None:
                hub.handle_error(self, *sys.exc_info())

    def _loop_blocked(self, hub: Any) -> bool:
        """Whether the hub's loop has not polled since the last look while other greenlets ran at both looks; a
        block already reported, or the ignored greenlet still running, is not blocked again."""
        watch = self._watch
        iterations = self._heartbeat.iterations
        # a started hub whose frame is saved is suspended: some other greenlet of its thread runs
        suspended = bool(hub) and hub.gr_frame is not None
        stayed = iterations == watch.iterations and suspended and watch.hub_suspended
        if not stayed:
            self._block_seen_since = time.perf_counter()
        else:
            self.longest_block = max(self.longest_block, time.perf_counter() - self._block_seen_since)
        watch.iterations, watch.hub_suspended = iterations, suspended
        if not stayed or watch.reported == iterations:
            return False
        ignored = watch.ignored() if watch.ignored is not None else None
        if ignored is not None and watch.ignored_at == iterations and ignored.gr_frame is None and ignored:
            return False
        watch.reported = iterations
        return True

    def monitor_blocking(self, hub: Any) -> Any:
        """The blocking check: on a new block, notifies `EventLoopBlocked` and prints the report; returns
        ``(greenlet, report lines)`` then, else None."""
        if self._heartbeat is None or not self._loop_blocked(hub):
            return None
        active = _running_greenlet(hub)
        report = blocking_report(
            hub, active, self, {"greenlet_stacks": False, "current_thread_ident": self.monitor_thread_ident}
        )
        notify(EventLoopBlocked(active, config.max_blocking_time, report, hub=hub))  # listeners may edit the report
        return self._show_blocking_report(hub, report, active)

    def _show_blocking_report(self, hub: Any, report: list[str], active_greenlet: Any) -> Any:
        if config.print_blocking_reports:
            stream = hub.exception_stream
            for line in report:  # line by line: one huge write could meet a reentrant print
                print(line, file=stream)
        return active_greenlet, report

    def ignore_current_greenlet_blocking(self) -> None:
        """Called in the hub's thread: the current greenlet may block without being reported, until it switches
        away or the loop completes an iteration (a thread pool worker waiting for its next job)."""
        if self._heartbeat is None:
            return
        self._watch.ignored = weakref.ref(getcurrent())
        self._watch.ignored_at = self._heartbeat.iterations

    def monitor_current_greenlet_blocking(self) -> None:
        """Undoes `ignore_current_greenlet_blocking`."""
        self._watch.ignored = None

    def _get_process(self) -> Any:
        process = _this_process()
        self._get_process = lambda: process  # type: ignore[method-assign]
        return process

    def can_monitor_memory_usage(self) -> bool:
        """Whether memory use can be read (psutil is installed)."""
        return self._get_process() is not None

    def install_monitor_memory_usage(self) -> None:
        """Adds the memory check, or warns (`MonitorWarning`) that it cannot run."""
        if not self.can_monitor_memory_usage():
            import warnings

            warnings.warn("Unable to monitor memory usage. Install psutil.", MonitorWarning, stacklevel=2)
            return
        period = max(config.memory_monitor_period, self.min_memory_monitor_period)
        self.add_monitoring_function(self.monitor_memory_usage, period)

    def monitor_memory_usage(self, _hub: Any) -> Any:
        """The memory check: returns the event it notified, None if none, -1 when ``max_memory_usage`` is unset."""
        max_allowed = config.max_memory_usage
        if not max_allowed:
            return -1
        memory_info = self._get_process().memory_full_info()
        usage = getattr(memory_info, "uss", 0) or memory_info.rss
        event = None
        if usage > max_allowed:
            if usage > self._memory_exceeded:  # still growing: tell again
                event = MemoryUsageThresholdExceeded(usage, max_allowed, memory_info)
                notify(event)
            self._memory_exceeded = usage
        else:
            if self._memory_exceeded:
                event = MemoryUsageUnderThreshold(usage, max_allowed, memory_info, self._memory_exceeded)
                notify(event)
            self._memory_exceeded = 0
        return event

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} at {hex(id(self))} in thread {hex(self.monitor_thread_ident)} "
            f"greenlet {getcurrent()!r} for {self._hub_wref()!r}>"
        )


def _running_greenlet(hub: Any) -> Any:
    """The greenlet running in the hub's thread, found among every greenlet (run once per block, not per look): a
    started greenlet of that thread whose frame is not saved."""
    main = hub.parent
    while main is not None and main.parent is not None:
        main = main.parent
    for candidate in gc.get_objects():
        if isinstance(candidate, greenlet) and candidate and candidate.gr_frame is None:
            root = candidate
            while root.parent is not None:
                root = root.parent
            if root is main:
                return candidate
    return None


def start_monitoring(hub: Any) -> PeriodicMonitoringThread:
    """Starts ``hub``'s monitoring thread (memory too, for the main thread's hub) and announces it with
    `PeriodicMonitorThreadStartedEvent` to subscribers and plugins."""
    from ferrovent.events import PeriodicMonitorThreadStartedEvent, notify_and_call_entry_points

    monitor = PeriodicMonitoringThread(hub)
    if hub.main_hub:
        monitor.install_monitor_memory_usage()
    notify_and_call_entry_points(PeriodicMonitorThreadStartedEvent(monitor))
    return monitor
