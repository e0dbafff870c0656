"""Cooperative helpers for raw file descriptors, as gevent's ``os`` module offers them.

`nb_read` and `nb_write` read and write a non-blocking fd (a pipe, a tty, a socket) parking only the current
greenlet while it is not ready; `make_nonblocking` prepares an fd for them. `close` closes an fd after telling the
loop, so greenlets waiting on it wake with OSError(EBADF) and a later fd with the same number starts clean; it is
the one name of :mod:`os` that monkey-patching replaces (``__implements__``). Forking needs nothing here: the hub
re-creates its poller in every forked child by itself (see ``ferrovent.hub.reinit``).
"""

from __future__ import annotations

import os as _os
from typing import Any, Callable

from ferrovent.hub import get_hub, get_hub_if_exists

__implements__ = ["close"]
__extensions__ = ["make_nonblocking", "nb_read", "nb_write"]
__all__ = __implements__ + __extensions__

_original_close = _os.close


def _forget_fd(fd: int) -> None:
    """Tells this thread's loop that ``fd`` is about to be closed (or handed away): its waiters get EBADF."""
    if fd >= 0:
        hub = get_hub_if_exists()
        if hub is not None:
            hub.loop.closing_fd(fd)


def close(fd: int) -> None:
    """``os.close(fd)``, after waking the greenlets waiting on ``fd`` with OSError(EBADF)."""
    _forget_fd(fd)
    _original_close(fd)


def make_nonblocking(fd: int) -> bool:
    """Puts ``fd`` in non-blocking mode; True if it was blocking (and so was changed), False if it already was."""
    if not _os.get_blocking(fd):
        return False
    _os.set_blocking(fd, False)
    return True


def _retrying(op: Callable[[int, Any], Any], fd: int, arg: Any, writable: bool) -> Any:
    """``op(fd, arg)``; each time it fails with EAGAIN, waits for the fd's next readiness and tries again."""
    try:
        return op(fd, arg)
    except BlockingIOError:
        pass
    wait_fd = get_hub().loop.wait_fd
    while True:
        wait_fd(fd, writable)
        try:
            return op(fd, arg)
        except BlockingIOError:
            pass


def nb_read(fd: int, n: int) -> bytes:
    """Reads up to ``n`` bytes from the non-blocking ``fd``, parking only this greenlet until some are there.

    Returns b"" at end of file. On a blocking fd it would block the whole thread: see `make_nonblocking`.
    """
    return _retrying(_os.read, fd, n, False)


def nb_write(fd: int, buf: Any) -> int:
    """Writes some of ``buf`` to the non-blocking ``fd``, parking only this greenlet until it has room.

    Returns the number of bytes written. On a blocking fd it would block the whole thread: see `make_nonblocking`.
    """
    return _retrying(_os.write, fd, buf, True)
