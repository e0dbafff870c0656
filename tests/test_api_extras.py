"""ferrovent's share of gevent's smaller public names that the compat scenarios (tests/compat/test_api_compat.py)
cannot compare with gevent: Waiter misuse, a referenced signal_handler, GreenletTree's output, assert_switches with
a time budget, the spawning stack, and iwait's timeout."""

from __future__ import annotations

import signal
import time

import ferrovent
import pytest
from ferrovent import util
from ferrovent.event import Event
from ferrovent.exceptions import ConcurrentObjectUseError
from ferrovent.hub import Waiter, get_hub
from ferrovent.local import local

pytestmark = pytest.mark.timeout(20)


def test_a_waiter_serves_one_greenlet_at_a_time():
    waiter = Waiter()
    first = ferrovent.spawn(waiter.get)
    ferrovent.sleep(0.01)
    second = ferrovent.spawn(waiter.get)
    with pytest.raises(ConcurrentObjectUseError):
        second.get(timeout=5)
    get_hub().loop.run_callback(waiter.switch, "for the first")
    assert first.get(timeout=5) == "for the first"


def test_a_referenced_signal_handler_keeps_the_loop_alive():
    handler = ferrovent.signal_handler(signal.SIGUSR2, lambda: None)
    try:
        assert ferrovent.wait(timeout=5) is True  # not referenced: nothing keeps the loop
        handler.ref = True
        assert ferrovent.wait(timeout=0.05) is False  # the loop still has the handler to wait for
        handler.ref = False
        assert ferrovent.wait(timeout=5) is True
    finally:
        handler.cancel()


def test_greenlet_tree_shows_who_spawned_whom():
    def child():
        ferrovent.sleep(0.05)

    def parent():
        values = local()
        values.seen = "here"
        ferrovent.getcurrent().spawn_tree_locals["request"] = 7
        kid = ferrovent.spawn(child)
        kid.name = "the-child"
        tree = ferrovent.spawn(util.GreenletTree.current_tree).get()
        kid.join()
        return tree.format({"running_stacks": False})

    text = ferrovent.spawn(parent).get(timeout=5)
    parent_line = next(i for i, line in enumerate(text.splitlines()) if ": parent>" in line)
    child_line = next(i for i, line in enumerate(text.splitlines()) if '"the-child"' in line)
    assert parent_line < child_line and "+--- " in text.splitlines()[child_line]
    assert "Spawn Tree Locals" in text and "{'request': 7}" in text
    assert "Greenlet Locals:" in text and "{'seen': 'here'}" in text


def test_assert_switches_with_a_time_budget():
    with pytest.raises(AssertionError, match=r"max allowed 0\.0010 seconds"):
        with util.assert_switches(0.001):
            time.sleep(0.05)  # blocks the whole thread
    with util.assert_switches(1.0):
        time.sleep(0)


def test_spawning_stack_is_kept_when_asked(monkeypatch):
    assert ferrovent.spawn(lambda: None).spawning_stack is None  # off by default: it costs a third of a spawn
    monkeypatch.setattr(ferrovent.Greenlet, "spawning_stack_limit", 3)

    def spawner():
        return ferrovent.spawn(lambda: None)

    stack = spawner().spawning_stack
    assert len(stack) == 3 and any(frame.name == "spawner" for frame in stack)


def test_iwait_timeout_stops_the_iteration():
    never = Event()
    started = time.monotonic()
    assert list(ferrovent.iwait([never], timeout=0.05)) == []
    assert 0.04 < time.monotonic() - started < 5
    assert never.linkcount() == 0
