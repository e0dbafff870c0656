"""Semaphores and locks for greenlets: Semaphore, BoundedSemaphore, DummySemaphore, Lock and RLock.

Waiters acquire in the order they began waiting. As in gevent, a release does not hand the unit to a waiter: it
wakes the first one, and a greenlet that acquires before that waiter runs may take the unit, in which case the
waiter goes back to the front of the line.

``Lock`` and ``RLock`` have the exact interface of ``_thread`` locks (``acquire(blocking=True, timeout=-1)``, the
``_is_owned``/``_release_save``/``_acquire_restore`` hooks ``threading.Condition`` uses), so the monkey-patched
``threading`` builds on them. An OS thread that is not the owning hub's thread (a thread-pool worker, say) can use
them too: when it has to block, it blocks the thread on a native lock until the owning hub grants it the unit.
"""

from __future__ import annotations

import sys
import threading
from _thread import TIMEOUT_MAX, allocate_lock, get_ident
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional

from greenlet import getcurrent

from ferrovent._linkable import Linkable
from ferrovent.hub import get_hub_if_exists, main_greenlet_of
from ferrovent.timeout import Timeout, wait_bounded_by

if TYPE_CHECKING:
    from ferrovent.hub import Hub

__all__ = ["Semaphore", "BoundedSemaphore", "DummySemaphore", "Lock", "RLock"]

# Taken when ferrovent is first imported, before any monkey-patching. A thread with no hub that must block on a
# semaphore gets a hub (and gevent's LoopExit on a deadlock) in the main thread; any other thread blocks natively.
_MAIN_THREAD_IDENT = threading.main_thread().ident


# The main thread's main greenlet, which runs the interpreter's finalization (a stand-in object if ferrovent was first
# imported in another thread).
_MAIN_GREENLET = main_greenlet_of(getcurrent()) if get_ident() == _MAIN_THREAD_IDENT else object()


def _current() -> Any:
    """The current greenlet, also during interpreter finalization: greenlet's ``getcurrent()`` refuses to answer
    then, yet a lock may still be used (``logging`` removing a collected handler, say), and only the main greenlet
    can be running it."""
    try:
        return getcurrent()
    except RuntimeError:
        if not sys.is_finalizing():
            raise
        return _MAIN_GREENLET


class _ThreadGrant:
    """A place in a semaphore's line for an OS thread that has no part in the owning hub (a thread-pool worker).

    The thread blocks on a native lock. When the grant's turn comes, it runs in the dispatching thread, takes a
    unit on the thread's behalf and releases the native lock. The thread's own timeout and the grant decide the
    outcome under ``guard``, so a unit is never both granted and abandoned.
    """

    __slots__ = ("semaphore", "native", "guard", "state")

    def __init__(self, semaphore: Semaphore) -> None:
        self.semaphore = semaphore
        self.native = allocate_lock()
        self.native.acquire()
        self.guard = allocate_lock()
        self.state = "waiting"

    def __call__(self, _semaphore: Semaphore) -> None:
        semaphore = self.semaphore
        semaphore._woken -= 1
        with self.guard:
            waiting = self.state == "waiting"
            if waiting and semaphore.counter > 0:
                semaphore.counter -= 1
                self.state = "granted"
        if self.state == "granted":
            self.native.release()
        elif waiting:  # the unit was taken meanwhile: stay first in line
            semaphore._links.appendleft(self)
        elif semaphore.counter > 0:  # the thread gave up: its turn goes to the next in line
            semaphore._notify()

    def wait(self, timeout: Optional[float]) -> bool:
        """Blocks the calling OS thread until granted (True) or ``timeout`` passes (False)."""
        self.native.acquire(True, -1 if timeout is None else max(0.0, timeout))
        with self.guard:
            if self.state == "granted":
                return True
            self.state = "cancelled"
        # If already dispatched, its run sees the cancellation and passes the turn on.
        self.semaphore._links.remove(self)
        return False


class Semaphore(Linkable):
    """A counter of available units: ``acquire`` takes one (waiting while there are none), ``release`` returns one.

    Any greenlet may release; nothing tracks who acquired. ``Semaphore(0)`` starts with nothing to take.
    """

    __slots__ = ("counter",)

    def __init__(self, value: int = 1, hub: Hub | None = None) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        Linkable.__init__(self, hub)
        self.counter = value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))} counter={self.counter} _links[{len(self._links)}]>"

    def locked(self) -> bool:
        """True if ``acquire`` would block."""
        return self.counter <= 0

    def ready(self) -> bool:
        """True if ``acquire`` would not block."""
        return self.counter > 0

    def release(self) -> int:
        """Returns a unit and wakes the first waiter, if any. Returns the new counter."""
        self.counter += 1
        if self._must_notify():
            self._notify()
        return self.counter

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Takes a unit: True once taken; False if ``blocking`` is false and none is free, or ``timeout`` passed."""
        if self.counter > 0:
            self.counter -= 1
            return True
        if not blocking:
            return False
        return self._acquire_waiting_until(timeout)

    def _acquire_waiting_until(self, timeout) -> bool:
        """``_acquire_waiting`` for a timeout that may also be a Timeout instance (False if it fires)."""
        if isinstance(timeout, Timeout):
            return wait_bounded_by(timeout, self._acquire_waiting_forever, False)
        return self._acquire_waiting(timeout)

    def _acquire_waiting_forever(self) -> bool:
        return self._acquire_waiting(None)

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def wait(self, timeout: Optional[float] = None) -> int:
        """Waits until a unit is free (without taking it) or ``timeout`` passes; returns the counter."""
        if self.counter <= 0 and self._park_until(timeout):
            self._lost_wake()  # we take nothing: the unit we were woken for goes to the next in line
        return self.counter

    def _dispatch(self) -> None:
        """Wakes waiters from the front while there are units for them; each woken one counts in ``_woken``."""
        links = self._links
        loop = self._loop
        while links and self.counter > self._woken:
            if links.wake_one(loop, self._schedule_link):
                self._woken += 1

    def _schedule_link(self, link) -> None:
        if type(link) is _ThreadGrant:
            self._woken += 1  # it takes a unit, like a woken greenlet
        Linkable._schedule_link(self, link)

    def _ready_before_parking(self) -> bool:
        self._woken += 1  # as if dispatched: the caller counts every successful park as one woken waiter
        return True

    def _lost_wake(self) -> None:
        """A woken waiter left without taking its unit: the next in line may have it."""
        self._woken -= 1
        if self.counter > 0:
            self._notify()

    def _acquire_waiting(self, timeout: Optional[float]) -> bool:
        hub = get_hub_if_exists()
        owner = self.hub
        if hub is None:
            if owner is not None or get_ident() != _MAIN_THREAD_IDENT:
                return self._acquire_from_other_thread(timeout)
        elif owner is not None and owner is not hub and (self._links or self._woken):
            return self._acquire_from_other_thread(timeout)
        deadline = None if timeout is None else monotonic() + timeout
        front = False
        while self._park(timeout, front):
            self._woken -= 1
            if self.counter > 0:
                self.counter -= 1
                return True
            # Someone who never waited took the unit first: back to the front of the line.
            front = True
            if deadline is not None:
                timeout = deadline - monotonic()
                if timeout <= 0:
                    return False
        return False

    def _acquire_from_other_thread(self, timeout: Optional[float]) -> bool:
        """Waits on a native lock until the hub that owns this semaphore grants us a unit."""
        grant = _ThreadGrant(self)
        self._links.append(grant)
        if self.counter > 0:
            self._notify()
        return grant.wait(timeout)


class BoundedSemaphore(Semaphore):
    """A Semaphore that raises ValueError if released more times than it was acquired."""

    __slots__ = ("_initial_value",)

    def __init__(self, value: int = 1, hub: Hub | None = None) -> None:
        Semaphore.__init__(self, value, hub)
        self._initial_value = value

    def release(self) -> int:
        """Like Semaphore.release, but over-releasing raises ValueError."""
        if self.counter >= self._initial_value:
            raise ValueError("Semaphore released too many times")
        return Semaphore.release(self)

    def _at_fork_reinit(self) -> None:
        Semaphore._at_fork_reinit(self)
        self.counter = self._initial_value


class DummySemaphore:
    """The Semaphore interface with unlimited units: nothing ever blocks. Stands in where no limit is wanted."""

    def __init__(self, value: int | None = None) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def locked(self) -> bool:
        """Always False: there is always a unit to take."""
        return False

    def ready(self) -> bool:
        """Always True."""
        return True

    def release(self) -> None:
        """Does nothing."""

    def rawlink(self, callback: Callable[[Any], object]) -> None:
        """Does nothing: the callback would never be needed, the semaphore never being locked."""

    def unlink(self, callback: Callable[[Any], object]) -> None:
        """Does nothing."""

    def wait(self, timeout: float | None = None) -> int:
        """Returns 1 at once (a unit is always there)."""
        return 1

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Returns True at once."""
        return True

    def __enter__(self) -> None:
        pass

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        pass


def _thread_timeout(blocking: bool, timeout: Optional[float]) -> Optional[float]:
    """Checks ``_thread``-style acquire arguments; returns the wait in seconds (None: forever, 0: do not wait), or
    the Timeout instance given as ``timeout``."""
    if timeout is None or timeout == -1:
        return None if blocking else 0
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if isinstance(timeout, Timeout):
        return timeout
    if timeout < 0:
        raise ValueError("timeout value must be positive")
    if timeout > TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    return timeout


class Lock(BoundedSemaphore):
    """A mutex with the interface of ``_thread.LockType``: any greenlet (or thread) may release it.

    ``acquire(blocking=True, timeout=-1)``: -1 or None waits forever; a zero timeout only tries.
    """

    __slots__ = ()

    def __init__(self) -> None:
        BoundedSemaphore.__init__(self, 1)

    def __repr__(self) -> str:
        state = "locked" if self.counter <= 0 else "unlocked"
        return f"<{state} {type(self).__module__}.{type(self).__qualname__} object at {hex(id(self))}>"

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Takes the lock: True once taken, False if not free and ``blocking`` is false or ``timeout`` passed."""
        if timeout == -1 and self.counter > 0:  # the usual call: nothing to check
            self.counter -= 1
            return True
        wait = _thread_timeout(blocking, timeout)
        if self.counter > 0:
            self.counter -= 1
            return True
        if wait == 0:
            return False
        return self._acquire_waiting_until(wait)

    def release(self) -> None:
        """Unlocks it; RuntimeError if it is not locked."""
        if self.counter > 0:
            raise RuntimeError("release unlocked lock")
        Semaphore.release(self)

    def __enter__(self) -> bool:
        return self.acquire()

    acquire_lock = acquire
    release_lock = release
    locked_lock = Semaphore.locked


class RLock:
    """A lock the greenlet holding it may acquire again; each acquire needs a matching release.

    Owned per greenlet, with the interface of ``threading.RLock`` (including what ``threading.Condition`` uses).
    """

    __slots__ = ("_block", "_owner", "_count", "__weakref__")

    def __init__(self, hub: Hub | None = None) -> None:
        self._block = Semaphore(1, hub)
        self._owner = None
        self._count = 0

    def __repr__(self) -> str:
        state = "locked" if self._count else "unlocked"
        return (
            f"<{state} {type(self).__module__}.{type(self).__qualname__} object owner={self._owner!r} "
            f"count={self._count} at {hex(id(self))}>"
        )

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Takes the lock, or counts one more level if the current greenlet holds it already."""
        wait = _thread_timeout(blocking, timeout)
        try:
            me = getcurrent()
        except RuntimeError:
            me = _current()  # the interpreter is finalizing
        if self._owner is me:
            self._count += 1
            return True
        block = self._block
        if block.counter > 0:
            block.counter -= 1
        elif wait == 0 or not block._acquire_waiting_until(wait):
            return False
        self._owner = me
        self._count = 1
        return True

    __enter__ = acquire

    def release(self) -> None:
        """Drops one level; the last one unlocks it. RuntimeError if the current greenlet does not hold it."""
        if self._owner is not _current():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def locked(self) -> bool:
        """True while some greenlet holds it."""
        return self._count > 0

    def _is_owned(self) -> bool:
        return self._owner is _current()

    def _recursion_count(self) -> int:
        return self._count if self._owner is _current() else 0

    def _release_save(self) -> tuple:
        """Releases every level at once (Condition.wait); returns what ``_acquire_restore`` needs."""
        if not self._count:
            raise RuntimeError("cannot release un-acquired lock")
        saved = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._block.release()
        return saved

    def _acquire_restore(self, saved: tuple) -> None:
        self._block.acquire()
        self._count, self._owner = saved

    def _at_fork_reinit(self) -> None:
        self._block = Semaphore(1)
        self._owner = None
        self._count = 0
