"""Waiting for child processes without blocking the loop: the ``os.waitpid`` that ``monkey.patch_os`` installs.

A wait for one child's exit parks the greenlet on a pidfd (Linux), which becomes readable when the child exits.
Waits the kernel cannot signal that way (any child, a process group, stop and continue reports, or no pidfd on
this OS) poll ``waitpid`` with ``WNOHANG`` at a growing interval, up to 50 ms. A ``WNOHANG`` call, a call from the
hub, and a call in an OS thread without a hub (where no other greenlet could run anyway) go straight to the OS.
"""

from __future__ import annotations

import os

from greenlet import getcurrent

from ferrovent.hub import get_hub_if_exists
from ferrovent.monkey import get_original
from ferrovent.os import close

__implements__ = ["waitpid"]
__all__ = ["waitpid"]

_os_waitpid = get_original("os", "waitpid")
_MAX_POLL_DELAY = 0.05


def waitpid(pid: int, options: int) -> tuple[int, int]:
    """``os.waitpid(pid, options)``, parking only the calling greenlet until there is something to report."""
    if options & os.WNOHANG:
        return _os_waitpid(pid, options)
    hub = get_hub_if_exists()
    if hub is None or getcurrent() is hub:
        return _os_waitpid(pid, options)
    loop = hub.loop
    if pid > 0 and options == 0 and hasattr(os, "pidfd_open"):
        found = _os_waitpid(pid, os.WNOHANG)
        if found[0]:
            return found
        try:
            exit_fd = os.pidfd_open(pid)
        except OSError:  # not a process we can watch: let waitpid say what is wrong
            return _os_waitpid(pid, options)
        try:
            loop.wait_read(exit_fd)
        finally:
            close(exit_fd)
        return _os_waitpid(pid, options)
    delay = 0.0005
    while True:
        found = _os_waitpid(pid, options | os.WNOHANG)
        if found[0]:
            return found
        delay = min(delay * 2, _MAX_POLL_DELAY)
        loop.sleep(delay)
