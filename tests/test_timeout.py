"""Timeout timing and the forms compat scenarios do not cover. Firing, cancel and nesting are in tests/compat."""

from __future__ import annotations

import time

import ferrovent
import pytest


@pytest.mark.timeout(10)
@pytest.mark.parametrize("seconds", [0.005, 0.03])
def test_timeout_fires_no_earlier_than_its_seconds(seconds):
    start = time.perf_counter_ns()
    with pytest.raises(ferrovent.Timeout) as info:
        with ferrovent.Timeout(seconds):
            ferrovent.sleep(5)
    elapsed = time.perf_counter_ns() - start
    assert elapsed >= round(seconds * 1e9)
    assert elapsed < round((seconds + 0.5) * 1e9)
    assert info.value.seconds == seconds
    assert not info.value.pending


def test_timeout_without_seconds_never_fires():
    with ferrovent.Timeout() as timeout:
        ferrovent.sleep(0.02)
    assert not timeout.pending
    forever = ferrovent.Timeout.start_new(None)
    ferrovent.sleep(0.01)
    assert not forever.pending
    forever.cancel()


def test_start_new_returns_a_started_timeout_and_takes_an_exception():
    timeout = ferrovent.Timeout.start_new(0.01, KeyError("x"))
    assert isinstance(timeout, ferrovent.Timeout)
    assert timeout.pending
    with pytest.raises(KeyError):
        ferrovent.sleep(5)
    assert not timeout.pending


@pytest.mark.timeout(10)
def test_uncaught_timeout_ends_only_its_greenlet():
    def overstay():
        with ferrovent.Timeout(0.01):
            ferrovent.sleep(5)

    victim = ferrovent.spawn(overstay)
    bystander = ferrovent.spawn(ferrovent.sleep, 0.05)
    ferrovent.joinall([victim, bystander], timeout=5)
    assert isinstance(victim.exception, ferrovent.Timeout)
    assert bystander.successful()
