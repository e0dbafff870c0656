"""Watchers: gevent's callback-level loop API (``loop.io``, ``timer``, ``signal``, ``async_``, ...) on the Rust loop.

Libraries that integrate with gevent below the greenlet level (pyzmq's ``zmq.green``, uWSGI's plugin, pika's
adapter) ask the hub's loop for watcher objects and give them callbacks. Greenlets never go through here: they park
in the Rust loop directly, so the fast paths pay nothing for this layer.

Each watcher is a thin Python object over one of the loop's primitives:

- ``io``, ``prepare``, ``check``, ``idle``: callbacks the Rust loop calls at their point of each iteration
  (rust/watchers.rs says which); io watchers are level-triggered, as libev's are;
- ``timer``: a timer in the loop's heap (``call_later``), rescheduled after each run when it repeats;
- ``signal``: the signal module's dispatch (``ferrovent.signal``), the callback run in the hub;
- ``async_``: the loop's thread-safe inbox, so ``send()`` works from any thread and wakes a blocked poll;
- ``child``: a pidfd io watcher where the OS has them, else a polling timer; it reaps the child as libev does;
- ``stat``: a polling timer that compares ``os.stat`` results;
- ``fork``: run in the hub of a forked child (``os.register_at_fork``).

Semantics are gevent's: ``start(callback, *args)`` on an active watcher only changes what it calls; ``stop()`` is
idempotent and may be called from inside the callback; a one-shot watcher (a timer without repeat) is inactive
while its callback runs, and forgets its callback afterwards unless restarted; an exception in a callback goes to
the hub's ``handle_error`` with the watcher as context (an io watcher is stopped then, as in gevent). An active
watcher keeps ``run()`` going while its ``ref`` is true: it holds one of the loop's references (``add_ref``).
"""

from __future__ import annotations

import os
import signal as _stdsignal
import sys
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

from greenlet import GreenletExit, getcurrent

from ferrovent import _core
from ferrovent._core import ERROR, READ, WRITE
from ferrovent._core import callback as callback
from ferrovent.exceptions import LoopExit

if TYPE_CHECKING:
    from typing_extensions import Self

    from ferrovent import _watchers as watchers  # WatcherLoop's methods shadow the class names in its body
    from ferrovent.core import loop as Loop

__all__ = [
    "READ",
    "WRITE",
    "READWRITE",
    "ERROR",
    "EVENTS",
    "MINPRI",
    "MAXPRI",
    "watcher",
    "io",
    "timer",
    "signal",
    "idle",
    "prepare",
    "check",
    "fork",
    "async_",
    "child",
    "stat",
    "callback",
    "WatcherLoop",
]

READWRITE = READ | WRITE


class _EventsPlaceholder:
    """``core.EVENTS``: an io watcher's first argument that is this gets the ready events in its place."""

    def __repr__(self):
        return "gevent.core.EVENTS"


EVENTS = _EventsPlaceholder()
# libev's priority range: among the callbacks of one loop iteration, higher priorities run first
MINPRI = -2
MAXPRI = 2

# A child watcher with no pidfd to wait on looks again this often, in seconds.
_CHILD_POLL_INTERVAL = 0.05
# A stat watcher given no interval (0 or less) looks this often, in seconds.
_STAT_DEFAULT_INTERVAL = 0.1


def _no_more_keywords(kwargs):
    if kwargs:
        raise TypeError(f"unexpected keyword arguments: {', '.join(kwargs)}")


class watcher:
    """What every watcher has: ``start``/``stop``/``close``, ``active``, ``ref``, ``callback``, ``args``.

    Made inactive; ``start(callback, *args)`` begins watching. ``ref`` False lets the loop's ``run()`` end while it
    is active; ``priority`` (``MINPRI``..``MAXPRI``) orders callbacks within one loop iteration. How the watchers
    differ from libev's: docs/differences.md, "The loop's watcher API".
    """

    def __init__(self, loop: Loop, ref: bool = True, priority: int | None = None) -> None:
        self.loop = loop
        self._ref = bool(ref)
        self._priority = 0 if priority is None else priority
        self._callback = None
        self._args = None
        self._active = False
        self._holds_ref = False
        self._queued = False  # an event's callback is scheduled in the hub and has not run yet

    # -- what each kind does to the loop when it starts and stops watching
    def _activate(self):
        raise NotImplementedError

    def _deactivate(self):
        raise NotImplementedError

    # -- the API
    def start(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Calls ``callback(*args)`` in the hub each time the watched event happens, until ``stop()``.

        On an active watcher, only replaces the callback and arguments. Raises ``TypeError`` if ``callback`` is not
        callable or an unknown keyword is given; what the callback raises goes to the hub's ``handle_error``.
        """
        _no_more_keywords(kwargs)
        if callback is None:
            raise TypeError("callback must be callable, not None")
        if not callable(callback):
            raise TypeError(f"Expected callable, not {callback!r}")
        self._callback = callback
        self._args = args
        if not self._active:
            self._activate()
            self._active = True
            self._sync_ref()

    def stop(self) -> None:
        """Stops watching; harmless when not active, and from inside the callback."""
        if self._active:
            self._active = False
            self._sync_ref()
            self._deactivate()
        self._callback = None
        self._args = None

    def close(self) -> None:
        """Stops the watcher for good."""
        self.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _sync_ref(self):
        """Holds one loop reference while active and referenced, none otherwise."""
        want = self._active and self._ref
        if want != self._holds_ref and self.loop is not None:
            if want:
                self.loop.add_ref()
            else:
                self.loop.remove_ref()
            self._holds_ref = want

    def _finished(self):
        """A one-shot watcher fired: it is no longer active, nor holding the loop."""
        self._active = False
        self._sync_ref()

    def _run(self, *extra, args=None):
        """Runs the callback in the hub, with ``extra`` before its arguments (``args`` instead of them if given);
        an error is reported with this watcher as its context."""
        callback = self._callback
        if args is None:
            args = self._args or ()
        if callback is None:
            return
        try:
            callback(*extra, *args)
        except GreenletExit:
            raise  # thrown into the hub itself (it is being destroyed): that ends the loop
        except BaseException:  # everything else the callback raises goes to the hub, as in gevent
            self._report(*sys.exc_info())
        if not self._active and self._callback is callback:
            self._callback = self._args = None  # one-shot and not restarted by its callback

    def _queue(self, schedule):
        """Has ``schedule`` (the loop's ``run_callback``, or a thread-safe one) run the callback, pending until
        then; an event that comes while one is pending joins it."""
        if not self._queued:
            self._queued = True
            schedule(self._run_queued)

    def _run_queued(self):
        self._queued = False
        if self._active:
            self._run()

    def _report(self, typ, value, tb):
        self.loop.handle_error(self, typ, value, tb)

    @property
    def ref(self) -> bool:
        """Whether this watcher, while active, keeps the loop's ``run()`` going."""
        return self._ref

    @ref.setter
    def ref(self, value: bool) -> None:
        self._ref = bool(value)
        self._sync_ref()

    @property
    def active(self) -> bool:
        """Whether it is watching: started and not stopped (a one-shot watcher stops as it fires)."""
        return self._active

    @property
    def pending(self) -> bool:
        """Whether an event arrived and its callback has not run yet."""
        return self._queued

    @property
    def priority(self) -> int:
        """Its priority within a loop iteration; setting it on an active watcher raises ``ValueError``."""
        return self._priority

    @priority.setter
    def priority(self, value: int) -> None:
        if self._active:
            raise ValueError("Cannot set priority of an active watcher")
        self._priority = value

    @property
    def callback(self) -> Callable[..., Any] | None:
        """What it calls; None when stopped (or a one-shot watcher has fired). Must be callable or None."""
        return self._callback

    @callback.setter
    def callback(self, value: Callable[..., Any] | None) -> None:
        if value is not None and not callable(value):
            raise TypeError(f"Expected callable, not {value!r}")
        self._callback = value

    @property
    def args(self) -> tuple[Any, ...] | None:
        """The arguments the callback is given; a tuple or None."""
        return self._args

    @args.setter
    def args(self, value: tuple[Any, ...] | None) -> None:
        if value is not None and not isinstance(value, tuple):
            raise TypeError("args must be a tuple or None")
        self._args = value

    def _details(self):
        return ""

    def __repr__(self):
        state = " active" if self._active else ""
        ref = "" if self._ref else " ref=False"
        cb = f" callback={self._callback!r} args={self._args!r}" if self._callback is not None else ""
        return f"<{type(self).__name__} at {id(self):#x}{self._details()}{state}{ref}{cb}>"


def _events_to_str(events):
    """``"READ|WRITE"`` for an event mask."""
    return "|".join(name for bit, name in ((READ, "READ"), (WRITE, "WRITE")) if events & bit)


def _checked_events(events):
    if events & ~READWRITE or not events & READWRITE:
        raise ValueError(f"illegal event mask: {events!r}")
    return events


class io(watcher):
    """Calls back while ``fd`` is readable (``READ``) or writable (``WRITE``), level-triggered.

    ``start(callback, *args, pass_events=True)`` passes the ready events (``READ``/``WRITE``, ``ERROR`` when the
    fd was closed, which also stops the watcher) as the first argument.
    """

    def __init__(self, loop: Loop, fd: Any, events: int, ref: bool = True, priority: int | None = None) -> None:
        if not isinstance(fd, int):
            fd = fd.fileno()
        if fd < 0:
            raise ValueError(f"fd must be non-negative: {fd!r}")
        super().__init__(loop, ref, priority)
        self.fd = fd
        self._events = _checked_events(events)
        self._pass_events = False
        self._watch_id = None

    def start(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """As `watcher.start`; ``pass_events=True`` passes the ready events first."""
        self._pass_events = kwargs.pop("pass_events", False)
        super().start(callback, *args, **kwargs)

    def _activate(self):
        self._watch_id = _core.watch_io(self.loop, self.fd, self._events, self._on_ready, self._priority)

    def _deactivate(self):
        watch_id, self._watch_id = self._watch_id, None
        if watch_id is not None:
            _core.unwatch(self.loop, watch_id)

    def _on_ready(self, revents):
        if not self._active:
            return
        if revents & ERROR:
            self._watch_id = None  # the loop dropped it already
            self._finished()
        if self._pass_events:
            self._run(revents)
        elif self._args and self._args[0] is EVENTS:  # the placeholder stands for the events
            self._run(revents, args=self._args[1:])
        else:
            self._run()

    def _report(self, typ, value, tb):
        try:
            super()._report(typ, value, tb)
        finally:
            self.stop()

    @property
    def pending(self) -> bool:
        """Whether the loop found its fd ready in this iteration and the callback has not run yet."""
        return self._watch_id is not None and _core.watch_pending(self.loop, self._watch_id)

    @property
    def events(self) -> int:
        """The events watched (``READ``, ``WRITE`` or both); changing them on an active watcher raises
        ``ValueError``, an empty or unknown mask too."""
        return self._events

    @events.setter
    def events(self, value: int) -> None:
        if self._active:
            raise ValueError("Cannot change the events of an active io watcher")
        self._events = _checked_events(value)

    @property
    def events_str(self) -> str:
        """The events watched, as ``"READ|WRITE"``."""
        return _events_to_str(self._events)

    def _details(self):
        return f" fd={self.fd} events={self.events_str}"


class _phase(watcher):
    """A watcher the Rust loop calls at one point of every iteration."""

    _phase = ""

    def __init__(self, loop: Loop, ref: bool = True, priority: int | None = None) -> None:
        super().__init__(loop, ref, priority)
        self._watch_id = None

    def _activate(self):
        self._watch_id = _core.watch_phase(self.loop, self._phase, self._on_phase, self._priority)

    def _deactivate(self):
        watch_id, self._watch_id = self._watch_id, None
        if watch_id is not None:
            _core.unwatch(self.loop, watch_id)

    def _on_phase(self):
        if self._active:
            self._run()

    @property
    def pending(self) -> bool:
        """Whether its callback was collected in this iteration (check, idle) and has not run yet."""
        return self._watch_id is not None and _core.watch_pending(self.loop, self._watch_id)


class prepare(_phase):
    """Called just before each poll for I/O."""

    _phase = "prepare"


class check(_phase):
    """Called just after each poll for I/O, beside the events it brought."""

    _phase = "check"


class idle(_phase):
    """Called when the loop has nothing else to do; while active, the loop polls without blocking."""

    _phase = "idle"


class timer(watcher):
    """Calls back ``after`` seconds from ``start()``, then every ``repeat`` seconds if ``repeat`` is not 0."""

    def __init__(
        self, loop: Loop, after: float = 0.0, repeat: float = 0.0, ref: bool = True, priority: int | None = None
    ) -> None:
        if repeat < 0.0:
            raise ValueError(f"repeat must be positive or zero: {repeat!r}")
        super().__init__(loop, ref, priority)
        self.after = after
        self.repeat = repeat
        self._timer_id = None

    def start(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """As `watcher.start`; ``update=True`` refreshes the loop's time first."""
        if kwargs.pop("update", False):
            self.loop.update_now()
        super().start(callback, *args, **kwargs)

    def _activate(self):
        self._schedule(self.after)

    def _schedule(self, seconds):
        # an unreferenced timer: the loop reference the watcher holds (see _sync_ref) is what keeps run() going
        self._timer_id = _core.watch_timer(self.loop, seconds, self._on_expiry, self._priority)

    def _deactivate(self):
        timer_id, self._timer_id = self._timer_id, None
        if timer_id is not None:
            _core.unwatch_timer(self.loop, timer_id)

    def _on_expiry(self):
        self._timer_id = None
        if self.repeat:
            self._schedule(self.repeat)
        else:
            self._finished()
        self._run()

    def again(self, callback: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Restarts the timer from now (``repeat`` seconds, or ``after`` if it does not repeat)."""
        self.stop()
        after = self.after
        if self.repeat:
            self.after = self.repeat
        try:
            self.start(callback, *args, **kw)
        finally:
            self.after = after

    @property
    def pending(self) -> bool:
        """Whether it expired in this loop iteration and its callback has not run yet."""
        timer_id = self._timer_id
        return timer_id is not None and self.loop.timer_fired(timer_id)

    @property
    def at(self) -> float:
        """The delay it was made with (``after``), in seconds."""
        return self.after

    def _details(self):
        return f" after={self.after} repeat={self.repeat}"


class signal(watcher):
    """Calls back in the hub each time the process receives ``signalnum``."""

    def __init__(self, loop: Loop, signalnum: int, ref: bool = True, priority: int | None = None) -> None:
        if signalnum < 1 or signalnum >= _stdsignal.NSIG:
            raise ValueError(f"illegal signal number: {signalnum!r}")
        super().__init__(loop, ref, priority)
        self.signum = signalnum
        self._handler = None

    def _activate(self):
        from ferrovent.signal import signal_handler  # late: ferrovent.signal imports the hub

        self._handler = signal_handler(self.signum, self._queue, self.loop.run_callback)

    def _deactivate(self):
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.cancel()

    def _details(self):
        return f" signum={self.signum}"


class async_(watcher):
    """Calls back in the hub after ``send()``, which any OS thread may call; sends before it runs coalesce."""

    def __init__(self, loop: Loop, ref: bool = True, priority: int | None = None) -> None:
        super().__init__(loop, ref, priority)
        self._threadsafe = loop.threadsafe()

    def _activate(self):
        pass

    def _deactivate(self):
        pass

    def send(self) -> None:
        """Wakes the loop to run the callback; safe from any thread."""
        self._queue(self._threadsafe.run_callback)

    def send_ignoring_arg(self, _ignored: object) -> None:
        """``send()`` for callers that pass an argument (a ``concurrent.futures`` done-callback)."""
        self.send()


class child(watcher):
    """Calls back when child process ``pid`` (0: any child) exits, after reaping it (``rpid``, ``rstatus``)."""

    def __init__(self, loop: Loop, pid: int, trace: int = 0, ref: bool = True) -> None:
        if not loop.default:
            raise TypeError("child watchers are only available on the default loop")
        super().__init__(loop, ref)
        self._pid = pid
        self._trace = trace
        self.rpid = 0
        self.rstatus = 0
        self._probe = None
        self._pidfd = None

    @property
    def pid(self) -> int:
        """The child process watched (0: any child)."""
        return self._pid

    def _activate(self):
        if self._pid > 0 and hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(self._pid)
            except OSError:
                self._pidfd = None
        if self._pidfd is not None:
            self._probe = io(self.loop, self._pidfd, READ, ref=False)
        else:
            self._probe = timer(self.loop, _CHILD_POLL_INTERVAL, _CHILD_POLL_INTERVAL, ref=False)
        self._probe.start(self._reap)

    def _deactivate(self):
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            os.close(pidfd)

    @property
    def pending(self) -> bool:
        """Whether the child's exit was seen and the callback has not run yet (known with a pidfd only: Linux)."""
        probe = self._probe
        return self._pidfd is not None and probe is not None and probe.pending

    def _reap(self):
        try:
            rpid, status = os.waitpid(self._pid if self._pid > 0 else -1, os.WNOHANG)
        except ChildProcessError:
            rpid = status = 0
            if self._pidfd is not None:  # reaped by someone else: nothing more will come
                self._probe.stop()
        if not rpid:
            return
        self.rpid, self.rstatus = rpid, status
        if self._pidfd is not None:
            self._probe.stop()  # exited: the pidfd stays readable
        self._run()

    def _details(self):
        return f" pid={self._pid} rstatus={self.rstatus}"


def _stat_or_none(path):
    try:
        result = os.stat(path)
    except OSError:
        return None
    return result if result.st_nlink else None


def _same(a, b):
    if a is None or b is None:
        return a is b
    fields = ("st_ino", "st_dev", "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_ctime_ns")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


class stat(watcher):
    """Calls back when ``os.stat(path)`` changes (``attr`` now, ``prev`` before; None while the path is missing),
    looking every ``interval`` seconds."""

    def __init__(
        self,
        loop: Loop,
        path: str | bytes | os.PathLike[Any],
        interval: float = 0.0,
        ref: bool = True,
        priority: int | None = None,
    ) -> None:
        super().__init__(loop, ref, priority)
        self._path = path
        self._paths = os.fsencode(path)
        self._interval = interval
        self.attr = None
        self.prev = None
        self._probe = None

    @property
    def path(self) -> str | bytes | os.PathLike[Any]:
        """The path watched, as given."""
        return self._path

    @property
    def interval(self) -> float:
        """Seconds between two looks (0 or less becomes 0.1 s when started)."""
        return self._interval

    def _activate(self):
        if self._interval <= 0:
            self._interval = _STAT_DEFAULT_INTERVAL
        self.attr = _stat_or_none(self._path)
        self._probe = timer(self.loop, self._interval, self._interval, ref=False)
        self._probe.start(self._look)

    def _deactivate(self):
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()

    def _look(self):
        now = _stat_or_none(self._path)
        if _same(now, self.attr):
            return
        self.prev, self.attr = self.attr, now
        self._run()

    def _details(self):
        return f" path={self._path!r}"


# Active fork watchers of every loop; run in the child by `_after_fork_in_child`.
_fork_watchers: weakref.WeakSet = weakref.WeakSet()


class fork(watcher):
    """Calls back in the hub of a child process after ``os.fork()``."""

    def _activate(self):
        _fork_watchers.add(self)

    def _deactivate(self):
        _fork_watchers.discard(self)


def _after_fork_in_child():
    for w in list(_fork_watchers):
        try:
            w._queue(w.loop.run_callback)
        except Exception:  # a loop of another thread, which does not exist in the child
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class WatcherLoop:
    """gevent's ILoop methods, mixed into a loop class built on ``ferrovent._core.Loop``."""

    #: Timers fire on the poll's millisecond granularity.
    approx_timer_resolution = 0.001
    MINPRI = MINPRI
    MAXPRI = MAXPRI

    def io(self, fd: Any, events: int, ref: bool = True, priority: int | None = None) -> watchers.io:
        """A new, inactive ``io`` watcher on this loop (see `io`)."""
        return io(self, fd, events, ref, priority)

    def timer(self, after: float, repeat: float = 0.0, ref: bool = True, priority: int | None = None) -> watchers.timer:
        """A new, inactive ``timer`` watcher on this loop (see `timer`)."""
        return timer(self, after, repeat, ref, priority)

    def signal(self, signum: int, ref: bool = True, priority: int | None = None) -> watchers.signal:
        """A new, inactive ``signal`` watcher on this loop (see `signal`)."""
        return signal(self, signum, ref, priority)

    def idle(self, ref: bool = True, priority: int | None = None) -> watchers.idle:
        """A new, inactive ``idle`` watcher on this loop (see `idle`)."""
        return idle(self, ref, priority)

    def prepare(self, ref: bool = True, priority: int | None = None) -> watchers.prepare:
        """A new, inactive ``prepare`` watcher on this loop (see `prepare`)."""
        return prepare(self, ref, priority)

    def check(self, ref: bool = True, priority: int | None = None) -> watchers.check:
        """A new, inactive ``check`` watcher on this loop (see `check`)."""
        return check(self, ref, priority)

    def fork(self, ref: bool = True, priority: int | None = None) -> watchers.fork:
        """A new, inactive ``fork`` watcher on this loop (see `fork`)."""
        return fork(self, ref, priority)

    def async_(self, ref: bool = True, priority: int | None = None) -> watchers.async_:
        """A new, inactive ``async_`` watcher on this loop (see `async_`)."""
        return async_(self, ref, priority)

    def child(self, pid: int, trace: int = 0, ref: bool = True) -> watchers.child:
        """A new, inactive ``child`` watcher on this loop (see `child`)."""
        return child(self, pid, trace, ref)

    def stat(
        self, path: str | bytes | os.PathLike[Any], interval: float = 0.0, ref: bool = True, priority: int | None = None
    ) -> watchers.stat:
        """A new, inactive ``stat`` watcher on this loop (see `stat`)."""
        return stat(self, path, interval, ref, priority)

    def run_callback_threadsafe(self, func: Callable[..., Any], *args: Any) -> _core.callback:
        """Runs ``func(*args)`` in this loop's thread soon; safe to call from any thread. Returns its handle."""
        handle = callback(func, *args)
        self._threadsafe.run_callback(handle)  # made by the loop class's __init__
        return handle

    def handle_error(
        self,
        context: object,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Reports an error from a watcher's callback through the hub."""
        self.hub.handle_error(context, typ, value, tb)

    def fileno(self) -> None:
        """The poller's own fd is not exposed."""
        return None

    def run(self, nowait: bool = False, once: bool = False) -> None:
        """Runs the loop. In the hub: until nothing referenced is left. From another greenlet of the loop's
        thread: until the loop has nothing referenced left; with ``once``, for one iteration (its poll blocks until
        something happens); with ``nowait``, for one iteration whose poll does not block."""
        if getcurrent() is self.hub:
            _core.Loop.run(self)
            return
        turn = None
        if nowait or once:
            # woken after the poll of the next iteration, with what it brought already run; without blocking
            # in that poll for ``nowait`` (an idle watcher keeps it from blocking)
            turn = [check(self, ref=False)] + ([idle(self, ref=False)] if nowait else [])
            turn[0].start(self.wake, getcurrent())
            if nowait:
                turn[1].start(lambda: None)
        try:
            self.park(None, ref=False)  # otherwise nothing wakes this: it ends when the loop runs out (LoopExit)
        except LoopExit:
            pass
        finally:
            for w in turn or ():
                w.close()

    def __repr__(self):
        default = " default" if self.default else ""
        return (
            f"<{type(self).__name__} at {id(self):#x}{default} ready={self.ready_count} timers={self.timer_count}"
            f" parked={self.parked_count}>"
        )


setattr(WatcherLoop, "async", WatcherLoop.async_)  # gevent's name before ``async`` became a keyword
