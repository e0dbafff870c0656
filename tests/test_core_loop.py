"""The Rust loop's low-level fd waits (``ferrovent.get_hub().loop``), which the cooperative socket layer builds on.

Every fd the loop has seen is announced with ``closing_fd`` before it is closed, as the socket layer does.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time

import ferrovent
import pytest

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def loop():
    return ferrovent.get_hub().loop


class Channel:
    """A one-way byte channel: ``rfd`` becomes readable after ``send``; ``wfd`` is the other end."""

    def __init__(self, kind: str):
        if kind == "socketpair":
            self._socks = socket.socketpair()
            self.rfd, self.wfd = (s.fileno() for s in self._socks)
        else:
            self._socks = ()
            self.rfd, self.wfd = os.pipe()
        self.open = {self.rfd, self.wfd}

    def send(self, data: bytes = b"x") -> None:
        os.write(self.wfd, data)

    def close(self, loop, fd: int) -> None:
        loop.closing_fd(fd)
        self.open.discard(fd)
        for sock in self._socks:
            if sock.fileno() == fd:
                sock.close()
                return
        os.close(fd)

    def close_all(self, loop) -> None:
        for fd in list(self.open):
            self.close(loop, fd)


@pytest.fixture(params=["socketpair", "pipe"])
def channel(request, loop):
    chan = Channel(request.param)
    yield chan
    chan.close_all(loop)


@pytest.fixture
def stuffed(loop):
    """A socketpair whose first end has a full send buffer: not writable, and not readable either."""
    chan = Channel("socketpair")
    os.set_blocking(chan.rfd, False)
    try:
        while True:
            os.write(chan.rfd, b"\0" * 65536)
    except BlockingIOError:
        pass
    yield chan
    chan.close_all(loop)


def drain(fd: int) -> None:
    os.set_blocking(fd, False)
    try:
        while os.read(fd, 1 << 20):
            pass
    except BlockingIOError:
        pass


def parked(*greenlets) -> bool:
    return not any(g.ready() for g in greenlets)


def wait_outcome(wait, fd, **kwargs):
    """Run a wait in a greenlet and return how it ended: its return value or the exception it raised."""
    try:
        return wait(fd, **kwargs)
    except BaseException as exc:
        return exc


def test_wait_read_parks_until_data_arrives(loop, channel):
    writer = ferrovent.spawn(channel.send, b"hello")  # runs only once main is parked
    assert loop.wait_read(channel.rfd) is True
    assert os.read(channel.rfd, 5) == b"hello"
    assert writer.dead


def test_wait_read_on_a_readable_fd_returns_at_once(loop, channel):
    channel.send()
    start = time.perf_counter()
    assert loop.wait_read(channel.rfd, timeout=5) is True
    assert time.perf_counter() - start < 1


def test_wait_write_on_a_writable_fd_returns_at_once(loop, channel):
    start = time.perf_counter()
    assert loop.wait_write(channel.wfd, timeout=5) is True
    assert time.perf_counter() - start < 1


def test_wait_write_parks_until_the_peer_drains(loop, stuffed):
    reader = ferrovent.spawn(drain, stuffed.wfd)
    assert loop.wait_write(stuffed.rfd, timeout=5) is True
    assert reader.dead


def test_wait_read_timeout_returns_false(loop, channel):
    start = time.perf_counter_ns()
    assert loop.wait_read(channel.rfd, timeout=0.05) is False
    assert time.perf_counter_ns() - start >= 50_000_000


def test_wait_write_timeout_raises_timeout_exc(loop, stuffed):
    exc = socket.timeout("timed out")
    start = time.perf_counter_ns()
    with pytest.raises(socket.timeout) as info:
        loop.wait_write(stuffed.rfd, timeout=0.05, timeout_exc=exc)
    assert info.value is exc
    assert time.perf_counter_ns() - start >= 50_000_000


def test_wait_read_timeout_raises_timeout_exc(loop, channel):
    exc = socket.timeout("timed out")
    with pytest.raises(socket.timeout) as info:
        loop.wait_read(channel.rfd, timeout=0.05, timeout_exc=exc)
    assert info.value is exc


def test_closing_fd_wakes_the_waiter_with_ebadf(loop, channel):
    ferrovent.spawn(channel.close, loop, channel.rfd)
    with pytest.raises(OSError) as info:
        loop.wait_read(channel.rfd, timeout=5)
    assert info.value.errno == errno.EBADF


def test_closing_fd_wakes_every_waiter_on_it(loop, stuffed):
    fd = stuffed.rfd
    reader = ferrovent.spawn(wait_outcome, loop.wait_read, fd, timeout=5)
    writer = ferrovent.spawn(wait_outcome, loop.wait_write, fd, timeout=5)
    ferrovent.sleep(0)
    assert parked(reader, writer)
    stuffed.close(loop, fd)
    outcomes = [g.get(timeout=5) for g in (reader, writer)]
    assert all(isinstance(o, OSError) and o.errno == errno.EBADF for o in outcomes), outcomes


def test_cancel_wait_raises_the_exception_in_every_waiter(loop, stuffed):
    fd = stuffed.rfd
    reader = ferrovent.spawn(wait_outcome, loop.wait_read, fd, timeout=5)
    writer = ferrovent.spawn(wait_outcome, loop.wait_write, fd, timeout=5)
    ferrovent.sleep(0)
    assert parked(reader, writer)
    cancelled = ConnectionAbortedError("cancelled")
    loop.cancel_wait(fd, cancelled)
    assert [g.get(timeout=5) for g in (reader, writer)] == [cancelled, cancelled]
    # The fd itself is untouched and can be waited on again.
    ferrovent.spawn(os.write, stuffed.wfd, b"x")
    assert loop.wait_read(fd, timeout=5) is True


def test_reused_fd_number_has_no_stale_readiness(loop, channel):
    fd = channel.rfd
    channel.send()
    assert loop.wait_read(fd, timeout=5) is True  # the loop now knows fd as readable
    channel.close(loop, fd)
    fresh = Channel("socketpair")
    try:
        os.dup2(fresh.rfd, fd)  # the old number now names a fresh, empty socket
        fresh.open.add(fd)
        assert loop.wait_read(fd, timeout=0.05) is False
        ferrovent.spawn(fresh.send, b"y")
        assert loop.wait_read(fd, timeout=5) is True
        assert os.read(fd, 1) == b"y"
    finally:
        fresh.close_all(loop)


def test_reused_fd_number_has_no_stale_waiter(loop, channel):
    fd = channel.rfd
    old = ferrovent.spawn(wait_outcome, loop.wait_read, fd, timeout=5)
    ferrovent.sleep(0)
    assert parked(old)
    channel.close(loop, fd)
    assert old.get(timeout=5).errno == errno.EBADF
    fresh = Channel("socketpair")
    try:
        os.dup2(fresh.rfd, fd)
        fresh.open.add(fd)
        new = ferrovent.spawn(wait_outcome, loop.wait_read, fd, timeout=5)
        ferrovent.sleep(0)
        assert parked(new)
        fresh.send(b"z")
        assert new.get(timeout=5) is True
        assert os.read(fd, 1) == b"z"
    finally:
        fresh.close_all(loop)


def test_another_thread_is_refused_but_may_use_run_callback_threadsafe():
    loop = ferrovent.get_hub().loop
    outcome = {}

    def from_other_thread():
        try:
            loop.run_callback(outcome.setdefault, "scheduled", True)
        except ferrovent.InvalidThreadUseError:
            outcome["refused"] = True
        loop.run_callback_threadsafe(outcome.setdefault, "threadsafe", True)

    thread = threading.Thread(target=from_other_thread)
    thread.start()
    thread.join(10)
    deadline = ferrovent.Timeout(5)
    with deadline:
        while "threadsafe" not in outcome:
            ferrovent.sleep(0.001)
    assert outcome == {"refused": True, "threadsafe": True}


def test_an_fd_closed_behind_the_loops_back_leaves_no_stale_registration():
    loop = ferrovent.get_hub().loop
    read_end, write_end = os.pipe()
    ferrovent.spawn_later(0.01, os.write, write_end, b"x")
    assert loop.wait_read(read_end, timeout=5)
    os.close(read_end)  # plain os.close: the loop is not told
    os.close(write_end)
    left, right = socket.socketpair()
    try:
        reused = left if left.fileno() == read_end else right
        peer = right if reused is left else left
        assert reused.fileno() == read_end, "the test needs the fd number to be reused"
        ferrovent.spawn_later(0.02, peer.send, b"y")
        assert loop.wait_read(reused.fileno(), timeout=2), "a reused fd number must be registered afresh"
    finally:
        left.close()
        right.close()
