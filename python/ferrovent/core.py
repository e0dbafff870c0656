"""``gevent.core``: the event loop class and its watcher classes, as gevent exposes them.

gevent's ``core`` is its loop backend (libev or libuv) under one name; here it is the Rust loop. ``loop`` makes a
loop of its own, not tied to a hub (``core.loop(default=False)``): ``run()`` from any greenlet of its thread runs
it until nothing referenced is left, ``run_callback`` and the watchers work on it as on the hub's loop. The watcher
classes take the loop as their first argument (``core.timer(loop, 0.5)``), as gevent's do; ``loop.timer(0.5)`` is
the usual spelling. There is one backend, chosen by the platform (epoll, kqueue), reported as ``"default"``, as
gevent reports its libuv loop.
"""

from __future__ import annotations

import sys
import time as _time

from greenlet import getcurrent, greenlet

from ferrovent._core import Loop as _CoreLoop
from ferrovent._watchers import (
    ERROR,
    EVENTS,
    MAXPRI,
    MINPRI,
    READ,
    READWRITE,
    WRITE,
    WatcherLoop,
    async_,
    callback,
    check,
    child,
    fork,
    idle,
    io,
    prepare,
    signal,
    stat,
    timer,
    watcher,
)
from ferrovent.exceptions import HubDestroyed, LoopExit

__all__ = [
    "loop",
    "callback",
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
    "READ",
    "WRITE",
    "READWRITE",
    "ERROR",
    "EVENTS",
    "NONE",
    "MINPRI",
    "MAXPRI",
    "LIBEV_EMBED",
    "supported_backends",
    "recommended_backends",
    "embeddable_backends",
    "get_version",
    "get_header_version",
    "time",
]

NONE = 0
#: gevent's flag for "libev is compiled in"; there is no libev here.
LIBEV_EMBED = False


def supported_backends() -> list[str]:
    """The backends a loop can be asked for: only the platform's own poller, not selectable."""
    return ["default"]


def recommended_backends() -> list[str]:
    return ["default"]


def embeddable_backends() -> list[str]:
    return []


def get_version() -> str:
    from ferrovent._core import __version__

    return f"ferrovent-{__version__}"


def get_header_version() -> str:
    return get_version()


def time() -> float:
    """The current time, as libev's ``ev_time()``: seconds since the epoch."""
    return _time.time()


class _LoopRunner(greenlet):
    """The greenlet a loop made with ``core.loop()`` runs in, as a hub runs the hub's loop; errors from its
    callbacks are printed, and system errors raised in the greenlet that ran it."""

    loop = None

    def run(self):
        while True:
            _CoreLoop.run(self.loop)
            self.parent.throw(LoopExit("the loop has nothing left to run"))

    def handle_error(self, context, typ, value, tb):
        from ferrovent.hub import Hub

        if typ is None:
            return
        if not issubclass(typ, Hub.NOT_ERROR):
            Hub.print_exception(self, context, typ, value, tb)
        if context is None or issubclass(typ, Hub.SYSTEM_ERROR):
            self.parent.throw(value if value is not None else typ())

    exception_stream = sys.stderr


class loop(WatcherLoop, _CoreLoop):
    """An event loop of its own (``default=False``) or, with ``default=True``, the calling thread's hub's loop."""

    def __new__(cls, flags=None, default=None):
        if default:
            from ferrovent.hub import get_hub

            return get_hub().loop
        runner = _LoopRunner(parent=getcurrent())
        made = super().__new__(cls, runner)
        runner.loop = made
        return made

    def __init__(self, flags=None, default=None):
        self._threadsafe = self.threadsafe()

    @property
    def default(self):
        return False

    def destroy(self):
        """Stops the loop and ends the greenlet it runs in."""
        self.stop()
        runner = self.hub
        if not runner.dead and runner.parent is not None and getcurrent() is not runner:
            try:
                runner.throw(HubDestroyed(True))
            except HubDestroyed:
                pass
