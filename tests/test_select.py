"""ferrovent.select: select() and poll() report what the stdlib's would, and block only the calling greenlet."""

from __future__ import annotations

import os
import select as stdlib_select
import time

import ferrovent
import pytest
from ferrovent import select, socket

from tests.io_helpers import fd_waits

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_names():
    public = [name for name in dir(stdlib_select) if not name.startswith("_")]
    assert [name for name in public if not hasattr(select, name)] == []
    assert select.__implements__ == ["select", "poll"]
    assert select.error is OSError
    assert select.epoll is stdlib_select.epoll  # blocking, as gevent's: aggressive patching removes it


def test_select_reports_what_is_ready_now(pair):
    a, b = pair
    assert select.select([a], [a], [], 0) == ([], [a], [])
    b.sendall(b"x")
    assert select.select([a, b], [], [], 0) == ([a], [], [])
    assert select.select([a.fileno()], [], [], None) == ([a.fileno()], [], [])  # ready: no wait at all
    assert stdlib_select.select([a], [a], [], 0) == select.select([a], [a], [], 0)


def test_select_parks_only_the_caller_until_an_fd_is_ready(pair):
    waits = fd_waits()
    a, b = pair
    ticks = []
    ticker = ferrovent.spawn(lambda: [ticks.append(ferrovent.sleep(0.005)) for _ in range(3)])
    ferrovent.spawn_later(0.05, b.sendall, b"x")
    start = time.monotonic()
    assert select.select([a], [], [], 5) == ([a], [], [])
    assert 0.04 <= time.monotonic() - start < 3
    assert len(ticks) == 3 and ticker.dead
    assert fd_waits() == waits


def test_select_with_many_fds_wakes_for_any_of_them():
    waits = fd_waits()
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        readers = [a for a, _ in pairs]
        ferrovent.spawn_later(0.02, pairs[2][1].sendall, b"x")
        assert select.select(readers, [], [], 5) == ([readers[2]], [], [])
        assert fd_waits() == waits
        ferrovent.spawn_later(0.02, pairs[0][1].sendall, b"x")
        ferrovent.spawn_later(0.02, pairs[3][1].sendall, b"x")
        ready, _, _ = select.select(readers[:2] + readers[3:], [], [], 5)
        assert readers[0] in ready
        assert fd_waits() == waits
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_select_times_out_with_empty_lists(pair):
    waits = fd_waits()
    a, _ = pair
    start = time.monotonic()
    assert select.select([a], [], [a], 0.05) == ([], [], [])
    assert 0.049 <= time.monotonic() - start < 3
    assert fd_waits() == waits
    start = time.monotonic()
    assert select.select([], [], [], 0.03) == ([], [], [])  # nothing to watch: a sleep, as the stdlib's
    assert time.monotonic() - start >= 0.029
    with pytest.raises(ValueError):
        select.select([a], [], [], -1)


def test_select_timeout_on_a_full_socket_and_writability_returning(pair):
    a, b = pair
    a.setblocking(False)
    try:
        while True:
            a.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    assert select.select([], [a], [], 0.02) == ([], [], [])

    def drain():
        b.setblocking(False)
        try:
            while b.recv(1 << 20):
                pass
        except BlockingIOError:
            pass

    drainer = ferrovent.spawn_later(0.02, drain)
    assert select.select([], [a], [], 5) == ([], [a], [])
    drainer.join()


def test_select_on_an_fd_closed_while_waiting_raises_as_the_stdlib(pair):
    a, b = pair
    ferrovent.spawn_later(0.02, a.close)
    with pytest.raises((OSError, ValueError)):
        select.select([a], [], [], 5)


def test_a_spurious_wakeup_waits_again(pair):
    """Data seen by the loop but consumed by another greenlet first: select keeps waiting, for the rest."""
    a, b = pair

    def steal():
        socket.wait_read(a.fileno())
        a.recv(10)

    thief = ferrovent.spawn(steal)
    ferrovent.sleep(0)
    ferrovent.spawn_later(0.02, b.sendall, b"x")
    start = time.monotonic()
    result = select.select([a], [], [], 0.2)
    assert thief.dead
    assert result == ([], [], []) or result == ([a], [], [])
    if result == ([], [], []):
        assert time.monotonic() - start >= 0.19


def test_poll_register_modify_unregister(pair):
    a, b = pair
    poller = select.poll()
    poller.register(a, select.POLLIN)
    assert poller.poll(0) == []
    poller.modify(a, select.POLLOUT)
    assert poller.poll(0) == [(a.fileno(), select.POLLOUT)]
    poller.unregister(a)
    with pytest.raises(KeyError):
        poller.unregister(a)
    assert poller.poll(0) == []


def test_poll_waits_in_milliseconds_and_reports_the_kernel_flags(pair):
    waits = fd_waits()
    a, b = pair
    poller = select.poll()
    poller.register(a.fileno(), select.POLLIN)
    start = time.monotonic()
    assert poller.poll(50) == []
    assert 0.049 <= time.monotonic() - start < 3
    ferrovent.spawn_later(0.02, b.sendall, b"x")
    assert poller.poll(5000) == [(a.fileno(), select.POLLIN)]
    a.recv(1)
    ferrovent.spawn_later(0.02, b.close)
    events = poller.poll(-1)
    real = stdlib_select.poll()
    real.register(a.fileno(), select.POLLIN)
    assert events == real.poll(0)
    assert events[0][1] & select.POLLHUP  # what the kernel says, not only POLLIN
    assert fd_waits() == waits


def test_poll_many_fds_and_an_error_only_registration():
    waits = fd_waits()
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        poller = select.poll()
        for a, _ in pairs:
            poller.register(a, select.POLLIN)
        poller.register(pairs[0][1], 0)  # errors and hang-ups only: never spins on its readability
        pairs[1][0].sendall(b"data for pairs[0][1], which is not watched for reading")
        ferrovent.spawn_later(0.05, pairs[2][1].sendall, b"x")
        start = time.monotonic()
        assert poller.poll(5000) == [(pairs[2][0].fileno(), select.POLLIN)]
        assert time.monotonic() - start >= 0.04
        assert fd_waits() == waits
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_poll_reports_a_closed_fd_as_invalid():
    read_end, write_end = os.pipe()
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    os.close(read_end)
    os.close(write_end)
    assert poller.poll(1000) == [(read_end, select.POLLNVAL)]


def test_level_truth_matches_the_stdlib_in_every_state(pair):
    a, b = pair
    ours, theirs = select.poll(), stdlib_select.poll()
    for poller in (ours, theirs):
        poller.register(a, select.POLLIN | select.POLLOUT | select.POLLPRI)
    for step in (lambda: None, lambda: b.sendall(b"x"), lambda: a.recv(1), lambda: b.shutdown(socket.SHUT_WR)):
        step()
        assert ours.poll(0) == theirs.poll(0)
        assert select.select([a], [a], [a], 0) == stdlib_select.select([a], [a], [a], 0)


class _FilenoCounter:
    def __init__(self, fd):
        self.fd = fd
        self.calls = 0

    def fileno(self):
        self.calls += 1
        return self.fd


def test_select_argument_errors_are_the_stdlib_ones(pair):
    class NoFileno:
        pass

    class TextFileno:
        def fileno(self):
            return "not a number"

    for args in [(1, 2, 3), ([NoFileno()], [], []), ([TextFileno()], [], []), ([], [], [], "1"), ([-1], [], [])]:
        with pytest.raises((TypeError, ValueError)) as expected:
            stdlib_select.select(*args)
        with pytest.raises(expected.type) as got:
            select.select(*args)
        assert str(got.value) == str(expected.value)


def test_select_calls_fileno_once_per_object_and_reads_the_list_as_the_stdlib_does(pair):
    a, b = pair
    counter = _FilenoCounter(a.fileno())
    assert select.select([], [counter], [], 5) == ([], [counter], [])
    assert counter.calls == 1
    shrinking = []

    class Shrinking:
        def fileno(self):
            del shrinking[-1]  # each call drops the last entry: the stdlib reads the list by index as it shrinks
            return a.fileno()

    shrinking[:] = [Shrinking()] * 10
    assert select.select([], shrinking, []) == ([], shrinking[:5], [])


def test_poll_calls_fileno_once_per_registration(pair):
    a, b = pair
    counter = _FilenoCounter(a.fileno())
    poller = select.poll()
    poller.register(counter, select.POLLOUT)
    poller.modify(counter, select.POLLOUT)
    assert poller.poll(0) == [(a.fileno(), select.POLLOUT)]
    poller.unregister(counter)
    assert counter.calls == 3


def test_an_answer_the_wait_does_not_confirm_parks_instead_of_spinning(pair, monkeypatch):
    """When the kernel's zero-timeout answer and the loop's readiness disagree (here the answer is replaced, as
    gevent's own test__select does), select waits for the next edge instead of re-checking without yielding until
    its timeout: the other greenlets run meanwhile."""
    a, b = pair
    b.sendall(b"x")
    monkeypatch.setattr(select, "_original_select", lambda *args: ([], [], []))
    ticks = []

    def tick():
        while True:
            ticks.append(None)
            ferrovent.sleep(0.01)

    ticker = ferrovent.spawn(tick)
    try:
        assert select.select([a], [], [], 0.2) == ([], [], [])
    finally:
        ticker.kill()
    assert len(ticks) >= 5


def test_a_select_that_times_out_on_an_unconfirmed_answer_still_lets_other_greenlets_run(pair, monkeypatch):
    """A select with a timeout is a scheduling point, as gevent's (which always waits in the hub): a greenlet
    scheduled before it has run by the time it returns, also when the loop found the fd ready, the kernel's answer
    (replaced here) did not confirm it, and the timeout was over before the next wait."""
    a, b = pair
    b.sendall(b"x")
    monkeypatch.setattr(select, "_original_select", lambda *args: ([], [], []))
    ran = []
    ferrovent.spawn(ran.append, "ran")
    assert select.select([a], [], [], 1e-9) == ([], [], [])
    assert ran == ["ran"]
