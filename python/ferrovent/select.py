"""Cooperative ``select()`` and ``poll()``: the stdlib's answers, waited for in the loop instead of the kernel.

Every public name of ``select`` is here; ``select`` and ``poll`` are replaced (``epoll``, ``kqueue`` and
``devpoll`` are the stdlib's and would block: monkey-patching with ``aggressive`` removes them).

Both report level truth, exactly what the stdlib would: each call first asks the kernel with a zero timeout (an fd
that is already ready is reported at once, and the call yields once to the other greenlets, as gevent's does);
if nothing is ready it parks the greenlet until one of the fds becomes ready in the loop (or the timeout passes),
then asks the kernel again with a zero timeout and returns that answer. A wake-up that the kernel does not confirm
(another greenlet consumed the data) just waits again, for what is left of the timeout. Timeouts are in seconds
for ``select`` and in milliseconds for ``poll``, None (or, for poll, a negative value) meaning forever.

Exceptional conditions (``xlist``, ``POLLPRI``) are reported when the kernel reports them at one of those checks;
waiting is done for readability and writability, which is what the loop watches.
"""

from __future__ import annotations

import select as __select__
from collections.abc import Iterable, Sequence
from functools import partial
from operator import index as _index
from time import monotonic as _monotonic
from typing import Any, Callable, Optional

from greenlet import getcurrent, greenlet

from ferrovent._core import sleep as _sleep
from ferrovent._stdlib import copy_public_names
from ferrovent.hub import get_hub

copy_public_names(__select__, globals())

_original_select = __select__.select
_original_poll = getattr(__select__, "poll", None)
# What the loop can wait for as a level: data to read, room to write ("normal" data, as POLLIN/POLLOUT mean).
_READ_MASK = __select__.POLLIN | __select__.POLLRDNORM
_WRITE_MASK = __select__.POLLOUT | __select__.POLLWRNORM


def _wait_any(waits: Sequence[tuple[int, bool, bool]], timeout: Optional[float], hub: Any = None) -> bool:
    """Parks until one of ``waits`` is ready; False if ``timeout`` passed first.

    Each wait is ``(fd, writable, level)``. A level wait returns at once if the fd is ready now; the others wait
    for the fd's next readiness edge (for conditions the loop cannot name, such as POLLPRI or a hang-up alone,
    where waiting for a level the caller does not report would spin). The current greenlet waits on the first
    fd itself; each other fd gets a small helper greenlet that waits on it and wakes the caller. Whatever ends
    the wait (an fd, the timeout, an exception thrown in), the helpers still waiting are woken and exit. The wait is
    in ``hub``'s loop (default: the calling thread's hub).
    """
    hub = hub or get_hub()
    loop = hub.loop
    if len(waits) == 1:
        return _wait_one(loop, *waits[0], timeout)
    waiting = [True]
    caller = getcurrent()

    def watch(fd: int, writable: bool, level: bool) -> None:
        if not waiting[0]:
            return
        try:
            _wait_one(loop, fd, writable, level, None)
        except OSError:  # closed under us: the caller's re-check reports it
            pass
        if waiting[0]:
            waiting[0] = False
            loop.wake(caller)

    helpers = [greenlet(partial(watch, *wait), hub) for wait in waits[1:]]
    for helper in helpers:
        loop.start(helper)
    try:
        return _wait_one(loop, *waits[0], timeout)
    finally:
        waiting[0] = False
        for helper in helpers:
            if helper:  # started and not finished: parked on its fd
                loop.wake(helper)


def _wait_one(loop: Any, fd: int, writable: bool, level: bool, timeout: Optional[float]) -> bool:
    if not level:
        return loop.wait_fd(fd, writable, timeout, persistent=False)  # a caller's fd: it may close it behind our back
    return (loop.wait_write if writable else loop.wait_read)(fd, timeout)


def _level_wait(
    check: Callable[[], Any], waits: Sequence[tuple[int, bool, bool]], timeout: Optional[float], hub: Any = None
) -> Any:
    """Returns ``check()``'s first non-empty answer, waiting on ``waits`` (as `_wait_any`'s; none: sleeping) in
    between, in ``hub``'s loop; after ``timeout`` returns its last (empty) answer. ``timeout`` None waits forever.

    A wake-up that ``check()`` does not confirm means the loop's record of an fd's level is stale (another greenlet
    took the data without reading to EAGAIN, or something besides the kernel answers ``check()``): from then on
    the waits are for the next edge, so that the call parks instead of spinning on that record until its timeout.
    A call that ends at its timeout has let the other greenlets run at least once, as gevent's (which waits in the
    hub): even when each wait returned at once, on a level the loop had that ``check()`` then did not confirm.
    """
    ready = check()
    if ready or (timeout is not None and timeout <= 0):
        _sleep(0)
        return ready
    deadline = None if timeout is None else _monotonic() + timeout
    while True:
        try:
            woke = _wait_any(waits, timeout, hub) if waits else _park(timeout)
        except OSError:  # an fd was closed while we waited: the check reports what the stdlib would
            woke = True
        ready = check()
        if ready or not woke:
            return ready
        waits = [(fd, writable, False) for fd, writable, _ in waits]
        if deadline is not None:
            timeout = deadline - _monotonic()
            if timeout <= 0:
                _sleep(0)  # the wait may have returned without parking (a level the loop had): yield at least once
                return ready


def _park(timeout: Optional[float]) -> bool:
    """A wait on nothing: sleeps ``timeout`` (None: until the loop has nothing else to do, LoopExit)."""
    get_hub().loop.park(timeout)
    return False


def _fileno(obj: Any) -> int:
    """The fd of an int or of an object with ``fileno()``, with the stdlib's errors (negative values are left to the
    stdlib call that gets the fd)."""
    if isinstance(obj, int):
        return obj
    try:
        fileno = obj.fileno
    except AttributeError:
        raise TypeError("argument must be an int, or have a fileno() method.") from None
    fd = fileno()
    if not isinstance(fd, int):
        raise TypeError("fileno() returned a non-integer")
    return fd


def _with_fds(objects: Iterable[Any]) -> list[tuple[Any, int]]:
    """``(object, fd)`` for each object, read as the stdlib's select reads its arguments: ``fileno()`` once per
    object, by index up to the sequence's current length (a ``fileno()`` may shrink the list)."""
    if not isinstance(objects, (list, tuple)):
        try:
            objects = list(objects)
        except TypeError:
            raise TypeError("arguments 1-3 must be sequences") from None
    pairs = []
    i = 0
    while i < len(objects):
        obj = objects[i]
        pairs.append((obj, _fileno(obj)))
        i += 1
    return pairs


def _checked_timeout(timeout: Any) -> Optional[float]:
    """``timeout`` as a number (or None), with the stdlib's errors for anything else or a negative value."""
    if timeout is None:
        return None
    if not isinstance(timeout, float):
        try:
            timeout = _index(timeout)
        except TypeError:
            raise TypeError("timeout must be a float or None") from None
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        raise ValueError("timeout must be non-negative")
    return timeout


def select(rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any], timeout: Optional[float] = None) -> tuple:
    """``select.select``, blocking only the current greenlet; returns what the stdlib would."""
    timeout = _checked_timeout(timeout)
    readers, writers, exceptional = _with_fds(rlist), _with_fds(wlist), _with_fds(xlist)
    fds = ([fd for _, fd in readers], [fd for _, fd in writers], [fd for _, fd in exceptional])

    def check() -> Optional[tuple]:
        ready = _original_select(*fds, 0)
        if not (ready[0] or ready[1] or ready[2]):
            return None
        return tuple(
            [obj for obj, fd in pairs if fd in ready_fds]
            for pairs, ready_fds in zip((readers, writers, exceptional), map(set, ready))
        )

    waits = [(fd, False, True) for fd in fds[0]] + [(fd, True, True) for fd in fds[1]]
    waits += [(fd, False, False) for fd in fds[2]]  # out-of-band data or errors: the next edge
    return _level_wait(check, waits, timeout) or ([], [], [])


class poll:
    """``select.poll``, whose ``poll()`` blocks only the current greenlet and returns what the stdlib's would."""

    def __init__(self) -> None:
        self._poll = _original_poll()
        self._masks: dict[int, int] = {}

    def register(self, fd: Any, eventmask: int = __select__.POLLIN | __select__.POLLPRI | __select__.POLLOUT) -> None:
        """Watches ``fd`` (an int or an object with ``fileno()``) for ``eventmask``."""
        fd = _fileno(fd)
        self._poll.register(fd, eventmask)
        self._masks[fd] = eventmask

    def modify(self, fd: Any, eventmask: int) -> None:
        """Changes the events watched on a registered ``fd``."""
        fd = _fileno(fd)
        self._poll.modify(fd, eventmask)
        self._masks[fd] = eventmask

    def unregister(self, fd: Any) -> None:
        """Stops watching ``fd``; KeyError if it was not registered."""
        fd = _fileno(fd)
        self._poll.unregister(fd)
        del self._masks[fd]

    def poll(self, timeout: Optional[float] = None) -> list[tuple[int, int]]:
        """The ready ``(fd, events)`` pairs; waits up to ``timeout`` milliseconds (None or negative: forever)."""
        if timeout is not None:
            timeout = None if timeout < 0 else timeout / 1000.0
        waits = []
        for fd, mask in self._masks.items():
            if mask & _READ_MASK:
                waits.append((fd, False, True))
            if mask & _WRITE_MASK:
                waits.append((fd, True, True))
            if not mask & (_READ_MASK | _WRITE_MASK):  # only POLLPRI, errors or hang-ups: the next edge
                waits.append((fd, False, False))
        return _level_wait(partial(self._poll.poll, 0), waits, timeout)


__implements__ = ["select"] + (["poll"] if _original_poll is not None else [])
if _original_poll is None:
    del poll
__all__ = sorted({*getattr(__select__, "__all__", ()), "error", *__implements__})
