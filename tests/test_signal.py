"""Signals: handlers that run in greenlets, and the patched-style signal.signal."""

from __future__ import annotations

import os
import signal as std_signal
import threading
import time

import ferrovent
import pytest
from ferrovent import select, selectors, socket
from ferrovent import signal as green_signal
from greenlet import getcurrent

pytestmark = pytest.mark.timeout(20)


def _ticker(ticks, stop):
    while not stop:
        ticks.append(None)
        ferrovent.sleep(0.005)


def test_signal_handler_runs_in_its_own_greenlet_and_may_block():
    seen = []

    def handler(tag):
        seen.append((tag, type(getcurrent()).__name__))
        ferrovent.sleep(0.01)  # blocking is fine: this is a greenlet, not the hub
        seen.append("slept")

    ticks, stop = [], []
    ticker = ferrovent.spawn(_ticker, ticks, stop)
    registration = ferrovent.signal_handler(std_signal.SIGUSR1, handler, "usr1")
    try:
        ferrovent.sleep(0.02)
        before = len(ticks)
        os.kill(os.getpid(), std_signal.SIGUSR1)
        ferrovent.sleep(0.05)
        assert seen == [("usr1", "Greenlet"), "slept"]
        assert len(ticks) > before, "the other greenlet kept running"
    finally:
        registration.cancel()
        stop.append(True)
        ticker.join()


def test_cancel_restores_the_previous_handler():
    previous = std_signal.getsignal(std_signal.SIGUSR2)
    registration = ferrovent.signal_handler(std_signal.SIGUSR2, lambda: None)
    assert std_signal.getsignal(std_signal.SIGUSR2) is not previous
    registration.cancel()
    assert std_signal.getsignal(std_signal.SIGUSR2) is previous


def test_signal_handler_needs_a_callable():
    with pytest.raises(TypeError):
        ferrovent.signal_handler(std_signal.SIGUSR1, "not callable")


def test_green_signal_handler_delivered_in_the_hub_may_block():
    delivered = []

    def handler(signum, frame):
        ferrovent.sleep(0.001)
        delivered.append((signum, getcurrent() is not ferrovent.get_hub()))

    previous = green_signal.signal(std_signal.SIGUSR1, handler)
    try:
        assert green_signal.getsignal(std_signal.SIGUSR1) is handler
        os.kill(os.getpid(), std_signal.SIGUSR1)
        ferrovent.sleep(0.05)  # the hub's poll is interrupted and runs the handler in a greenlet
        assert delivered == [(std_signal.SIGUSR1, True)]
    finally:
        green_signal.signal(std_signal.SIGUSR1, previous)


def test_module_has_every_stdlib_name():
    missing = [n for n in dir(std_signal) if not n.startswith("_") and not hasattr(green_signal, n)]
    assert missing == []


class _Interrupted(Exception):
    pass


def _raise_interrupted(signum, frame):
    raise _Interrupted(signum)


@pytest.fixture
def deliver_sigusr1_soon():
    """Returns a function that has a real thread send SIGUSR1 to this (the main) thread after a delay, so the
    signal arrives while the hub is blocked in its poll; restores the handler afterwards."""
    previous = std_signal.getsignal(std_signal.SIGUSR1)
    timers = []

    def deliver(delay=0.05):
        timer = threading.Timer(delay, std_signal.pthread_kill, (threading.get_ident(), std_signal.SIGUSR1))
        timer.start()
        timers.append(timer)

    yield deliver
    for timer in timers:
        timer.join()
    std_signal.signal(std_signal.SIGUSR1, previous)


def _blocked_recv():
    a, b = socket.socketpair()
    try:
        a.settimeout(5)
        a.recv(1)
    finally:
        a.close()
        b.close()


def _blocked_sendall():
    a, b = socket.socketpair()
    try:
        a.settimeout(5)
        a.sendall(b"x" * (16 * 1024 * 1024))  # far more than the socket buffers hold
    finally:
        a.close()
        b.close()


def _blocked_select():
    a, b = socket.socketpair()
    try:
        select.select([a], [], [], 5)
    finally:
        a.close()
        b.close()


def _blocked_selector():
    a, b = socket.socketpair()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(a, selectors.EVENT_READ)
            selector.select(5)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    "blocking_call",
    [_blocked_recv, _blocked_sendall, _blocked_select, _blocked_selector, lambda: ferrovent.sleep(5)],
    ids=["recv", "sendall", "select", "selector", "sleep"],
)
def test_a_handler_exception_ends_the_call_the_main_greenlet_is_blocked_in(deliver_sigusr1_soon, blocking_call):
    green_signal.signal(std_signal.SIGUSR1, _raise_interrupted)
    deliver_sigusr1_soon()
    start = time.monotonic()
    with pytest.raises(_Interrupted):
        blocking_call()
    assert time.monotonic() - start < 3


def test_a_handler_that_returns_lets_the_blocked_call_go_on(deliver_sigusr1_soon):
    calls = []
    green_signal.signal(std_signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    a, b = socket.socketpair()
    try:
        a.settimeout(0.5)
        deliver_sigusr1_soon()
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            a.recv(1)
        assert time.monotonic() - start >= 0.45  # the signal did not cut the timeout short
        assert calls == [std_signal.SIGUSR1]
    finally:
        a.close()
        b.close()
