"""The hub: one greenlet per OS thread that runs the Rust loop, and the error reporting it does.

Every greenlet spawned on a thread has that thread's hub as its parent. A greenlet that waits parks in the loop
and switches away; the hub's loop switches back to it when its fd, timer or wake arrives.

As ``gevent.hub``, the module also offers the low-level `Waiter`, ``_get_hub`` (the thread's hub or None) and the
functions gevent re-exports here (``sleep``, ``kill``, ``idle``, ``spawn_raw``, ``iwait``, ``wait``, ``signal``),
the latter looked up on first use, since their modules import this one.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from _thread import _local as _thread_local  # the real per-thread local, even after monkey-patching threading
from _thread import get_ident as get_thread_ident
from threading import main_thread as threading_main_thread
from types import TracebackType
from typing import TYPE_CHECKING, Any

from greenlet import GreenletExit, getcurrent, greenlet

from ferrovent._core import adopt_hub, retire_hub, sleep
from ferrovent._dead_threads import guard_dead_threads
from ferrovent._ident import IdentRegistry
from ferrovent._waiter import Waiter
from ferrovent.core import loop as Loop  # the Rust loop with gevent's watcher API
from ferrovent.core import make_hub_loop
from ferrovent.exceptions import HubDestroyed, InvalidSwitchError, LoopExit

if TYPE_CHECKING:
    from ferrovent._monitor import PeriodicMonitoringThread
    from ferrovent.threadpool import ThreadPool

__all__ = [
    "getcurrent",
    "GreenletExit",
    "sleep",
    "reinit",
    "get_hub",
    "Hub",
    "Waiter",
    "Loop",
    "get_hub_if_exists",
    "set_hub",
    "get_loop",
    "set_loop",
    "fork",
    *("spawn_raw", "kill", "signal"),  # provided by __getattr__ below
]

# gevent.hub's re-exports whose modules import this one: name -> (module, name there), imported on first use.
_REEXPORTED_LATE = {
    "spawn_raw": ("ferrovent.greenlet", "spawn_raw"),
    "iwait": ("ferrovent.greenlet", "iwait"),
    "wait": ("ferrovent.greenlet", "wait"),
    "kill": ("ferrovent", "kill"),
    "idle": ("ferrovent", "idle"),
    "signal": ("ferrovent.signal", "signal_handler"),
}


def __getattr__(name):
    try:
        module_name, attribute = _REEXPORTED_LATE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_REEXPORTED_LATE})


def _utc_timestamp():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_MAIN_THREAD_IDENT = threading_main_thread().ident


class _StderrUnlessAssigned:
    """``Hub.exception_stream``: ``sys.stderr`` as it is when read, unless a stream was assigned (None: print
    nothing); ``del hub.exception_stream`` goes back to ``sys.stderr``."""

    def __get__(self, hub, owner=None):
        return self if hub is None else sys.stderr


class Hub(greenlet):
    """The greenlet that runs a thread's event loop; ``get_hub()`` returns the calling thread's, made on first use.

    User code rarely touches it beyond ``get_hub().loop`` (the watcher API), ``join()``, ``threadpool``,
    ``exception_stream`` and overriding ``handle_error``/``print_exception`` to route errors. The hub is the parent
    of every greenlet of its thread; when its loop has nothing left to run it raises ``LoopExit`` in the main
    greenlet. How it differs from gevent's (no ``cancel_wait``/``switch_out``, a loop it makes itself, the resolver):
    docs/differences.md, "The smaller public names".
    """

    #: Where errors and the monitoring thread's reports are written.
    exception_stream = _StderrUnlessAssigned()

    #: Exceptions that are not reported when a greenlet or callback ends with them.
    NOT_ERROR = (GreenletExit, SystemExit)
    #: Exceptions that, raised in the hub, are re-raised in the main greenlet (the hub's parent).
    SYSTEM_ERROR = (KeyboardInterrupt, SystemExit, SystemError)

    #: The class of the loop each hub makes (a subclass of `Loop`).
    loop_class = Loop

    #: How many hubs were made in this process; each hub's `minimal_ident` is its place in that count.
    _made = 0

    #: The `ferrovent._monitor.PeriodicMonitoringThread` watching this hub, once started (``config.monitor_thread``).
    periodic_monitoring_thread = None

    def __init__(self, loop: int | str | list[str] | None = None, default: bool | None = None) -> None:
        """``loop``: libev-style flags for the loop this hub makes (a loop object cannot be handed over: a loop
        runs in one hub at a time). ``default``: whether it is the default loop, by default on the main thread
        only. If a hub of this thread was destroyed without its loop (`destroy`), this hub takes that loop over
        instead, whatever the arguments say, as gevent's does."""
        greenlet.__init__(self)
        #: The OS thread this hub runs in.
        self.thread_ident = get_thread_ident()
        if hasattr(loop, "run"):
            raise TypeError("a ferrovent hub runs a loop it makes itself: pass flags, not a loop")
        kept = get_loop()
        if kept is not None and not kept.destroyed:
            adopt_hub(kept, self)
            self.loop = kept
        else:
            if default is None and self.thread_ident != _MAIN_THREAD_IDENT:
                default = False
            self.loop = make_hub_loop(self, self.loop_class, flags=loop, default=default)
        set_loop(None)
        if get_hub_if_exists() is None:  # the thread's first hub, about to be its hub
            self.loop.make_current()
        Hub._made += 1
        #: A small number naming this hub (gevent's); its greenlets' numbers come from `ident_registry`.
        self.minimal_ident = Hub._made
        self.name = ""

    def __repr__(self):
        loop = self.loop
        state = "destroyed" if loop is None else f"iteration={loop.iteration}"
        described = f"<{type(self).__name__} {self.name!r} at {hex(id(self))} {state}"
        for name in ("_resolver", "_threadpool"):
            value = self.__dict__.get(name)
            if value is not None:
                described += f" {name[1:]}={value!r}"
        return f"{described} thread_ident={hex(self.thread_ident)}>"

    @property
    def main_hub(self) -> bool:
        """True for the hub of the main thread."""
        return self.thread_ident == _MAIN_THREAD_IDENT

    @property
    def ident_registry(self) -> IdentRegistry:
        """Numbers this hub's greenlets (``Greenlet.minimal_ident``): small, reused once a greenlet is gone."""
        registry = self.__dict__.get("_ident_registry")
        if registry is None:
            registry = self._ident_registry = IdentRegistry()
        return registry

    def run(self) -> None:
        """Runs the loop; each time it runs out, raises LoopExit in the parent and waits to be needed again."""
        assert self is getcurrent(), "Do not call Hub.run() directly"
        self.start_periodic_monitoring_thread()
        while True:
            self.loop.run()
            self.parent.throw(LoopExit("This operation would block forever", self, []))

    def start_periodic_monitoring_thread(self) -> PeriodicMonitoringThread | None:
        """Starts this hub's monitoring thread if ``config.monitor_thread`` is set and it is not running yet (the
        hub does so when it starts); returns it, or None."""
        if self.periodic_monitoring_thread is None:
            from ferrovent._config import config

            if config.monitor_thread:
                from ferrovent._monitor import start_monitoring  # imported late: it imports monkey

                self.periodic_monitoring_thread = start_monitoring(self)
        return self.periodic_monitoring_thread

    def handle_error(
        self,
        context: object,
        type: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Reports an exception that ended a greenlet or callback (``context``: what failed, None for the hub
        itself): prints it unless it is one of ``NOT_ERROR``, and sends those in ``SYSTEM_ERROR`` (and any error of
        the hub itself) on to the main greenlet. Subclasses may override it to route errors elsewhere."""
        if type is None:
            return
        if not issubclass(type, self.NOT_ERROR):
            self.print_exception(context, type, value, tb)
        if context is None or issubclass(type, self.SYSTEM_ERROR):
            self.handle_system_error(type, value, tb)

    def handle_system_error(
        self, type: type[BaseException], value: BaseException | None, tb: TracebackType | None = None
    ) -> None:
        """Raises a system error (``KeyboardInterrupt``, ``SystemExit``...) in the main greenlet: at once from the
        hub, else on the hub's next turn."""
        if value is None:
            value = type()
        if tb is not None:
            value = value.with_traceback(tb)
        if getcurrent() is self:
            self.parent.throw(value)
        else:
            self.loop.run_callback(self.parent.throw, value)

    def print_exception(
        self,
        context: object,
        type: type[BaseException],
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Writes the traceback, a UTC timestamp and a ``<context> failed with <ExcType>`` line to
        ``exception_stream`` (nothing if that is None)."""
        stream = self.exception_stream
        if not stream:
            return
        if value is None:
            stream.write(f"{type.__name__}\n")
        else:
            traceback.print_exception(type, value, tb, file=stream)
        stream.write(_utc_timestamp())
        if context is None:
            stream.write("\n")
            return
        try:
            described = context if isinstance(context, str) else repr(context)
        except Exception:  # a broken __repr__ must not hide the original error
            described = object.__repr__(context)
        stream.write(f" {described} failed with {getattr(type, '__name__', 'exception')}\n\n")

    def join(self, timeout: float | None = None) -> bool:
        """Waits for the loop to run out of work: True if it did, False if ``timeout`` seconds passed first.

        Raises ``RuntimeError`` if called from the hub itself.
        """
        if getcurrent() is self:
            raise RuntimeError("Cannot join the hub from inside the hub")
        if self.dead:
            return True
        try:
            self.loop.park(timeout, ref=False)  # nothing wakes this wait: it ends by LoopExit or the timeout
        except LoopExit:
            return True
        return False

    def wait(self, watcher: Any) -> None:
        """Parks the current greenlet until ``watcher`` (a loop watcher, not started) fires; stops it after.

        The watcher is started with a `Waiter`'s ``switch``; anything else switching into the greenlet meanwhile is
        an InvalidSwitchError.
        """
        waiter = Waiter(self)
        watcher.start(waiter.switch, waiter)
        try:
            woken_by = waiter.get()
            if woken_by is not waiter:
                raise InvalidSwitchError(
                    f"Invalid switch into {getcurrent()}: got {woken_by!r} (expected {waiter!r}; waiting on "
                    f"{self!r} with {watcher!r})"
                )
        finally:
            watcher.stop()

    def destroy(self, destroy_loop: bool | None = None) -> None:
        """Stops this hub for good and forgets it as its thread's hub; a later get_hub() makes a new one.

        ``destroy_loop`` (by default: unless it is the default loop) destroys the loop too; otherwise the loop is
        kept, and the thread's next hub runs it: its watchers and timers stay, while what this hub's greenlets
        waited for is dropped, so they are never resumed (on gevent their wake-ups fail in the next hub).

        As with gevent, a thread that used ferrovent should destroy its hub before it ends: the hub greenlet would
        otherwise stay suspended in its loop, and the loop's poller and waker stay open.
        """
        if _hubs.__dict__.get("hub") is self:
            del _hubs.hub
            Loop.forget_current()
        pool = self.__dict__.pop("_threadpool", None)
        if pool is not None:
            pool.kill()
        self._threadpool = self._resolver = None
        if self.periodic_monitoring_thread is not None:
            self.periodic_monitoring_thread.kill()
            self.periodic_monitoring_thread = None
        loop = self.loop
        if loop is None:
            return
        if destroy_loop is None:
            destroy_loop = not loop.default
        loop.stop()
        same_thread = main_greenlet_of(self) is main_greenlet_of(getcurrent())
        in_self = getcurrent() is self
        if not self.dead and not in_self and same_thread:
            # Ends run() so the hub's frames go. Not from another thread (after that thread was joined, say): a
            # greenlet can only be switched to in its own thread, and a dead thread's hub is left as it is.
            self.throw(HubDestroyed(destroy_loop))
        if same_thread and not loop.destroyed:
            if destroy_loop or in_self:  # a hub destroying itself is still in the loop's run()
                if get_loop() is loop:
                    set_loop(None)
                loop.destroy()
            else:
                retire_hub(loop)
                set_loop(loop)
        self.loop = None  # the hub no longer holds its loop, which closes its poller as soon as nothing else does

    @property
    def threadpool(self) -> ThreadPool:
        """This hub's pool of real OS threads (gevent's ``Hub.threadpool``), made on first use; DNS runs there."""
        from ferrovent.threadpool import hub_threadpool  # imported late: threadpool imports this module

        return hub_threadpool(self)

    @threadpool.setter
    def threadpool(self, pool: ThreadPool | None) -> None:
        """Replaces the pool (the old one is killed); None makes a fresh one on next use."""
        old = self.__dict__.pop("_threadpool", None)
        if old is not None and old is not pool:
            old.kill()
        if pool is not None:
            self._threadpool = pool

    @threadpool.deleter
    def threadpool(self) -> None:
        """Forgets the pool (it is not killed, as with gevent); the next use makes a fresh one."""
        self.__dict__.pop("_threadpool", None)

    @property
    def resolver(self) -> Any:
        """What resolves names for this hub (gevent's ``Hub.resolver``): ``gethostbyname``, ``getaddrinfo``... By
        default the `ferrovent.resolver` module; assigning None restores it."""
        chosen = self.__dict__.get("_resolver")
        if chosen is None:
            import ferrovent.resolver  # imported late: the resolver imports this module

            return ferrovent.resolver
        return chosen

    @resolver.setter
    def resolver(self, value: Any) -> None:
        self._resolver = value

    @property
    def main_greenlet(self) -> greenlet:
        """The main greenlet of the hub's thread (the hub's parent), where ``LoopExit`` and system errors go."""
        return self.parent


def main_greenlet_of(g: greenlet) -> greenlet:
    """The main greenlet of the OS thread ``g`` belongs to (greenlet keeps every parent in the same thread)."""
    while g.parent is not None:
        g = g.parent
    return g


class _ThreadExitCleanup:
    """Kept in the thread's locals beside its hub: when the thread ends (its Python state still alive, the GIL held),
    it drops the loop's thread-local registration in Rust, which could not be released later."""

    __slots__ = ()

    def __del__(self):
        Loop.forget_current()


_hubs = _thread_local()
guard_dead_threads()  # each thread's hub outlives it, to be collected in another thread


def get_hub() -> Hub:
    """The calling thread's hub, created on first use (on a thread other than the main one, a non-default loop)."""
    try:
        return _hubs.hub
    except AttributeError:
        hub = _hubs.hub = Hub()
        _hubs.cleanup = _ThreadExitCleanup()
        return hub


def get_hub_if_exists() -> Hub | None:
    """The calling thread's hub, or None if it has none yet."""
    return getattr(_hubs, "hub", None)


_get_hub = get_hub_if_exists  # gevent.hub's name for it


def get_loop() -> Loop | None:
    """The loop a hub of the calling thread was destroyed without, which the thread's next hub runs; or None."""
    return getattr(_hubs, "loop", None)


def set_loop(loop: Loop | None) -> None:
    """Keeps ``loop`` for the calling thread's next hub to run (None: forgets it). The hub it ran in must have
    ended by then."""
    _hubs.loop = loop


def set_hub(hub: Hub | None) -> None:
    """Makes ``hub`` the calling thread's hub (None: forgets it; the next get_hub() makes one)."""
    if hub is None:
        _hubs.__dict__.pop("hub", None)
        Loop.forget_current()
        return
    _hubs.hub = hub
    hub.loop.make_current()


def reinit(hub: Hub | None = None) -> None:
    """Prepares the hub for a forked child: a fresh poller and waker, the fds still waited on registered again.

    Runs by itself in every child forked with ``os.fork`` (or ``multiprocessing``'s fork start method), through
    ``os.register_at_fork``; calling it again is harmless.
    """
    hub = hub if hub is not None else get_hub_if_exists()
    if hub is not None and not hub.dead:
        hub.loop.reinit()
        if hub.periodic_monitoring_thread is not None:
            hub.periodic_monitoring_thread._on_fork()
    kept = get_loop()
    if kept is not None:  # the next hub's
        kept.reinit()


def fork() -> int:
    """``os.fork()``: returns 0 in the child and the child's pid in the parent; the child's hub is ready to use
    (see `reinit`). Raises ``OSError`` as ``os.fork`` does."""
    return _original_fork()


_original_fork = os.fork
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reinit)
