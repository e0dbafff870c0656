"""``gevent.core``: the event loop class and its watcher classes, as gevent exposes them.

gevent's ``core`` is its loop backend (libev or libuv) under one name; here it is the Rust loop, and ``loop`` is
the class every hub's loop is (``gevent.config.loop``, ``ferrovent.hub.Loop``). ``loop(default=False)`` makes a
loop of its own, not tied to a hub: ``run()`` from any greenlet of its thread runs it until nothing referenced is
left, ``run_callback`` and the watchers work on it as on the hub's loop; ``destroy()`` ends it. The default loop
is the main thread's hub's. The watcher classes take the loop as their first argument (``core.timer(loop, 0.5)``),
as gevent's do; ``loop.timer(0.5)`` is the usual spelling. There is one backend, the platform's poller (epoll,
kqueue), reported as ``"default"`` as gevent reports its libuv loop; libev's backend and flag constants are
here, and flags naming another backend than the platform's are refused.
"""

from __future__ import annotations

import sys
import threading
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
from ferrovent._watchers import (
    _events_to_str as _events_to_str,  # gevent.core exports it
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
    "BACKEND_SELECT",
    "BACKEND_POLL",
    "BACKEND_EPOLL",
    "BACKEND_KQUEUE",
    "BACKEND_LINUXAIO",
    "BACKEND_IOURING",
    "BACKEND_PORT",
    "NOINOTIFY",
    "SIGNALFD",
    "NOSIGMASK",
    "NOENV",
    "FORKCHECK",
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

# libev's backend and flag bits, which gevent's core exposes. A loop accepts only the platform's own backend
# (mio's: epoll on Linux, kqueue on macOS and the BSDs); the flags are accepted and change nothing (the loop reads
# no environment, and rebuilds its poller in a forked child by itself).
BACKEND_SELECT = 0x01
BACKEND_POLL = 0x02
BACKEND_EPOLL = 0x04
BACKEND_KQUEUE = 0x08
BACKEND_LINUXAIO = 0x40
BACKEND_IOURING = 0x80
BACKEND_PORT = 0x20
NOINOTIFY = 0x00100000
SIGNALFD = 0x00200000
NOSIGMASK = 0x00400000
NOENV = 0x01000000
FORKCHECK = 0x02000000

_BACKEND_MASK = 0xFFFF
_FLAG_NAMES = (
    (BACKEND_PORT, "port"),
    (BACKEND_KQUEUE, "kqueue"),
    (BACKEND_IOURING, "linux_iouring"),
    (BACKEND_LINUXAIO, "linux_aio"),
    (BACKEND_EPOLL, "epoll"),
    (BACKEND_POLL, "poll"),
    (BACKEND_SELECT, "select"),
    (NOENV, "noenv"),
    (FORKCHECK, "forkcheck"),
    (SIGNALFD, "signalfd"),
    (NOSIGMASK, "nosigmask"),
)
_FLAG_BITS = {name: bit for bit, name in _FLAG_NAMES}
_PLATFORM_BACKEND = "epoll" if sys.platform.startswith("linux") else "kqueue"


def _flags_to_list(flags: int) -> list:
    """The names of the bits set in ``flags`` (a bit with no name is listed as its number)."""
    names = [name for bit, name in _FLAG_NAMES if flags & bit]
    unnamed = flags & ~sum(bit for bit, _ in _FLAG_NAMES)
    return names + ([unnamed] if unnamed else [])


def _flags_to_int(flags) -> int:
    """``flags`` as bits: None, a number, or names (a list, or a comma-separated string) of ``_flags_to_list``."""
    if not flags:
        return 0
    if isinstance(flags, int):
        return flags
    if isinstance(flags, (str, bytes)):
        flags = (flags.decode() if isinstance(flags, bytes) else flags).split(",")
    try:
        names = [name.strip().lower() for name in flags]
    except (TypeError, AttributeError):
        raise TypeError(f"flags must be a number, a string or a list of strings, not {flags!r}") from None
    try:
        return sum({_FLAG_BITS[name] for name in names if name})
    except KeyError as exc:
        raise ValueError(f"Invalid backend or flag: {exc}; possible values: {', '.join(sorted(_FLAG_BITS))}") from None


def _check_flags(flags: int) -> None:
    """Refuses a backend other than the platform's."""
    backends = flags & _BACKEND_MASK
    if backends and backends != _FLAG_BITS[_PLATFORM_BACKEND]:
        named = "|".join(str(name) for name in _flags_to_list(backends))
        raise ValueError(f"Unsupported backend: {named} (this loop polls with {_PLATFORM_BACKEND})")


def supported_backends() -> list[str]:
    """The backends a loop can be chosen from: none, the poller is the platform's (reported as gevent reports its
    libuv loop, which is not configurable either)."""
    return ["default"]


def recommended_backends() -> list[str]:
    """The backends worth choosing: the one there is, ``"default"``."""
    return ["default"]


def embeddable_backends() -> list[str]:
    """The backends a loop can be embedded in another with: none (libev's embedding does not exist here)."""
    return []


def get_version() -> str:
    """The loop's version, ``"ferrovent-<version>"`` (gevent reports its libev or libuv version here)."""
    from ferrovent._core import __version__

    return f"ferrovent-{__version__}"


def get_header_version() -> str:
    """As `get_version`: there are no separate C headers to report."""
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
    """gevent's loop class (``gevent.config.loop``): ``loop(flags=None, default=None)``.

    The default loop is the main thread's hub's: ``default=True`` (or None, on the main thread) gives that very
    object, making the hub if the thread has none yet; asking for it from another thread is a ValueError. Any
    other loop is one of its own, run by ``run()`` from any greenlet of the thread that made it. ``flags`` may
    name the platform's backend and libev's flags (``"epoll"``, ``"forkcheck"``...): another backend is refused.
    A hub makes its loop through `make_hub_loop`, which makes the hub the greenlet the loop runs in.
    """

    def __new__(cls, flags: int | str | list[str] | None = None, default: bool | None = None) -> loop:
        _check_flags(_flags_to_int(flags))
        hub, _next_hub.hub = getattr(_next_hub, "hub", None), None
        on_main_thread = threading.current_thread() is threading.main_thread()
        if default is None:
            default = on_main_thread
        if default and not on_main_thread:
            raise ValueError("the default loop is the main thread's; other threads make loops with default=False")
        if default and hub is None:
            return _main_hub_loop()
        runner = hub if hub is not None else _LoopRunner(parent=getcurrent())
        made = super().__new__(cls, runner)
        made._default = bool(default)
        if hub is None:
            runner.loop = made
        return made

    def __init__(self, flags: int | str | list[str] | None = None, default: bool | None = None) -> None:
        if "_threadsafe" not in self.__dict__:  # not again for the default loop handed out a second time
            self._threadsafe = self.threadsafe()

    @property
    def default(self) -> bool:
        """Whether this is the main thread's default loop (False once destroyed)."""
        return self._default and not self.destroyed

    @property
    def ptr(self) -> int | None:
        """Non-zero (an opaque number) while the loop exists; None once destroyed."""
        return None if self.destroyed else id(self)

    @property
    def backend(self) -> str:
        """``"default"``: the poller is chosen by the platform, not configurable (as gevent says of libuv)."""
        return "default"

    @property
    def backend_int(self) -> int:
        """0: there is no libev backend number to report (see ``backend``)."""
        return 0

    def destroy(self) -> None:
        """Stops the loop for good and closes its poller; from then on its waits and watchers raise ValueError.

        As with gevent, this holds for the default loop too (its hub cannot run any more: destroy the hub, and the
        next ``get_hub()`` makes a new one). A loop of its own also ends the greenlet it ran in.
        """
        runner = self.hub
        if _CoreLoop.destroy(self) and isinstance(runner, _LoopRunner) and runner and getcurrent() is not runner:
            try:
                runner.throw(HubDestroyed(True))
            except HubDestroyed:
                pass


# The hub whose loop is being made (see make_hub_loop); per thread.
_next_hub = threading.local()


def make_hub_loop(hub, loop_class, flags=None, default=None):
    """``loop_class(flags=flags, default=default)`` (gevent's call, so that subclasses written for gevent work),
    made to run in ``hub``."""
    _next_hub.hub = hub
    try:
        return loop_class(flags=flags, default=default)
    finally:
        _next_hub.hub = None


def _main_hub_loop():
    """The default loop: the main thread's hub's, a new hub's if that one was destroyed."""
    from ferrovent.hub import get_hub

    hub = get_hub()
    if hub.loop.destroyed:
        hub.destroy()
        hub = get_hub()
    return hub.loop
