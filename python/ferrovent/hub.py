"""The hub: one greenlet per OS thread that runs the Rust loop, and the error reporting it does.

Every greenlet spawned on a thread has that thread's hub as its parent. A greenlet that waits parks in the loop
and switches away; the hub's loop switches back to it when its fd, timer or wake arrives.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from _thread import _local as _thread_local  # the real per-thread local, even after monkey-patching threading

from greenlet import GreenletExit, getcurrent, greenlet

from ferrovent._core import Loop as _CoreLoop
from ferrovent._watchers import WatcherLoop
from ferrovent.exceptions import HubDestroyed, LoopExit

__all__ = ["Hub", "Loop", "get_hub", "get_hub_if_exists", "set_hub", "reinit", "fork"]


class Loop(WatcherLoop, _CoreLoop):
    """The Rust loop, with gevent's watcher API (``loop.io``, ``timer``, ...) and ``run_callback_threadsafe``."""

    def __init__(self, hub):
        self._threadsafe = self.threadsafe()


def _utc_timestamp():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Hub(greenlet):
    """The greenlet that runs a thread's event loop."""

    #: Exceptions that are not reported when a greenlet or callback ends with them.
    NOT_ERROR = (GreenletExit, SystemExit)
    #: Exceptions that, raised in the hub, are re-raised in the main greenlet (the hub's parent).
    SYSTEM_ERROR = (KeyboardInterrupt, SystemExit, SystemError)

    def __init__(self):
        greenlet.__init__(self)
        self.loop = Loop(self)
        self.loop.make_current()
        self.exception_stream = sys.stderr

    def run(self):
        """Runs the loop; each time it runs out, raises LoopExit in the parent and waits to be needed again."""
        assert self is getcurrent(), "Do not call Hub.run() directly"
        while True:
            self.loop.run()
            self.parent.throw(LoopExit("This operation would block forever", self, []))

    def handle_error(self, context, type, value, tb):
        """Reports an exception from a greenlet or callback; system errors go on to the main greenlet."""
        if type is None:
            return
        if not issubclass(type, self.NOT_ERROR):
            self.print_exception(context, type, value, tb)
        if context is None or issubclass(type, self.SYSTEM_ERROR):
            self.handle_system_error(type, value, tb)

    def handle_system_error(self, type, value, tb=None):
        """Raises a system error (KeyboardInterrupt, SystemExit) in the main greenlet."""
        if value is None:
            value = type()
        if tb is not None:
            value = value.with_traceback(tb)
        if getcurrent() is self:
            self.parent.throw(value)
        else:
            self.loop.run_callback(self.parent.throw, value)

    def print_exception(self, context, type, value, tb):
        """Writes the traceback and a ``<context> failed with <ExcType>`` line to the exception stream."""
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

    def wait(self, watcher):
        """Parks the current greenlet until ``watcher`` (a loop watcher, not started) fires; stops it after."""
        watcher.start(self.loop.wake, getcurrent())
        try:
            self.loop.park()
        finally:
            watcher.stop()

    def join(self, timeout=None):
        """Waits for the loop to run out of work: True if it did, False if ``timeout`` passed first."""
        if getcurrent() is self:
            raise RuntimeError("Cannot join the hub from inside the hub")
        if self.dead:
            return True
        try:
            self.loop.park(timeout, ref=False)  # nothing wakes this wait: it ends by LoopExit or the timeout
        except LoopExit:
            return True
        return False

    def destroy(self, destroy_loop=None):
        """Stops this hub for good and forgets it as its thread's hub; a later get_hub() makes a new one.

        As with gevent, a thread that used ferrovent should destroy its hub before it ends: the hub greenlet would
        otherwise stay suspended in its loop, and the loop's poller and waker stay open.
        """
        if _hubs.__dict__.get("hub") is self:
            del _hubs.hub
            Loop.forget_current()
        pool = self.__dict__.pop("_threadpool", None)
        if pool is not None:
            pool.kill()
        loop = self.loop
        if loop is None:
            return
        loop.stop()
        if not self.dead and getcurrent() is not self and main_greenlet_of(self) is main_greenlet_of(getcurrent()):
            # Ends run() so the hub's frames go. Not from another thread (after that thread was joined, say): a
            # greenlet can only be switched to in its own thread, and a dead thread's hub is left as it is.
            self.throw(HubDestroyed(destroy_loop))
        self.loop = None  # the hub no longer holds its loop, which closes its poller as soon as nothing else does

    @property
    def threadpool(self):
        """This hub's pool of real OS threads (gevent's ``Hub.threadpool``), made on first use; DNS runs there."""
        from ferrovent.threadpool import hub_threadpool  # imported late: threadpool imports this module

        return hub_threadpool(self)

    @property
    def main_greenlet(self):
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


def get_hub() -> Hub:
    """The calling thread's hub, created on first use."""
    try:
        return _hubs.hub
    except AttributeError:
        hub = _hubs.hub = Hub()
        _hubs.cleanup = _ThreadExitCleanup()
        return hub


def get_hub_if_exists():
    """The calling thread's hub, or None if it has none yet."""
    return getattr(_hubs, "hub", None)


def set_hub(hub):
    """Makes ``hub`` the calling thread's hub."""
    _hubs.hub = hub


def reinit(hub=None):
    """Prepares the hub for a forked child: a fresh poller and waker, the fds still waited on registered again.

    Runs by itself in every child forked with ``os.fork`` (or ``multiprocessing``'s fork start method), through
    ``os.register_at_fork``; calling it again is harmless.
    """
    hub = hub if hub is not None else get_hub_if_exists()
    if hub is not None and not hub.dead:
        hub.loop.reinit()


def fork():
    """``os.fork()``; the child's hub is ready to use (see `reinit`)."""
    return _original_fork()


_original_fork = os.fork
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reinit)
