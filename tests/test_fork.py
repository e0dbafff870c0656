"""Fork: the child gets a fresh loop of its own; the parent's is untouched."""

from __future__ import annotations

import multiprocessing
import os
import time

import ferrovent
import pytest

pytestmark = pytest.mark.timeout(30)


def _greenlets_and_fds_work() -> bool:
    """Runs greenlets, timers and an fd wait on the current loop; True if all behaved."""
    order = []
    greenlets = [ferrovent.spawn(lambda i=i: (ferrovent.sleep(0.01 * i), order.append(i))) for i in (3, 1, 2)]
    ferrovent.joinall(greenlets, timeout=5)
    read_end, write_end = os.pipe()
    try:
        writer = ferrovent.spawn_later(0.02, os.write, write_end, b"x")
        ready = ferrovent.get_hub().loop.wait_read(read_end, timeout=5)
        writer.join()
        return order == [1, 2, 3] and ready and os.read(read_end, 1) == b"x"
    finally:
        os.close(read_end)
        os.close(write_end)


def _child_exit_code() -> int:
    return 0 if _greenlets_and_fds_work() else 1


def test_forked_child_runs_greenlets_on_its_own_loop_and_parent_is_unaffected():
    parent_loop = ferrovent.get_hub().loop
    ticks = []
    ticker = ferrovent.spawn(lambda: [ticks.append(ferrovent.sleep(0.01)) for _ in range(20)])
    ferrovent.sleep(0.02)
    pid = ferrovent.fork()
    if pid == 0:
        code = 2
        try:
            code = _child_exit_code()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.monotonic() < deadline, "the child did not finish"
        ferrovent.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    ticker.join(timeout=5)
    assert len(ticks) == 20, "the parent's greenlets kept running through the fork"
    assert ferrovent.get_hub().loop is parent_loop
    assert _greenlets_and_fds_work()


def _mp_target(queue):
    queue.put(_greenlets_and_fds_work())


def test_multiprocessing_fork_start_method():
    ferrovent.sleep(0)  # the hub exists before the fork
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue()
    process = context.Process(target=_mp_target, args=(queue,))
    process.start()
    process.join(20)
    assert process.exitcode == 0
    assert queue.get() is True
