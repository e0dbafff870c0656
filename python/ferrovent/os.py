"""Cooperative helpers for raw file descriptors and child processes, as gevent's ``os`` module offers them; every
other public name of ``os`` is here too, as the stdlib has it (``ferrovent.os.pipe`` is ``os.pipe``).

`nb_read` and `nb_write` read and write a non-blocking fd (a pipe, a tty, a socket) parking only the current
greenlet while it is not ready; `make_nonblocking` prepares an fd for them. `tp_read` and `tp_write` do the read or
write in the hub's thread pool instead, for fds that cannot be made non-blocking (regular files). `close` closes an
fd after telling the loop, so greenlets waiting on it wake with OSError(EBADF) and a later fd with the same number
starts clean. `waitpid` parks only the calling greenlet until a child has something to report. `fork` and
`fork_gevent` are ``os.fork``, `forkpty` and `forkpty_gevent` are ``os.forkpty`` (the hub re-creates its poller in
every forked child by itself, see ``ferrovent.hub.reinit``); `fork_and_watch` and `forkpty_and_watch` also watch the
child from the parent and call a callback when it exits, without reaping it. ``close``, ``fork``, ``forkpty`` and
``waitpid`` are the names monkey-patching replaces (``__implements__``).
"""

from __future__ import annotations

import os as _os
import time as _time
from os import path  # noqa: F401  (a name of os, as the rest)
from typing import Any, Callable, Optional

from greenlet import getcurrent
from greenlet import greenlet as _raw_greenlet

from ferrovent import hub as _hub
from ferrovent._stdlib import copy_public_names
from ferrovent.hub import get_hub, get_hub_if_exists
from ferrovent.monkey import get_original

__implements__ = ["close", "fork", "waitpid"]
__extensions__ = ["make_nonblocking", "nb_read", "nb_write", "tp_read", "tp_write", "wait_child_exit"]
if hasattr(_os, "fork"):
    __extensions__ += ["fork_gevent", "fork_and_watch"]
if hasattr(_os, "forkpty"):
    __implements__ += ["forkpty"]
    __extensions__ += ["forkpty_gevent", "forkpty_and_watch"]
__all__ = __implements__ + __extensions__
__imports__ = [name for name in copy_public_names(_os, globals()) if name not in __all__]

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
        wait_fd(fd, writable, persistent=False)  # a caller's fd: it may be closed behind our back
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


def tp_read(fd: int, n: int) -> bytes:
    """Reads up to ``n`` bytes from ``fd`` in the hub's thread pool: only this greenlet waits, whatever the fd."""
    return get_hub().threadpool.apply(_os.read, (fd, n))


def tp_write(fd: int, buf: Any) -> int:
    """Writes ``buf`` (or some of it) to ``fd`` in the hub's thread pool; returns the number of bytes written."""
    return get_hub().threadpool.apply(_os.write, (fd, buf))


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
        return _reap(pid, options)
    found = _reap(pid, options | _os.WNOHANG)
    if found[0]:
        return found
    if pid > 0 and options == 0 and hasattr(_os, "pidfd_open"):
        wait_child_exit(pid)
        return _reap(pid, options)
    delay = 0.0005
    while True:
        delay = min(delay * 2, _MAX_POLL_DELAY)
        hub.loop.sleep(delay)
        found = _reap(pid, options | _os.WNOHANG)
        if found[0]:
            return found


def _reap(pid: int, options: int) -> tuple[int, int]:
    """The OS's ``waitpid``; a child watched by `fork_and_watch` that it reaps has its callback called."""
    found = _original_waitpid(pid, options)
    if found[0] in _watched_children and (_os.WIFEXITED(found[1]) or _os.WIFSIGNALED(found[1])):
        _tell_watcher(found[0], found[1])
    return found


if hasattr(_os, "fork"):
    fork = fork_gevent = _hub.fork

    def fork_and_watch(
        callback: Optional[Callable[[Any], Any]] = None,
        loop: Any = None,
        ref: bool = False,
        fork: Callable[[], int] = fork_gevent,
    ) -> int:
        """``fork()``, and in the parent a watch on the child: when it exits, ``callback(child)`` runs in the hub
        of ``loop`` (default: this thread's), ``child`` having ``pid``, ``rpid`` and ``rstatus`` (its wait status).
        The child is not reaped: `waitpid` (or anyone) still gets its status. With ``ref`` false the watch does not
        keep the loop running. Returns what ``fork`` returned."""
        pid = fork()
        if pid:
            _watch_child(pid, callback, loop, ref)
        return pid


if hasattr(_os, "forkpty"):
    _original_forkpty = _os.forkpty

    def forkpty_gevent() -> tuple[int, int]:
        """``os.forkpty()``: ``(pid, master_fd)``; the child's hub is ready to use, as after `fork`."""
        return _original_forkpty()

    forkpty = forkpty_gevent

    def forkpty_and_watch(
        callback: Optional[Callable[[Any], Any]] = None,
        loop: Any = None,
        ref: bool = False,
        forkpty: Callable[[], tuple[int, int]] = forkpty_gevent,
    ) -> tuple[int, int]:
        """`fork_and_watch` with ``forkpty()``: returns ``(pid, master_fd)``; the fd is left blocking."""
        pid, master_fd = forkpty()
        if pid:
            _watch_child(pid, callback, loop, ref)
        return pid, master_fd


class _ExitedChild:
    """What a `fork_and_watch` callback is given (the attributes of gevent's child watcher)."""

    __slots__ = ("pid", "rpid", "rstatus")

    def __init__(self, pid: int, status: int) -> None:
        self.pid = self.rpid = pid
        self.rstatus = status

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} rstatus={self.rstatus}>"


def _exit_status(pid: int, options: int = 0) -> Optional[int]:
    """The wait status of the exited child ``pid``, leaving it unreaped; None if it has not exited (with WNOHANG)."""
    info = _os.waitid(_os.P_PID, pid, _os.WEXITED | _os.WNOWAIT | options)
    if info is None:
        return None
    if info.si_code == _os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    return info.si_status | (0x80 if info.si_code == _os.CLD_DUMPED else 0)


#: Children of `fork_and_watch` not exited yet: pid -> (callback, loop).
_watched_children: dict[int, tuple[Optional[Callable[[Any], Any]], Any]] = {}


def _tell_watcher(pid: int, status: int) -> None:
    """Child ``pid`` exited with ``status``: its `fork_and_watch` callback runs in the watching loop (once)."""
    callback, loop = _watched_children.pop(pid)
    if callback is not None:
        loop.run_callback(callback, _ExitedChild(pid, status))


def _wait_for_exit(pid: int, loop: Any, ref: bool) -> None:
    """Parks until child ``pid`` has exited or is no longer watched, reaping nothing."""
    exit_fd = None
    if hasattr(_os, "pidfd_open"):
        try:
            exit_fd = _os.pidfd_open(pid)
        except OSError:  # gone already, or not a child we can watch: its status says which
            return
    if exit_fd is not None:
        try:
            loop.wait_fd(exit_fd, False, ref=ref)
        finally:
            close(exit_fd)
        return
    delay = 0.0005
    while pid in _watched_children and _exit_status(pid, _os.WNOHANG) is None:
        delay = min(delay * 2, _MAX_POLL_DELAY)
        loop.sleep(delay, ref=ref)


def _watch_child(pid: int, callback: Optional[Callable[[Any], Any]], loop: Any, ref: bool) -> None:
    """Starts a greenlet in ``loop``'s hub that waits for child ``pid`` to exit, then has ``callback`` called.

    The child is left unreaped: its status is read with ``WNOWAIT``. If `waitpid` reaps it first, `waitpid` has
    the callback called; if something else reaps it first, the status is lost and the callback is not called.
    """
    loop = loop or get_hub().loop
    _watched_children[pid] = (callback, loop)

    def watch() -> None:
        try:
            _wait_for_exit(pid, loop, ref)
            if pid not in _watched_children:
                return  # waitpid reaped it, and saw to the callback
            status = _exit_status(pid)
        except ChildProcessError:  # reaped by someone else: its status is gone
            _watched_children.pop(pid, None)
            return
        _tell_watcher(pid, status)

    loop.start(_raw_greenlet(watch, loop.hub))
