"""Greenlet and the spawn family beyond what tests/compat checks: arguments, tracebacks, timeouts, subclassing."""

from __future__ import annotations

import pickle
import time
import traceback
import types

import ferrovent
import greenlet
import pytest


def test_spawn_passes_positional_and_keyword_arguments():
    g = ferrovent.spawn(lambda *args, **kwargs: (args, kwargs), 1, 2, k=3)
    assert g.get() == ((1, 2), {"k": 3})
    assert isinstance(g, ferrovent.Greenlet)
    assert isinstance(g, greenlet.greenlet)


def test_spawn_on_a_subclass_runs_its_own_init_and_start():
    started = []

    class Tagged(ferrovent.Greenlet):
        def __init__(self, tag, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.tag = tag

        def start(self):
            started.append(self.tag)
            super().start()

    g = Tagged.spawn("t", lambda x, y=0: x + y, 1, y=2)
    assert type(g) is Tagged and started == ["t"]
    assert g.args == (1,) and g.kwargs == {"y": 2}
    assert g.get() == 3
    with pytest.raises(TypeError, match="must be callable"):
        ferrovent.Greenlet.spawn(42)


def test_spawn_is_a_classmethod_named_spawn_that_pickles():
    assert ferrovent.spawn == ferrovent.Greenlet.spawn
    assert ferrovent.Greenlet.spawn.__name__ == "spawn"
    assert pickle.loads(pickle.dumps(ferrovent.spawn)) == ferrovent.spawn
    assert ferrovent.spawn(int, "7").get() == 7


def test_ready_asks_a_subclass_own_dead_property():
    class AlwaysDead(ferrovent.Greenlet):
        @property
        def dead(self):
            return True

    assert AlwaysDead(int).ready()
    assert not ferrovent.Greenlet(int).ready()


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


def descend(depth, at_bottom):
    """Recurse ``depth`` frames, then call ``at_bottom`` and return its result plus the depth."""
    if depth == 0:
        return at_bottom()
    return descend(depth - 1, at_bottom) + 1


@pytest.mark.timeout(30)
def test_greenlets_park_and_finish_at_any_stack_depth():
    # A greenlet's Python frames start in a small chunk and spill into chained ones as it goes deeper; parking
    # at the bottom and unwinding back through every chunk must leave each greenlet's frames intact.
    depths = [0, 1, 3, 10, 40, 200, 900, 2, 500]

    def at_bottom():
        ferrovent.sleep(0)
        ferrovent.sleep(0.001)
        return 0

    greenlets = [ferrovent.spawn(descend, d, at_bottom) for d in depths]
    ferrovent.joinall(greenlets, timeout=20)
    assert [g.value for g in greenlets] == depths


@pytest.mark.timeout(30)
def test_deep_greenlets_killed_or_failing_while_parked_unwind_cleanly():
    def park_forever():
        ferrovent.sleep(3600)

    def fail():
        ferrovent.sleep(0)
        raise ValueError("deep")

    parked = [ferrovent.spawn(descend, d, park_forever) for d in (5, 300, 900)]
    failing = [ferrovent.spawn(descend, d, fail) for d in (5, 300, 900)]
    ferrovent.sleep(0.01)
    ferrovent.killall(parked, timeout=10)
    ferrovent.joinall(failing, timeout=10)
    assert all(g.dead and isinstance(g.value, ferrovent.GreenletExit) for g in parked)
    assert all(isinstance(g.exception, ValueError) for g in failing)
    with pytest.raises(ValueError) as info:
        failing[1].get()
    frames = traceback.extract_tb(info.value.__traceback__)
    assert [f.name for f in frames].count("descend") == 301
    assert frames[-1].name == "fail"
    # Afterwards the loop still runs new greenlets at any depth.
    assert ferrovent.spawn(descend, 700, lambda: 0).get(timeout=10) == 700


def test_a_subclass_run_method_may_wrap_the_default_run():
    ran = []

    class Custom(ferrovent.Greenlet):
        def run(self):
            ran.append(ferrovent.getcurrent() is self)
            super().run()
            ran.append("after")

    g = Custom(lambda x: x * 2, 21)
    g.start()
    assert g.get(timeout=5) == 42
    assert ran == [True, "after"]


def test_args_and_kwargs_set_before_start_are_unpacked_like_a_call():
    g = ferrovent.Greenlet(lambda *args, **kwargs: (args, kwargs))
    g.args = [1, 2]
    g.kwargs = types.MappingProxyType({"k": 3})  # a mapping, not a dict
    g.start()
    assert g.get(timeout=5) == ((1, 2), {"k": 3})


def test_kwargs_is_a_dict_whose_changes_before_start_reach_the_call():
    assert ferrovent.Greenlet(lambda **kwargs: kwargs, k=1).kwargs == {"k": 1}
    g = ferrovent.Greenlet(lambda *args, **kwargs: (args, kwargs), 1)
    assert g.kwargs == {}
    g.kwargs["k"] = 2
    g.start()
    assert g.get(timeout=5) == ((1,), {"k": 2})
    assert g.kwargs == {}  # freed once it ran


def test_arguments_that_cannot_be_unpacked_fail_the_greenlet():
    g = ferrovent.Greenlet(lambda *args: args)
    g.args = 5  # not iterable
    g.start()
    g.join(timeout=5)
    assert isinstance(g.exception, TypeError)
    assert g.dead and not g.successful()


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


def test_the_hub_a_greenlet_uses_is_its_parent():
    # As gevent's: the loop, the error reporting and the links go through `parent`, so a greenlet given another
    # hub's greenlet as parent would follow it; here, the thread's hub.
    g = ferrovent.Greenlet(lambda: "done")
    assert g.parent is ferrovent.get_hub() and g.loop is ferrovent.get_hub().loop
    finished = []
    g.rawlink(finished.append)
    g.start()
    assert g.get() == "done"
    ferrovent.sleep(0)
    assert finished == [g]


def test_names_and_tree_locals_are_made_on_first_use():
    def measure(text):
        return len(text)

    g = ferrovent.Greenlet(measure, "abc")
    assert repr(g).endswith(": measure('abc')>") and '"' not in repr(g)
    assert g.name == f"Greenlet-{g.minimal_ident}" and f'"{g.name}"' in repr(g)
    g.name = "worker"
    assert g.name == "worker" and '"worker"' in repr(g)
    assert g.spawn_tree_locals == {} and g.spawn_tree_locals is g.spawn_tree_locals
    g.start()
    assert g.get() == 3
