"""A child process for the tests of child watchers; imports neither gevent nor ferrovent (both sides use it)."""

from __future__ import annotations

import os
from typing import Callable


def gated_child(exit_code: int) -> tuple[int, Callable[[], None]]:
    """Forks a child that exits with ``exit_code`` once released: ``(pid, release)``. libev drops the exits of
    children that end before a watcher is started, so the tests start theirs first."""
    gate_r, gate_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(gate_r, 1)
        os._exit(exit_code)
    os.close(gate_r)

    def release() -> None:
        os.write(gate_w, b"x")
        os.close(gate_w)

    return pid, release
