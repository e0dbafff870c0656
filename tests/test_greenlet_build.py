"""Greenlet.spawn's build and start without ``Greenlet.__init__`` and ``start`` (rust/greenlet_new.rs): a spawned
greenlet is in exactly the state those give, and every class whose ``__init__`` or ``start`` (or what they assign)
differs from Greenlet's runs its own. The same tests pass with the build switched off (FERROVENT_GREENLET_FAST=0):
the last test runs them so."""

from __future__ import annotations

import gc
import sys
import weakref

import ferrovent
import pytest
from ferrovent import greenlet as greenlet_module
from ferrovent._switches import switched_off
from ferrovent.greenlet import Greenlet

from tests.child import ROOT, run_child

pytestmark = pytest.mark.timeout(60)

SWITCHED_OFF = switched_off("FERROVENT_GREENLET_FAST")
BUILD_TESTED = sys.implementation.name == "cpython" and (3, 9) <= sys.version_info[:2] <= (3, 13)
UNSET = object()


def work(*args, **kwargs):
    return args, kwargs


def state(g):
    """Everything Greenlet.__init__ decides about ``g``, comparable between two greenlets."""
    seen = {name: getattr(g, name, UNSET) for name in Greenlet.__slots__ if name != "spawning_greenlet"}
    seen.update(
        type=type(g),
        parent=g.parent,
        spawner=g.spawning_greenlet(),
        weak_type=type(g.spawning_greenlet),
        dict=getattr(g, "__dict__", UNSET),
        tracked=gc.is_tracked(g),
        kwargs=g.kwargs,
        started=g.started,
        scheduled=g.parent.loop.is_parked(g),
        dead=g.dead,
    )
    return seen


def init_calls(spawn):
    """The Python ``__init__`` and ``start`` methods ``spawn()`` ran (by class), and what it returned."""
    calls = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name in ("__init__", "start"):
            calls.append((type(frame.f_locals["self"]).__name__, frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        result = spawn()
    finally:
        sys.setprofile(None)
    return calls, result


def test_built_in_rust_where_supported_unless_switched_off():
    assert greenlet_module.BUILT_IN_RUST is (BUILD_TESTED and not SWITCHED_OFF)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1,), {}), ((1, "two", None), {}), ((), {"x": 1}), ((1,), {"y": [2], "z": None})],
)
def test_a_spawned_greenlet_is_in_the_state_init_gives(args, kwargs):
    spawned = Greenlet.spawn(work, *args, **kwargs)
    called = Greenlet(work, *args, **kwargs)
    called.start()
    assert state(spawned) == state(called)
    assert spawned._function is called._function is work
    assert spawned.get() == called.get() == (args, kwargs)


def test_a_spawned_greenlet_does_not_run_init_or_start_where_built_in_rust():
    calls, g = init_calls(lambda: Greenlet.spawn(work, 1))
    python_calls = [("Greenlet", "__init__"), ("Greenlet", "start")]
    assert calls == ([] if greenlet_module.BUILT_IN_RUST else python_calls)
    assert g.get() == ((1,), {})


def test_spawn_callbacks_see_the_greenlet_before_it_is_scheduled():
    seen = []

    def callback(g):
        seen.append((g.args, g._start_state, g.started))

    Greenlet.add_spawn_callback(callback)
    try:
        calls, g = init_calls(lambda: Greenlet.spawn(work, 2))
    finally:
        Greenlet.remove_spawn_callback(callback)
    assert seen == [((2,), None, False)]
    assert ("Greenlet", "start") in calls and g.started
    assert g.get() == ((2,), {})
    assert state(Greenlet.spawn(work, 3))["_start_state"] == "scheduled"


def test_a_plain_subclass_is_built_as_a_greenlet_with_its_own_dict():
    class Plain(Greenlet):
        pass

    calls, g = init_calls(lambda: Plain.spawn(work, k=1))
    assert calls == ([] if greenlet_module.BUILT_IN_RUST else [("Plain", "__init__"), ("Plain", "start")])
    assert type(g) is Plain and g.kwargs == {"k": 1}
    g.note = "kept"
    assert g.get() == ((), {"k": 1}) and g.__dict__ == {"note": "kept"}


def test_subclasses_that_change_what_init_does_run_it():
    seen = []

    class OwnInit(Greenlet):
        def __init__(self, *args, **kwargs):
            seen.append("init")
            super().__init__(*args, **kwargs)

    class ArgsProperty(Greenlet):
        @property
        def args(self):
            return self.__dict__["a"]

        @args.setter
        def args(self, value):
            seen.append(("args", value))
            self.__dict__["a"] = value

    class SetAttr(Greenlet):
        def __setattr__(self, name, value):
            if name == "value":
                seen.append("setattr")
            super().__setattr__(name, value)

    class OwnStart(Greenlet):
        def start(self):
            seen.append("start")
            super().start()

    class WithStack(Greenlet):
        spawning_stack_limit = 5

    shapes = ((OwnInit, "init"), (ArgsProperty, ("args", (7,))), (SetAttr, "setattr"), (OwnStart, "start"))
    for cls, first in shapes:
        g = cls.spawn(work, 7)
        assert seen == [first]  # before it ran
        assert g.get() == ((7,), {})
        seen.clear()
    assert WithStack.spawn(work).spawning_stack is not None


def test_a_class_changed_after_a_spawn_is_asked_again():
    class Mixin:
        pass

    class Later(Mixin, Greenlet):
        pass

    assert Later.spawn(work).spawning_stack is None
    assert Later.spawn(work).spawning_stack is None  # a verdict kept for the class as it is
    Later.spawning_stack_limit = 3
    assert Later.spawn(work).spawning_stack is not None
    del Later.spawning_stack_limit
    assert Later.spawn(work).spawning_stack is None
    Mixin.__init__ = lambda self, *args, **kwargs: Greenlet.__init__(self, work, "from the mixin")
    assert Later.spawn(work, "ignored").get() == (("from the mixin",), {})


def test_call_shapes_init_takes_or_refuses_stay_its_own():
    assert Greenlet.spawn(run=work).get() == ((), {})
    assert Greenlet.spawn(None).get() is None  # no function: _run, which returns None
    with pytest.raises(TypeError, match="must be callable"):
        Greenlet.spawn(42)
    with pytest.raises(TypeError, match="multiple values"):
        Greenlet.spawn(work, run=work)
    with pytest.raises(TypeError, match="multiple values"):
        Greenlet.spawn(work, self=1)


def test_the_spawner_and_its_tree_are_the_spawning_greenlets():
    def spawn_child():
        child = Greenlet.spawn(work)
        return child, ferrovent.getcurrent()

    child, parent = ferrovent.spawn(spawn_child).get()
    assert child.spawning_greenlet() is parent
    assert child.spawn_tree_locals is parent.spawn_tree_locals
    assert isinstance(child.spawning_greenlet, weakref.ref)


def test_a_thread_without_a_hub_gets_one():
    code = """
        import threading
        from ferrovent.greenlet import Greenlet
        from ferrovent.hub import get_hub_if_exists
        results = []
        def in_thread():
            assert get_hub_if_exists() is None
            g = Greenlet.spawn(lambda: 5)
            results.append((g.parent is get_hub_if_exists(), g.get()))
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        print(results)
    """
    assert run_child(code).stdout.strip() == "[(True, 5)]"


@pytest.mark.skipif(SWITCHED_OFF, reason="already running with the build switched off")
def test_these_tests_pass_with_the_build_switched_off():
    code = """
        import sys, pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_greenlet_build.py"]))
    """
    run_child(code, env={"FERROVENT_GREENLET_FAST": "0"}, timeout=120)
    assert ROOT.is_dir()
