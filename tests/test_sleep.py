"""sleep(): never early, promptly on time, ordered by deadline. Ordering of sleep(0) is in tests/compat."""

from __future__ import annotations

import statistics
import time

import ferrovent
import pytest


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


@pytest.mark.timeout(20)
def test_sleep_never_wakes_early_and_is_late_by_under_5ms():
    durations = [0.001, 0.002, 0.005, 0.01, 0.02] * 4
    lateness = []
    for seconds in durations:
        start = time.perf_counter_ns()
        ferrovent.sleep(seconds)
        elapsed = time.perf_counter_ns() - start
        assert elapsed >= ns(seconds), f"sleep({seconds}) woke {(ns(seconds) - elapsed) / 1e3:.1f} us early"
        lateness.append(elapsed - ns(seconds))
    assert statistics.median(lateness) < ns(0.005), f"median lateness {statistics.median(lateness) / 1e6:.2f} ms"


@pytest.mark.timeout(20)
def test_concurrent_sleepers_wake_in_deadline_order_and_never_early():
    durations = [0.05, 0.01, 0.04, 0.0, 0.02, 0.03]

    def sleeper(seconds):
        start = time.perf_counter_ns()
        ferrovent.sleep(seconds)
        return start, time.perf_counter_ns()

    greenlets = [ferrovent.spawn(sleeper, seconds) for seconds in durations]
    ferrovent.joinall(greenlets, timeout=5)
    times = [g.get(block=False) for g in greenlets]
    for seconds, (start, end) in zip(durations, times):
        assert end - start >= ns(seconds)
    woke = sorted(range(len(durations)), key=lambda i: times[i][1])
    deadlines = sorted(range(len(durations)), key=lambda i: times[i][0] + ns(durations[i]))
    assert woke == deadlines


def test_sleep_takes_gevent_keywords():
    start = time.perf_counter_ns()
    assert ferrovent.sleep(seconds=0.001, ref=True) is None
    assert time.perf_counter_ns() - start >= ns(0.001)
    assert ferrovent.sleep() is None


def test_negative_sleep_yields_like_sleep_zero():
    ran = []
    ferrovent.spawn(ran.append, "other")
    start = time.perf_counter_ns()
    ferrovent.sleep(-1)
    assert ran == ["other"]
    assert time.perf_counter_ns() - start < ns(0.5)


class Seconds:
    """Not a float or an int, but convertible to one."""

    def __float__(self):
        return 0.001


def test_every_argument_shape_sleeps_or_fails_as_a_python_function_would():
    start = time.perf_counter_ns()
    ferrovent.sleep(Seconds())
    ferrovent.sleep(True)  # an int subclass
    ferrovent.sleep(0.001, True)
    assert time.perf_counter_ns() - start >= ns(0.002)
    with pytest.raises(TypeError, match="seconds"):
        ferrovent.sleep("1")
    with pytest.raises(TypeError):
        ferrovent.sleep(0, True, 3)
    with pytest.raises(TypeError, match="unexpected"):
        ferrovent.sleep(nap=1)
    with pytest.raises(TypeError, match="multiple values"):
        ferrovent.sleep(0, seconds=0)
    with pytest.raises(OverflowError):
        ferrovent.sleep(10**400)
