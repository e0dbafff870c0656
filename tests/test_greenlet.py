"""Greenlet and the spawn family beyond what tests/compat checks: arguments, tracebacks, timeouts, subclassing."""

from __future__ import annotations

import time
import traceback

import ferrovent
import greenlet
import pytest


def test_spawn_passes_positional_and_keyword_arguments():
    g = ferrovent.spawn(lambda *args, **kwargs: (args, kwargs), 1, 2, k=3)
    assert g.get() == ((1, 2), {"k": 3})
    assert isinstance(g, ferrovent.Greenlet)
    assert isinstance(g, greenlet.greenlet)


def raiser():
    raise ValueError("original")


def test_get_reraises_with_the_original_traceback():
    g = ferrovent.spawn(raiser)
    with pytest.raises(ValueError) as info:
        g.get()
    assert info.value is g.exception
    innermost = traceback.extract_tb(info.value.__traceback__)[-1]
    assert innermost.name == "raiser"
    assert innermost.filename == __file__
    assert innermost.line == 'raise ValueError("original")'


@pytest.mark.timeout(10)
def test_join_with_timeout_returns_while_the_greenlet_runs():
    g = ferrovent.spawn(ferrovent.sleep, 10)
    start = time.perf_counter_ns()
    assert g.join(timeout=0.02) is None
    assert time.perf_counter_ns() - start >= 20_000_000
    assert not g.dead
    g.kill()
    assert g.dead


@pytest.mark.timeout(10)
def test_kill_with_timeout_gives_up_on_a_greenlet_that_ignores_it():
    def stubborn():
        try:
            ferrovent.sleep(10)
        except ferrovent.GreenletExit:
            ferrovent.sleep(10)

    g = ferrovent.spawn(stubborn)
    ferrovent.sleep(0)
    start = time.perf_counter_ns()
    g.kill(timeout=0.05)
    assert time.perf_counter_ns() - start >= 50_000_000
    assert not g.dead
    g.kill()
    assert g.dead


@pytest.mark.timeout(10)
def test_killall_with_keywords():
    group = [ferrovent.spawn(ferrovent.sleep, 10) for _ in range(3)]
    ferrovent.sleep(0)
    ferrovent.killall(greenlets=group, exception=ferrovent.GreenletExit, block=True, timeout=5)
    assert all(g.dead for g in group)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("how", ["spawn_later", "start_later"])
def test_delayed_start_waits_its_seconds(how):
    start = time.perf_counter_ns()
    if how == "spawn_later":
        g = ferrovent.spawn_later(0.03, time.perf_counter_ns)
    else:
        g = ferrovent.Greenlet(time.perf_counter_ns)
        g.start_later(0.03)
    assert g.get(timeout=5) - start >= 30_000_000


def test_subclass_overriding_run():
    class Doubler(ferrovent.Greenlet):
        def __init__(self, x):
            super().__init__()
            self.x = x

        def _run(self):
            return self.x * 2

    g = Doubler(21)
    g.start()
    assert g.get() == 42


@pytest.mark.timeout(30)
def test_ten_thousand_greenlets():
    greenlets = [ferrovent.spawn(lambda i: i, i) for i in range(10_000)]
    done = ferrovent.joinall(greenlets, timeout=20)
    assert len(done) == 10_000
    assert [g.value for g in greenlets] == list(range(10_000))


def test_a_finishing_iwait_object_does_not_end_an_unrelated_wait():
    first = ferrovent.spawn(ferrovent.sleep, 0.01)
    second = ferrovent.spawn(ferrovent.sleep, 0.05)
    other = ferrovent.spawn(ferrovent.sleep, 0.2)
    for finished in ferrovent.iwait([first, second]):
        assert finished is first
        other.join()  # `second` finishes meanwhile: its notification must not end this join early
        assert other.dead
        break
