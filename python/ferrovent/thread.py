"""The ``_thread`` module's API with greenlets for threads: what ``monkey.patch_thread`` puts into ``_thread``.

A "thread" started here is a `ferrovent.Greenlet` on the calling OS thread's hub; its identity (`get_ident`) is
``id()`` of its greenlet, so every greenlet, spawned by ferrovent or by ``threading``, is a distinct thread to
code that keys state by thread. Locks are ferrovent's, so a greenlet that waits on one lets the others run.

Thread lifetime is what ``threading`` builds on. Up to Python 3.12 it asks ``_set_sentinel()`` for a lock that the
interpreter releases once the thread is gone; ours is released when the greenlet that asked for it finishes. From
Python 3.13 it starts threads with `start_joinable_thread` and follows them through a `_ThreadHandle`; ours is done
when the greenlet finishes, and `_shutdown` (called at interpreter exit) waits for the non-daemon ones.

Left as they are: ``get_native_id`` (every greenlet reports its OS thread), ``TIMEOUT_MAX``, ``error``, and
``interrupt_main``, which simulates the signal in the OS thread: its handler runs in whichever greenlet of the main
OS thread runs Python next (the hub passes a KeyboardInterrupt on to the main greenlet; another greenlet gets it
itself), not necessarily in the main greenlet.
"""

from __future__ import annotations

import _thread
import sys
import weakref
from typing import Any, Callable, Optional

from greenlet import GreenletExit, getcurrent

from ferrovent.event import Event
from ferrovent.exceptions import LoopExit
from ferrovent.greenlet import Greenlet
from ferrovent.hub import get_hub_if_exists
from ferrovent.local import local as _local  # noqa: F401  (in __implements__: _thread._local)
from ferrovent.lock import Lock, RLock  # noqa: F401  (RLock is in __implements__)

_PY313 = sys.version_info >= (3, 13)

__implements__ = [
    "LockType",
    "RLock",
    "_count",
    "_local",
    "allocate",
    "allocate_lock",
    "exit",
    "exit_thread",
    "get_ident",
    "stack_size",
    "start_new",
    "start_new_thread",
]
if _PY313:
    __implements__ += [
        "lock",
        "start_joinable_thread",
        "_ThreadHandle",
        "_make_thread_handle",
        "_get_main_thread_ident",
        "_shutdown",
    ]
else:
    __implements__ += ["_set_sentinel"]

# What stays the stdlib's: re-exported so this module can stand in for ``_thread``.
error = _thread.error
TIMEOUT_MAX = _thread.TIMEOUT_MAX
interrupt_main = _thread.interrupt_main
get_native_id = _thread.get_native_id
_excepthook = _thread._excepthook
_ExceptHookArgs = _thread._ExceptHookArgs
if hasattr(_thread, "daemon_threads_allowed"):  # 3.12+
    daemon_threads_allowed = _thread.daemon_threads_allowed
if hasattr(_thread, "_is_main_interpreter"):  # 3.12+
    _is_main_interpreter = _thread._is_main_interpreter

__all__ = [name for name in __implements__ if not name.startswith("_")] + [
    "TIMEOUT_MAX",
    "error",
    "get_native_id",
    "interrupt_main",
]


def get_ident(greenlet: Any = None) -> int:
    """The identity of the current "thread" (of ``greenlet`` if given): ``id()`` of its greenlet."""
    return id(getcurrent() if greenlet is None else greenlet)


class LockType(Lock):
    """``_thread.LockType``: ferrovent's Lock, with the C lock's limits and a yield for spinning callers.

    A non-blocking acquire that fails lets the other greenlets run once before returning False: a loop that spins
    on ``acquire(False)`` waiting for another "thread" to release would otherwise never let it run.
    """

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``_thread.LockType.acquire``: True once taken; False if not free and not blocking or timed out."""
        if Lock.acquire(self, blocking, timeout):
            return True
        if not blocking:
            hub = get_hub_if_exists()
            if hub is not None and getcurrent() is not hub:
                hub.loop.sleep(0)
        return False

    def _is_owned(self) -> bool:
        """What ``threading.Condition`` asks of a plain lock: is it held (by anyone)? Answered without trying to
        acquire it, which would yield to other greenlets in the middle of every ``notify``."""
        return self.locked()

    acquire_lock = acquire


allocate_lock = allocate = LockType
if _PY313:
    lock = LockType


def exit() -> None:
    """Ends the current "thread" (its greenlet) quietly."""
    raise GreenletExit


exit_thread = exit

# How many threads started by start_new_thread are running (``_thread._count``).
_running = 0


def _count() -> int:
    """The number of threads started by `start_new_thread` that have not finished yet."""
    return _running


def _run_thread(function: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    global _running
    _running += 1
    try:
        function(*args, **kwargs)
    except SystemExit:
        pass  # as with _thread: SystemExit ends the thread, not the process
    finally:
        _running -= 1


def _start(function: Callable[..., Any], args: tuple, kwargs: Optional[dict]) -> Greenlet:
    if not callable(function):
        raise TypeError("first arg must be callable")
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    return Greenlet.spawn(_run_thread, function, args, kwargs or {})


def start_new_thread(function: Callable[..., Any], args: tuple = (), kwargs: Optional[dict] = None) -> int:
    """Runs ``function(*args, **kwargs)`` in a new greenlet; returns its `get_ident`.

    An exception other than SystemExit is reported by the hub, as for any greenlet that fails.
    """
    return get_ident(_start(function, args, kwargs))


start_new = start_new_thread

# The value the last stack_size() call set; greenlets run on their OS thread's stack, so it changes nothing.
_stack_size = 0


def stack_size(size: Optional[int] = None) -> int:
    """Accepts and returns a thread stack size as ``_thread.stack_size`` does, without applying it.

    A greenlet runs on the stack of its OS thread, so there is nothing to size; real threads (ferrovent's thread
    pool, say) keep the interpreter's default rather than one chosen for code that now runs in greenlets.
    """
    global _stack_size
    previous = _stack_size
    if size is not None:
        if size != 0 and size < 32768:
            raise ValueError("size not valid: 32768 bytes is the minimum")
        _stack_size = size
    return previous


def _release_when_done(lock: LockType) -> Callable[[Any], None]:
    def release(_greenlet: Any) -> None:
        if lock.locked():
            lock.release()

    return release


def _set_sentinel() -> LockType:
    """A lock released when the current greenlet finishes (``_thread._set_sentinel``, Python 3.12 and older).

    ``threading.Thread`` acquires it as it starts and waits for it in ``join()``: this is what makes a greenlet
    thread joinable. The main greenlet never finishes; its lock stays held, as the main thread's does.
    """
    sentinel = LockType()
    rawlink = getattr(getcurrent(), "rawlink", None)
    if rawlink is not None:
        rawlink(_release_when_done(sentinel))
    return sentinel


# -- Python 3.13+: joinable threads and their handles ---------------------------------------------------------

# The handles of running non-daemon threads: _shutdown waits for them.
_non_daemon: set[_ThreadHandle] = set()


def _root_greenlet() -> Any:
    """The greenlet the calling OS thread started in (the main greenlet, in the main thread)."""
    current = getcurrent()
    while current.parent is not None:
        current = current.parent
    return current


class _ThreadHandle:
    """``_thread._ThreadHandle`` for a greenlet thread: its ident, whether it is done, and a way to join it.

    It refers to its greenlet weakly: the dummy thread of a finished plain greenlet must not keep it alive.
    """

    __slots__ = ("_ident", "_greenlet_ref", "_done", "__weakref__")

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the stdlib's constructor ignores its arguments too
        self._ident = None
        self._greenlet_ref = None
        self._done = Event()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}._ThreadHandle object: ident={self._ident}>"

    @property
    def ident(self) -> Optional[int]:
        """The thread's `get_ident`, None until it started."""
        return self._ident

    def _bind(self, greenlet: Any, daemon: bool) -> None:
        if self._ident is not None:
            raise RuntimeError("thread already started")
        self._ident = get_ident(greenlet)
        self._greenlet_ref = weakref.ref(greenlet)
        if not daemon:
            _non_daemon.add(self)
        rawlink = getattr(greenlet, "rawlink", None)
        if rawlink is not None:
            rawlink(self._finished)

    def _finished(self, _greenlet: Any) -> None:
        self._set_done()

    def is_done(self) -> bool:
        """True once the thread's greenlet has finished (or ``_set_done`` was called)."""
        if self._done.is_set():
            return True
        if self._greenlet_ref is None:
            return False
        greenlet = self._greenlet_ref()
        return greenlet is None or greenlet.dead

    def _set_done(self) -> None:
        _non_daemon.discard(self)
        self._done.set()

    def join(self, timeout: Optional[float] = None) -> None:
        """Waits (cooperatively) until the thread is done or ``timeout`` seconds pass."""
        if self._ident is None:
            raise RuntimeError("thread not started")
        if self._ident == get_ident() and not self.is_done():
            raise RuntimeError("Cannot join current thread")
        if timeout is not None and timeout < 0:
            timeout = None if timeout == -1 else 0
        self._done.wait(timeout)


def start_joinable_thread(
    function: Callable[[], Any], handle: Optional[_ThreadHandle] = None, daemon: bool = True
) -> _ThreadHandle:
    """Runs ``function()`` in a new greenlet and returns its `_ThreadHandle` (``handle`` if given)."""
    if handle is None:
        handle = _ThreadHandle()
    elif not isinstance(handle, _ThreadHandle):
        raise TypeError("'handle' must be a _ThreadHandle of ferrovent.thread")
    elif handle._ident is not None:
        raise RuntimeError("thread already started")
    handle._bind(_start(function, (), None), daemon)
    return handle


def _make_thread_handle(ident: int) -> _ThreadHandle:
    """A handle for the current greenlet, which is already running (the main thread, a dummy thread)."""
    handle = _ThreadHandle()
    handle._bind(getcurrent(), daemon=True)
    return handle


def _get_main_thread_ident() -> int:
    """The ident of the main "thread": the greenlet the calling OS thread started in."""
    return get_ident(_root_greenlet())


def _shutdown() -> None:
    """Waits for every non-daemon thread to finish (``threading._shutdown`` calls it at exit, Python 3.13+).

    If they can never finish (everything left would wait forever), gives up instead of hanging the exit.
    """
    try:
        while _non_daemon:
            handle = next(iter(_non_daemon))
            if handle._ident == get_ident():
                _non_daemon.discard(handle)
                continue
            handle.join()
            _non_daemon.discard(handle)
    except LoopExit:
        pass
