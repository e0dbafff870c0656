"""What ``monkey.patch_thread`` puts into the stdlib's ``threading``, and the fix-ups that go with it.

The stdlib's ``threading`` is written on top of ``_thread``: it starts threads, makes locks and asks who is running
through a handful of names it copied out of ``_thread`` when it was imported. Replacing those names (see
`__implements__`) with ferrovent's makes the stdlib's own ``Thread``, ``Timer``, ``Condition``, ``Semaphore``,
``Barrier``, ``current_thread``, ``enumerate``... run on greenlets: ``Thread.start()`` spawns a greenlet,
``join()`` parks on a ferrovent lock. The classes themselves stay the stdlib's, so ``isinstance`` checks and
``Thread`` subclasses defined before patching keep working. ``threading.Event`` becomes ferrovent's own Event
(``Event=True``, the default); the stdlib's would work too, built on the patched locks, only slower.

Some state was built before patching and is adjusted once by `_patch_threading`:

- the patching thread (normally the main thread) is re-keyed to its root greenlet, so ``current_thread()`` there
  is still the same object; the main thread also gets something greenlets can wait on in its ``join()``;
- ``threading._shutdown`` (run at interpreter exit) joins the non-daemon greenlet threads cooperatively, and gives
  up rather than hanging if they can never finish (LoopExit);
- locks already held by the patching greenlet under the OS thread's identity (the import lock of a module that
  calls ``patch_all()`` while it is being imported) are handed to the greenlet's identity;
- the logging module's locks, and ``concurrent.futures``' global shutdown lock, become ferrovent locks (a native
  lock held across a greenlet switch would block the whole OS thread);
- threads already running in other OS threads stay real threads; greenlets join them by polling;
- after ``os.fork()``, the child's main thread is a proper one even when a greenlet forked.
"""

from __future__ import annotations

import functools
import os
import sys
import threading as _threading
import weakref
from time import monotonic
from typing import Any, Callable, Optional

from greenlet import getcurrent

from ferrovent import event as _event
from ferrovent import thread as _green_thread
from ferrovent._core import sleep
from ferrovent.exceptions import LoopExit
from ferrovent.local import local
from ferrovent.lock import RLock
from ferrovent.thread import LockType, get_ident

_PY313 = sys.version_info >= (3, 13)

__implements__ = ["local", "_allocate_lock", "Lock", "get_ident", "_CRLock"]
if _PY313:
    __implements__ += [
        "_start_joinable_thread",
        "_ThreadHandle",
        "_make_thread_handle",
        "_get_main_thread_ident",
        "_thread_shutdown",
        "_thread_local_info",
    ]
else:
    __implements__ += ["_start_new_thread", "_set_sentinel", "_DummyThread"]

__all__: list[str] = []

_allocate_lock = Lock = LockType
# threading.RLock() returns a _CRLock when there is one: ferrovent's RLock, owned per greenlet.
_CRLock = RLock

if _PY313:
    _start_joinable_thread = _green_thread.start_joinable_thread
    _ThreadHandle = _green_thread._ThreadHandle
    _make_thread_handle = _green_thread._make_thread_handle
    _get_main_thread_ident = _green_thread._get_main_thread_ident
    _thread_shutdown = _green_thread._shutdown
    # The stdlib forgets a dummy thread when an object stored in this local dies: per greenlet, it dies with the
    # greenlet (a native thread-local would keep only the newest dummy of the whole OS thread).
    _thread_local_info = local()
else:
    _start_new_thread = _green_thread.start_new_thread
    _set_sentinel = _green_thread._set_sentinel

    class _Forget:
        """Drops a dummy thread from ``threading._active`` once its greenlet is gone."""

        __slots__ = ("ident", "thread")

        def __init__(self, thread: Any) -> None:
            self.ident = thread.ident
            self.thread = thread

        def __call__(self, _gone: Any) -> None:
            active = _threading._active
            if active.get(self.ident) is self.thread:
                del active[self.ident]

    class _DummyThread(_threading._DummyThread):
        """``current_thread()`` of a greenlet that ``threading`` did not start (a plain ``ferrovent.spawn``).

        The stdlib's dummy threads stay in ``threading._active`` forever, which greenlets (many, short-lived, their
        ids reused) cannot afford: this one leaves when its greenlet finishes or is collected.
        """

        def __init__(self) -> None:
            super().__init__()
            forget = _Forget(self)
            greenlet = getcurrent()
            rawlink = getattr(greenlet, "rawlink", None)
            if rawlink is not None:
                rawlink(forget)
            else:  # a raw greenlet (the hub, spawn_raw): only collection tells us it is gone
                self._greenlet_ref = weakref.ref(greenlet, forget)


# -- the one-time fix-ups -------------------------------------------------------------------------------------

_installed = False
_before_fork: dict[int, Any] = {}


def _patch_threading(
    threading: Any,
    patch_item: Callable[[Any, str, Any], None],
    Event: bool = True,
    logging: bool = True,
    existing_locks: bool = True,
) -> list[str]:
    """Patches ``threading`` (the stdlib module) in place; returns warnings for the caller to issue.

    ``patch_item(module, name, value)`` does each replacement (monkey records the originals with it). ``Event``
    also makes ``threading.Event`` ferrovent's; ``logging`` gives the logging module and its handlers ferrovent
    locks; ``existing_locks`` converts the locks described in this module's docstring. Calling it again only
    re-applies the names.
    """
    global _installed
    messages = []
    first_time = not _installed
    # Read before get_ident changes meaning: who holds locks under the OS thread's identity, and is it the main one.
    native_ident = threading.get_ident()
    current_thread = threading.current_thread()
    on_main_thread = current_thread is threading.main_thread()
    for name in __implements__:
        patch_item(threading, name, globals()[name])
    if Event:
        patch_item(threading, "Event", _event.Event)
    if not first_time:
        return messages
    _installed = True
    _adopt_current_thread(threading, current_thread)
    _adapt_other_running_threads(threading, current_thread)
    if on_main_thread:
        _make_main_thread_joinable(threading)
    else:
        messages.append(
            "Monkey-patching threading outside the main thread: the main thread keeps its native identity and "
            "greenlets cannot join() it."
        )
    patch_item(threading, "_shutdown", _green_shutdown(threading, threading._shutdown, on_main_thread))
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_remember_threads, after_in_parent=_before_fork.clear, after_in_child=_after_fork_in_child
        )
    if existing_locks:
        _convert_existing_locks(threading, native_ident)
    if logging and "logging" in sys.modules:
        _patch_logging(sys.modules["logging"], patch_item)
    return messages


def _adopt_current_thread(threading: Any, thread: Any) -> None:
    """Re-keys the patching OS thread's Thread object to its root greenlet, where ``current_thread()`` (and the
    thread's own clean-up when it ends) now look for it."""
    with threading._active_limbo_lock:
        if threading._active.get(thread._ident) is thread:
            del threading._active[thread._ident]
        thread._ident = get_ident(_green_thread._root_greenlet())
        threading._active[thread._ident] = thread


def _adapt_other_running_threads(threading: Any, current: Any) -> None:
    """Threads already running in other OS threads stay real threads. When one ends, it must still find itself in
    ``_active`` (under the native identity it was registered with), and a greenlet joining it must not block the
    whole OS thread on its native lock: ``join()`` polls instead."""
    for thread in list(threading._active.values()):
        if thread is current or isinstance(thread, threading._DummyThread):
            continue
        forget = functools.partial(threading._active.pop, thread._ident, None)
        thread._delete = forget
        if sys.version_info < (3, 11):
            # A thread's own clean-up deletes `_active[get_ident()]` instead of calling `_delete()`, and get_ident is
            # the patched, greenlet one by then: the entry goes once the thread is seen to have stopped.
            thread._stop = functools.partial(_stop_and_forget, thread._stop, forget)
        thread.join = functools.partial(_poll_join, thread)


def _stop_and_forget(stop: Callable[[], None], forget: Callable[[], Any]) -> None:
    stop()
    forget()


def _poll_join(thread: Any, timeout: Optional[float] = None) -> None:
    """``join()`` for a real thread, from a greenlet: checks ``is_alive()`` at a growing interval (up to 50 ms)."""
    if thread is _threading.current_thread():
        raise RuntimeError("cannot join current thread")
    deadline = None if timeout is None else monotonic() + max(timeout, 0)
    delay = 0.0005
    while thread.is_alive():
        if deadline is not None:
            remaining = deadline - monotonic()
            if remaining <= 0:
                return
            delay = min(delay, remaining)
        sleep(delay)
        delay = min(delay * 2, 0.05)


def _make_main_thread_joinable(threading: Any) -> None:
    """Gives the main thread something greenlets can wait on in ``join()``, which ``threading._shutdown`` ends."""
    main = threading._main_thread
    if _PY313:
        handle = _green_thread._ThreadHandle()
        handle._bind(_green_thread._root_greenlet(), daemon=True)  # done when _shutdown marks it so, at exit
        main._handle = handle
        return
    native = main._tstate_lock
    if native is None:  # already shut down
        return
    # The interpreter releases the native lock only at the very end; joiners wait on this one, which
    # threading._shutdown releases. The native one stays held and is released by the interpreter as usual.
    green = LockType()
    green.acquire()
    main._tstate_lock = green
    with threading._shutdown_locks_lock:
        threading._shutdown_locks.discard(native)
        threading._shutdown_locks.add(green)


def _green_shutdown(threading: Any, original: Callable[[], None], main_adopted: bool) -> Callable[[], None]:
    """``threading._shutdown`` for greenlet threads: as the stdlib's, but it cannot hang on a deadlock."""

    def _shutdown() -> None:
        if not main_adopted:
            # The main thread kept its native identity; _shutdown recognises it by the current one.
            threading._main_thread._ident = threading.get_ident()
        try:
            original()
        except LoopExit:
            pass  # what is left can never finish (real threads would hang here forever): let the exit go on

    _shutdown.__doc__ = original.__doc__
    return _shutdown


def _remember_threads() -> None:
    _before_fork.clear()
    _before_fork.update(_threading._active)


def _after_fork_in_child() -> None:
    """Runs after the stdlib's own after-fork clean-up, in the child.

    The stdlib marks every thread but the forking one as gone. Their greenlets were copied with the process and
    may still run in the child: they are put back in ``_active`` (still marked stopped) so that their own exit
    finds them there. A dummy thread that forked becomes a real main thread.
    """
    threading = _threading
    current = get_ident()
    for ident, thread in _before_fork.items():
        if ident == current or isinstance(thread, threading._DummyThread):
            continue
        if _PY313 and isinstance(thread._handle, _green_thread._ThreadHandle):
            thread._handle._set_done()
        threading._active.setdefault(ident, thread)
    _before_fork.clear()
    if isinstance(threading._main_thread, threading._DummyThread):
        threading._main_thread = threading._MainThread()


def _convert_existing_locks(threading: Any, native_ident: int) -> None:
    """Hands locks the OS thread holds to the current greenlet's identity, and replaces concurrent.futures'
    global shutdown lock (see the module docstring)."""
    import gc
    import importlib._bootstrap as bootstrap

    green_ident = get_ident()
    module_lock = bootstrap._ModuleLock
    python_rlock = threading._PyRLock
    for obj in gc.get_objects():
        if isinstance(obj, module_lock):
            if obj.owner == native_ident:
                obj.owner = green_ident
        elif isinstance(obj, python_rlock) and obj._owner == native_ident:
            obj._owner = green_ident
    # Executor.submit holds this lock while Thread.start() waits for the new thread, a switch; its fork hooks
    # acquire and release the lock object they were given. A fresh lock lets both work: the hooks keep the old one.
    import concurrent.futures.thread as futures_thread

    if hasattr(futures_thread, "_global_shutdown_lock"):
        futures_thread._global_shutdown_lock = LockType()


def _patch_logging(logging: Any, patch_item: Callable[[Any, str, Any], None]) -> None:
    """The logging module's lock and its handlers' locks become greenlet RLocks."""
    patch_item(logging, "_lock", RLock())
    for ref in list(logging._handlerList):
        handler = ref()
        if handler is not None and getattr(handler, "lock", None) is not None:
            handler.lock = RLock()
