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


def test_hub_names_its_thread_and_numbers_its_greenlets():
    import threading

    hub = get_hub()
    assert hub.main_hub and hub.thread_ident == threading.get_ident()
    seen = []

    def in_thread():
        other = get_hub()
        seen.append((other.main_hub, other.minimal_ident != hub.minimal_ident))
        other.destroy()

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(5)
    assert seen == [(False, True)]
    first, second = ferrovent.spawn(lambda: None), ferrovent.spawn(lambda: None)
    assert {first.minimal_ident, second.minimal_ident} == {hub.ident_registry.get_ident(g) for g in (first, second)}
    ferrovent.joinall([first, second])


def test_a_hub_subclass_may_choose_its_loop_class():
    from ferrovent.hub import Hub, Loop, set_hub

    class CountingLoop(Loop):
        made = 0

        def __init__(self, flags=None, default=None):  # gevent's signature
            Loop.__init__(self, flags, default)
            CountingLoop.made += 1

    class MyHub(Hub):
        loop_class = CountingLoop

    def in_thread():
        hub = MyHub()
        set_hub(hub)  # so that destroy() releases it as the thread's hub
        assert isinstance(hub.loop, CountingLoop)
        hub.destroy()

    import threading

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(5)
    assert CountingLoop.made == 1


def test_waiting_inside_the_hub_is_refused():
    from ferrovent.exceptions import BlockingSwitchOutError

    outcome = []

    def in_hub():
        try:
            Waiter().get()
        except BlockingSwitchOutError as error:
            outcome.append(str(error))

    get_hub().loop.run_callback(in_hub)
    ferrovent.sleep(0.01)
    assert outcome == ["Impossible to call blocking function in the event loop callback"]


def test_event_wait_refuses_a_timeout_that_is_neither_seconds_nor_a_timeout():
    with pytest.raises(TypeError, match="not str"):
        Event().wait("soon")


def test_hub_repr_says_when_it_is_destroyed():
    import threading

    seen = []

    def in_thread():
        hub = get_hub()
        assert hub.threadpool is not None  # made on first use, shown in the repr
        seen.append(repr(hub))
        hub.destroy()
        seen.append(repr(hub))
        seen.append((hub._threadpool, hub._resolver))

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(5)
    alive, destroyed, leftovers = seen
    assert alive.startswith("<Hub '' at 0x") and "threadpool=<ThreadPool" in alive and "thread_ident=0x" in alive
    assert " destroyed " in destroyed and "threadpool" not in destroyed
    assert leftovers == (None, None)


def test_spawn_tree_locals_of_a_long_chain_of_spawners():
    depth = 3000  # deeper than the recursion limit: the chain is walked, not recursed
    done = Event()
    chain = []

    def link(level):
        chain.append(ferrovent.getcurrent())
        if level < depth:
            ferrovent.spawn(link, level + 1)
        else:
            done.set()
        done.wait()

    ferrovent.spawn(link, 1)
    assert done.wait(10)
    assert chain[-1].spawn_tree_locals is chain[0].spawn_tree_locals
    chain[0].spawn_tree_locals["shared"] = True
    assert chain[len(chain) // 2].spawn_tree_locals == {"shared": True}
    # the tree of that chain is drawn too: one line per greenlet, each a level deeper than its spawner
    lines = str(util.GreenletTree.current_tree()).splitlines()
    heads = [line for line in lines if ": link(" in line]
    assert len(heads) == depth
    assert [head.index("+---") for head in heads[:3]] == [1, 6, 11]
    assert ferrovent.joinall(chain, timeout=10) == chain
