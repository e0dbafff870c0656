"""Cooperative helpers for raw file descriptors and child processes, as gevent's ``os`` module offers them.

`nb_read` and `nb_write` read and write a non-blocking fd (a pipe, a tty, a socket) parking only the current
greenlet while it is not ready; `make_nonblocking` prepares an fd for them. `close` closes an fd after telling the
loop, so greenlets waiting on it wake with OSError(EBADF) and a later fd with the same number starts clean.
`waitpid` parks only the calling greenlet until a child has something to report; `fork` is ``os.fork`` (the hub
re-creates its poller in every forked child by itself, see ``ferrovent.hub.reinit``). These three are the names of
:mod:`os` that monkey-patching replaces (``__implements__``).
"""

from __future__ import annotations

import os as _os
import time as _time
from typing import Any, Callable, Optional

from greenlet import getcurrent

from ferrovent.hub import fork, get_hub, get_hub_if_exists  # noqa: F401  (fork: os.fork's replacement)
from ferrovent.monkey import get_original

__implements__ = ["close", "fork", "waitpid"]
__extensions__ = ["make_nonblocking", "nb_read", "nb_write", "wait_child_exit"]
__all__ = __implements__ + __extensions__

_original_close = _os.close
_original_waitpid = get_original("os", "waitpid")
_MAX_POLL_DELAY = 0.05


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


def wait_child_exit(pid: int, timeout: Optional[float] = None) -> bool:
    """Parks the current greenlet until child ``pid`` has exited (it can then be reaped without blocking), or
    ``timeout`` passes: True if it has exited. Uses a pidfd where the OS has them; elsewhere polls
    ``waitpid(WNOHANG)`` at a growing interval, up to 50 ms, which reaps the child: the caller then finds its
    status with `waitpid` no more (check ``False`` answers with ``WNOHANG`` first, as `waitpid` below does)."""
    loop = get_hub().loop
    if hasattr(_os, "pidfd_open"):
        try:
            exit_fd = _os.pidfd_open(pid)
        except OSError:  # not a child we can watch (gone, or not ours): let waitpid say what is wrong
            return True
        try:
            return loop.wait_read(exit_fd, timeout)
        finally:
            close(exit_fd)
    deadline = None if timeout is None else _time.monotonic() + timeout
    delay = 0.0005
    while _original_waitpid(pid, _os.WNOHANG)[0] == 0:
        remaining = None if deadline is None else deadline - _time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        delay = min(delay * 2, _MAX_POLL_DELAY)
        loop.sleep(delay if remaining is None else min(delay, remaining))
    return True


def waitpid(pid: int, options: int) -> tuple[int, int]:
    """``os.waitpid(pid, options)``, parking only the calling greenlet until there is something to report.

    A wait for one child's exit parks on a pidfd (Linux). Waits the kernel cannot signal that way (any child, a
    process group, stop and continue reports, no pidfds on this OS) poll ``waitpid(WNOHANG)`` at a growing interval
    up to 50 ms. ``WNOHANG``, a call from the hub, and a call in a thread without a hub go straight to the OS.
    """
    hub = get_hub_if_exists()
    if options & _os.WNOHANG or hub is None or getcurrent() is hub:
        return _original_waitpid(pid, options)
    found = _original_waitpid(pid, options | _os.WNOHANG)
    if found[0]:
        return found
    if pid > 0 and options == 0 and hasattr(_os, "pidfd_open"):
        wait_child_exit(pid)
        return _original_waitpid(pid, options)
    delay = 0.0005
    while True:
        delay = min(delay * 2, _MAX_POLL_DELAY)
        hub.loop.sleep(delay)
        found = _original_waitpid(pid, options | _os.WNOHANG)
        if found[0]:
            return found
