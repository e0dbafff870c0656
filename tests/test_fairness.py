"""The loop's fairness bound (rust/run.rs), counted in loop iterations rather than wall time.

Each iteration runs at least 50 backlog entries (more within the switch interval), then everything the previous
poll brought, then more backlog while the interval lasts. So a greenlet with ``k`` entries ahead of it starts within
about ``k / 50`` iterations however much I/O keeps arriving, and an I/O wake-up waits behind at most one switch
interval of older backlog.
"""

from __future__ import annotations

import subprocess
import sys
import time

import ferrovent
import pytest
from ferrovent import socket as green_socket

pytestmark = pytest.mark.timeout(60)

STREAMS = 60
WORKERS = 200
PER_DRAIN = 50  # the fewest backlog entries a drain runs (rust/run.rs, CLOCK_CHECK_EVERY)

# Writes one byte to each fd it is given every millisecond, for at most 30 s (the test kills it sooner).
WRITER = """
import os, sys, time
fds = [int(fd) for fd in sys.argv[1:]]
end = time.monotonic() + 30
while time.monotonic() < end:
    for fd in fds:
        try:
            os.write(fd, b"x")
        except BlockingIOError:
            pass
    time.sleep(0.001)
"""


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_spawned_greenlet_starts_within_the_bound_under_a_stream_of_io_with_cpu_work():
    loop = ferrovent.get_hub().loop
    pairs = [green_socket.socketpair() for _ in range(STREAMS)]
    for _, far in pairs:
        far.setblocking(False)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, *(str(far.fileno()) for _, far in pairs)],
        pass_fds=[far.fileno() for _, far in pairs],
    )
    wakes = [0]
    stop = [False]

    def stream(near) -> None:
        while not stop[0]:
            near.recv(65536)
            wakes[0] += 1
            _burn(0.0002)  # 60 streams x 0.2 ms: the wakes of one poll outlast the switch interval

    started_at: dict[int, int] = {}

    def worker(index: int) -> None:
        started_at[index] = loop.iteration
        _burn(0.0002)  # 50 workers outlast the switch interval too: a drain stops at each 50

    streams = [ferrovent.spawn(stream, near) for near, _ in pairs]
    try:
        deadline = time.monotonic() + 20
        while wakes[0] < 10 * STREAMS and time.monotonic() < deadline:
            ferrovent.sleep(0.01)
        assert wakes[0] >= 10 * STREAMS, "the writer's stream never got going"

        wakes_before = wakes[0]
        spawned_at = loop.iteration
        backlog_ahead = loop.ready_count
        workers = [ferrovent.spawn(worker, index) for index in range(WORKERS)]
        ferrovent.joinall(workers, timeout=20)
        assert len(started_at) == WORKERS
        assert wakes[0] > wakes_before, "no I/O arrived while the workers waited to start"

        for index in range(WORKERS):
            bound = (backlog_ahead + index) // PER_DRAIN + 2
            waited = started_at[index] - spawned_at
            assert waited <= bound, f"worker {index} waited {waited} iterations (bound {bound})"
    finally:
        stop[0] = True
        writer.kill()
        writer.wait()
        ferrovent.killall(streams)
        for near, far in pairs:
            near.close()
            far.close()


def test_a_wake_up_runs_after_one_switch_interval_of_older_backlog_and_before_the_rest():
    # 200 workers of 0.2 ms each: every drain's backlog step is cut after 50 entries (10 ms > the 5 ms switch
    # interval). The first worker makes a socket readable; its reader's wake-up arrives with the next poll and runs
    # in the next drain after that drain's backlog step, ahead of the workers still waiting: older backlog first,
    # but only one switch interval of it.
    loop = ferrovent.get_hub().loop
    near, far = green_socket.socketpair()
    started_in: list[int] = []  # the iteration each worker started in, in start order
    woke: list[tuple[int, int]] = []  # (iteration, workers started before it)

    def reader() -> None:
        near.recv(1)
        woke.append((loop.iteration, len(started_in)))

    def worker(index: int) -> None:
        started_in.append(loop.iteration)
        if index == 0:
            far.send(b"x")
        _burn(0.0002)

    try:
        reading = ferrovent.spawn(reader)
        ferrovent.sleep(0)  # the reader is parked on its socket before the workers exist
        workers = [ferrovent.spawn(worker, index) for index in range(WORKERS)]
        ferrovent.joinall([reading, *workers], timeout=20)
        assert len(started_in) == WORKERS
        [(woke_in, workers_before)] = woke
        assert woke_in == started_in[0] + 1, "the wake-up did not run in the drain after its poll"
        in_that_drain = started_in.count(woke_in)
        assert in_that_drain >= PER_DRAIN
        assert workers_before == started_in.index(woke_in) + in_that_drain, "older backlog did not run first"
        assert workers_before < WORKERS, "the wake-up waited for the whole backlog"
    finally:
        near.close()
        far.close()
