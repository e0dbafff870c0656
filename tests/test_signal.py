"""Signals: handlers that run in greenlets, and the patched-style signal.signal."""

from __future__ import annotations

import os
import signal as std_signal

import ferrovent
import pytest
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
