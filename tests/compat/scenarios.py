"""Scenarios that must behave the same on stock gevent and on ferrovent.

Each scenario is a function ``(lib, trace)``: ``lib`` is the imported implementation (``gevent`` or ``ferrovent``)
and ``trace`` a list the scenario appends JSON-able observations to. ``runner.py`` runs one scenario per process;
``test_scenarios.py`` checks the trace against the expected one written here and against gevent's own trace.

Orderings here come from FIFO scheduling and from deadlines that are far apart, never from racing two clocks.
This module must not import gevent or ferrovent: it is also imported by the test process.
"""

from __future__ import annotations

import importlib
import json
import re
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import greenlet


@dataclass(frozen=True)
class Scenario:
    func: Callable[[Any, list], None]
    expected: list
    # Exception type names the hub must report on stderr ("... failed with ValueError"), in order.
    reports: tuple[str, ...]


SCENARIOS: dict[str, Scenario] = {}


def scenario(expected: list, reports: tuple[str, ...] = ()) -> Callable:
    def register(func: Callable[[Any, list], None]) -> Callable[[Any, list], None]:
        # Round-trip through JSON so tuples compare equal to the lists the runner sends back.
        SCENARIOS[func.__name__] = Scenario(func, json.loads(json.dumps(expected)), tuple(reports))
        return func

    return register


def errors(lib):
    """``lib.exceptions``: gevent keeps LoopExit and friends there, not at the top level."""
    return importlib.import_module(f"{lib.__name__}.exceptions")


def yielder(lib, name: str, turns: int) -> str:
    """Yield ``turns`` times with sleep(0), then return ``name``: finishing order follows from FIFO scheduling."""
    for _ in range(turns):
        lib.sleep(0)
    return name


def normalize_repr(text: str) -> str:
    text = re.sub(r"0x[0-9a-fA-F]+", "0xADDR", text)
    return re.sub(r"Greenlet-\d+", "Greenlet-N", text)


# --- scheduling -------------------------------------------------------------------------------------------------


@scenario(expected=["main", "a", "b", "c", "d", "joined"])
def spawn_runs_in_fifo_order(lib, trace):
    a = lib.spawn(trace.append, "a")
    lib.spawn_raw(trace.append, "b")
    c = lib.Greenlet(trace.append, "c")
    c.start()
    d = lib.spawn(trace.append, "d")
    trace.append("main")  # spawning never runs the function inline
    lib.joinall([a, c, d])
    trace.append("joined")


@scenario(expected=["main0", "a0", "b0", "main1", "a1", "b1", "main2", "a2", "b2"])
def sleep_zero_is_round_robin(lib, trace):
    def worker(name):
        for i in range(3):
            trace.append(f"{name}{i}")
            lib.sleep(0)

    workers = [lib.spawn(worker, "a"), lib.spawn(worker, "b")]
    for i in range(3):
        trace.append(f"main{i}")
        lib.sleep(0)
    lib.joinall(workers)


@scenario(expected=["c", "b", "d", "a", ["started before running", True, False], ["killed spawn_later", True]])
def spawn_later_runs_by_deadline(lib, trace):
    lib.spawn_later(0.09, trace.append, "a")
    lib.spawn_later(0.03, trace.append, "b")
    lib.spawn(trace.append, "c")
    d = lib.Greenlet(trace.append, "d")
    d.start_later(0.06)
    started, dead = d.started, d.dead
    lib.wait()
    trace.append(["started before running", started, dead])
    never = lib.spawn_later(10, trace.append, "never")
    never.kill()
    trace.append(["killed spawn_later", never.dead])


@scenario(expected=["idle start", "busy0", "busy1", "busy2", "busy3", "idle woke"])
def idle_waits_until_nothing_else_is_runnable(lib, trace):
    def idler():
        trace.append("idle start")
        lib.idle()
        trace.append("idle woke")

    def busy():
        for i in range(4):
            trace.append(f"busy{i}")
            lib.sleep(0)

    lib.joinall([lib.spawn(idler), lib.spawn(busy)])


@scenario(expected=[["the due timer ran before the burst was through", True], ["every burst greenlet ran", True]])
def a_due_timer_is_not_held_back_by_a_burst_of_spawns(lib, trace):
    # 2,000 greenlets of 0.1 ms of CPU each are 200 ms of ready work; a timer due after 10 ms runs once the current
    # switch interval is over, not after all of them.
    burst, started = 2_000, []

    def spin(i):
        started.append(i)
        until = time.perf_counter() + 0.0001
        while time.perf_counter() < until:
            pass

    def timed():
        lib.sleep(0.01)
        trace.append(["the due timer ran before the burst was through", len(started) < burst])

    waiters = [lib.spawn(timed)]
    lib.sleep(0)  # the timed greenlet arms its timer before the burst exists
    waiters += [lib.spawn(spin, i) for i in range(burst)]
    lib.joinall(waiters)
    trace.append(["every burst greenlet ran", started == list(range(burst))])


@scenario(expected=[["wait() with only an unreferenced sleeper", True, False, True], ["killed", True]])
def unreferenced_sleep_does_not_keep_the_loop_alive(lib, trace):
    sleeper = lib.spawn(lib.sleep, 10, ref=False)
    started = time.monotonic()
    finished = lib.wait()
    trace.append(["wait() with only an unreferenced sleeper", finished, sleeper.dead, time.monotonic() - started < 5])
    sleeper.kill()
    trace.append(["killed", sleeper.dead])


# --- Timeout ----------------------------------------------------------------------------------------------------


@scenario(
    expected=[
        ["a caught its own timeout", True],
        "b slept undisturbed",
        ["both successful", True, True],
        ["main caught its own timeout", True, False],
        ["slow", "slow done"],
    ]
)
def timeout_fires_in_the_greenlet_that_started_it(lib, trace):
    def with_deadline():
        timeout = lib.Timeout(0.02)
        timeout.start()
        try:
            lib.sleep(5)
        except lib.Timeout as exc:
            trace.append(["a caught its own timeout", exc is timeout])
        finally:
            timeout.cancel()

    def bystander():
        lib.sleep(0.1)
        trace.append("b slept undisturbed")

    a, b = lib.spawn(with_deadline), lib.spawn(bystander)
    lib.joinall([a, b])
    trace.append(["both successful", a.successful(), b.successful()])

    def slow():
        lib.sleep(0.15)
        return "slow done"

    worker = lib.spawn(slow)
    timeout = lib.Timeout(0.02)
    try:
        with timeout:
            worker.join()
    except lib.Timeout as exc:
        trace.append(["main caught its own timeout", exc is timeout, worker.dead])
    trace.append(["slow", worker.get()])


@scenario(
    expected=[
        ["new", False],
        ["started", True],
        ["cancelled", False],
        "slept past the deadline",
        ["start_new", True],
        ["closed", False],
        ["inside with", True],
        ["after with", False],
        "cancelled by another greenlet",
        "slept past every deadline",
        ["restarted timeout fires", True],
    ]
)
def cancelled_timeout_never_fires(lib, trace):
    timeout = lib.Timeout(0.01)
    trace.append(["new", timeout.pending])
    timeout.start()
    trace.append(["started", timeout.pending])
    timeout.cancel()
    trace.append(["cancelled", timeout.pending])
    lib.sleep(0.05)
    trace.append("slept past the deadline")

    closed = lib.Timeout.start_new(0.01)
    trace.append(["start_new", closed.pending])
    closed.close()
    trace.append(["closed", closed.pending])

    with lib.Timeout(0.01) as scoped:
        trace.append(["inside with", scoped.pending])
    trace.append(["after with", scoped.pending])

    remote = lib.Timeout.start_new(0.1)
    lib.spawn(remote.cancel)
    lib.sleep(0)
    trace.append("cancelled by another greenlet")
    lib.sleep(0.15)
    trace.append("slept past every deadline")

    timeout.start()
    try:
        lib.sleep(5)
    except lib.Timeout as exc:
        trace.append(["restarted timeout fires", exc is timeout])


@scenario(expected=[["caught", "inner"], ["outer still pending", True], ["after", False, False]])
def nested_timeouts_inner_fires_first(lib, trace):
    outer, inner = lib.Timeout(0.5), lib.Timeout(0.02)
    with outer:
        try:
            with inner:
                lib.sleep(5)
        except lib.Timeout as exc:
            trace.append(["caught", "inner" if exc is inner else "outer"])
        trace.append(["outer still pending", outer.pending])
    trace.append(["after", outer.pending, inner.pending])


@scenario(expected=[["caught", "outer"], ["after", False, False]])
def nested_timeouts_outer_fires_first(lib, trace):
    # The inner Timeout is silent (exception=False): its with-block swallows only its own expiry, not the outer's.
    outer, inner = lib.Timeout(0.02), lib.Timeout(0.5, False)
    try:
        with outer:
            with inner:
                lib.sleep(5)
            trace.append("inner with-block swallowed the outer timeout")
    except lib.Timeout as exc:
        trace.append(["caught", "inner" if exc is inner else "outer"])
    trace.append(["after", outer.pending, inner.pending])


@scenario(expected=["before", ["after silent timeout", False]])
def silent_timeout_is_swallowed_by_its_own_with(lib, trace):
    trace.append("before")
    with lib.Timeout(0.01, False) as timeout:
        lib.sleep(5)
        trace.append("not reached")
    trace.append(["after silent timeout", timeout.pending])


@scenario(expected=[["instance", "ValueError", True], ["class", "KeyError"], ["message", "Timeout", True]])
def timeout_raises_the_given_exception(lib, trace):
    custom = ValueError("custom")
    try:
        with lib.Timeout(0.01, custom):
            lib.sleep(5)
    except ValueError as exc:
        trace.append(["instance", type(exc).__name__, exc is custom])
    try:
        with lib.Timeout(0.01, KeyError):
            lib.sleep(5)
    except KeyError as exc:
        trace.append(["class", type(exc).__name__])
    timeout = lib.Timeout(0.01, "a message is not an exception")
    try:
        with timeout:
            lib.sleep(5)
    except lib.Timeout as exc:
        trace.append(["message", type(exc).__name__, exc is timeout])


@scenario(
    expected=[
        ["raised", "Timeout"],
        ["timeout_value", "tv"],
        ["in time", 3],
        ["kwargs passed", ["a"]],
        "a Timeout that is not with_timeout's own propagates",
    ]
)
def with_timeout_returns_or_raises(lib, trace):
    def slow(x):
        lib.sleep(5)
        return x

    try:
        lib.with_timeout(0.01, slow, 1)
    except lib.Timeout as exc:
        trace.append(["raised", type(exc).__name__])
    trace.append(["timeout_value", lib.with_timeout(0.01, slow, 1, timeout_value="tv")])
    trace.append(["in time", lib.with_timeout(1, lambda x, y: x + y, 1, y=2)])
    trace.append(["kwargs passed", lib.with_timeout(1, lambda **kw: sorted(kw), a=1, timeout_value="not passed")])

    def own_timeout():
        with lib.Timeout(0.01):
            lib.sleep(5)

    try:
        lib.with_timeout(1, own_timeout, timeout_value="tv")
    except lib.Timeout:
        trace.append("a Timeout that is not with_timeout's own propagates")


# --- killing ----------------------------------------------------------------------------------------------------


def _sleeper(lib, trace, name):
    try:
        trace.append([name, "sleeping"])
        lib.sleep(10)
    except BaseException as exc:
        trace.append([name, "got", type(exc).__name__])
        raise


@scenario(
    expected=[
        ["g", "sleeping"],
        ["g", "got", "GreenletExit"],
        ["kill", True, True, True, "GreenletExit", None],
        ["h", "sleeping"],
        ["kill(block=False) returns at once", False],
        ["h", "got", "GreenletExit"],
        ["joined", True],
        ["i", "sleeping"],
        ["module kill() does not block", False],
        ["i", "got", "GreenletExit"],
        ["joined", True],
        ["x", "sleeping"],
        ["y", "sleeping"],
        ["x", "got", "GreenletExit"],
        ["y", "got", "GreenletExit"],
        ["killall", [True, True], ["GreenletExit", "GreenletExit"]],
    ]
)
def kill_a_sleeping_greenlet(lib, trace):
    g = lib.spawn(_sleeper, lib, trace, "g")
    lib.sleep(0)
    g.kill()
    trace.append(["kill", g.dead, g.ready(), g.successful(), type(g.value).__name__, g.exception])

    h = lib.spawn(_sleeper, lib, trace, "h")
    lib.sleep(0)
    h.kill(block=False)
    trace.append(["kill(block=False) returns at once", h.dead])
    h.join()
    trace.append(["joined", h.dead])

    i = lib.spawn(_sleeper, lib, trace, "i")
    lib.sleep(0)
    lib.kill(i)
    trace.append(["module kill() does not block", i.dead])
    i.join()
    trace.append(["joined", i.dead])

    group = [lib.spawn(_sleeper, lib, trace, name) for name in "xy"]
    lib.sleep(0)
    lib.killall(group)
    trace.append(["killall", [g.dead for g in group], [type(g.value).__name__ for g in group]])


@scenario(
    expected=[
        ["killed", True, True, True, "GreenletExit", None, False],
        ["link", True],
        ["rawlink", True],
        "after yield",
        ["killall before start", [True, True], ["GreenletExit", "GreenletExit"]],
        ["throw before start", True, "GreenletExit"],
        "nothing ran",
    ]
)
def kill_before_start_never_runs(lib, trace):
    g = lib.spawn(trace.append, "ran")
    g.link(lambda source: trace.append(["link", source is g]))
    g.rawlink(lambda source: trace.append(["rawlink", source is g]))
    g.kill()
    trace.append(["killed", g.dead, g.ready(), g.successful(), type(g.value).__name__, g.exception, g.started])
    lib.sleep(0)  # links run from the loop, not inside kill()
    trace.append("after yield")

    group = [lib.spawn(trace.append, "ran") for _ in range(2)]
    lib.killall(group)
    trace.append(["killall before start", [x.dead for x in group], [type(x.value).__name__ for x in group]])

    thrown = lib.spawn(trace.append, "ran")
    thrown.throw(lib.GreenletExit)
    trace.append(["throw before start", thrown.dead, type(thrown.value).__name__])
    lib.sleep(0.02)
    trace.append("nothing ran")


@scenario(expected=[["caught", "ValueError", "t"], ["value", "handled"]])
def throw_raises_inside_the_greenlet(lib, trace):
    def catcher():
        try:
            lib.sleep(10)
        except ValueError as exc:
            trace.append(["caught", type(exc).__name__, str(exc)])
            return "handled"

    g = lib.spawn(catcher)
    lib.sleep(0)
    # throw() switches into the target at once and does not reschedule the caller, so call it from a raw greenlet.
    lib.spawn_raw(g.throw, ValueError("t"))
    trace.append(["value", g.get()])


# --- waiting ----------------------------------------------------------------------------------------------------


@scenario(expected=[["early", True], ["late starter", True], ["after the wake-up", False]])
def event_set_then_clear_wakes_whoever_waits_before_the_wake_up_runs(lib, trace):
    # set() wakes its waiters from a callback queued behind the work already queued; a greenlet already spawned
    # but not yet started, which waits on the event before that wake-up runs, is woken too, even though clear()
    # came in between. One spawned after set() and clear() starts after the wake-up: it waits for the next set().
    from importlib import import_module

    event = import_module(f"{lib.__name__}.event").Event()

    def waiter(name, timeout=None):
        trace.append([name, event.wait(timeout)])

    early = lib.spawn(waiter, "early")
    lib.sleep(0)  # early is waiting; late has not started yet
    late = lib.spawn(waiter, "late starter")
    event.set()
    event.clear()
    after = lib.spawn(waiter, "after the wake-up", 0.05)
    lib.joinall([early, late, after], raise_error=True)


@scenario(
    expected=[
        ["timeout returns the finished ones", ["quick"], False],
        ["count returns the first ones in finishing order", ["b", "c"], False],
        ["raise_error", "bad", False],
        ["keywords", ["k"]],
    ],
    reports=("ValueError",),
)
def joinall_timeout_count_and_raise_error(lib, trace):
    quick = lib.spawn(yielder, lib, "quick", 1)
    never = lib.spawn(lib.sleep, 10)
    done = lib.joinall([quick, never], timeout=0.1)
    trace.append(["timeout returns the finished ones", [g.value for g in done], never.dead])

    a, b, c = (lib.spawn(yielder, lib, name, turns) for name, turns in (("a", 3), ("b", 1), ("c", 2)))
    done = lib.joinall([never, a, b, c], count=2)
    trace.append(["count returns the first ones in finishing order", [g.value for g in done], never.dead])
    lib.joinall([a])

    def fail():
        raise ValueError("bad")

    failing, long_runner = lib.spawn(fail), lib.spawn(yielder, lib, "ok", 10)
    try:
        lib.joinall([failing, long_runner], raise_error=True)
    except ValueError as exc:
        trace.append(["raise_error", str(exc), long_runner.dead])
    k = lib.spawn(yielder, lib, "k", 1)
    done = lib.joinall(greenlets=[k], timeout=None, raise_error=False, count=None)
    trace.append(["keywords", [g.value for g in done]])
    lib.killall([never, long_runner])


@scenario(
    expected=[
        ["iwait", ["b", "c", "a"]],
        ["wait", ["b", "c", "a"]],
        ["iwait count", ["b"]],
        ["iwait and wait with timeout", [], []],
        ["already finished", ["b"]],
        ["wait() until the loop is empty", True, True],
    ]
)
def iwait_and_wait_yield_in_finishing_order(lib, trace):
    def trio():
        return [lib.spawn(yielder, lib, name, turns) for name, turns in (("a", 3), ("b", 1), ("c", 2))]

    trace.append(["iwait", [g.value for g in lib.iwait(trio())]])
    trace.append(["wait", [g.value for g in lib.wait(trio())]])
    greenlets = trio()
    trace.append(["iwait count", [g.value for g in lib.iwait(greenlets, count=1)]])
    lib.joinall(greenlets)

    never = lib.spawn(lib.sleep, 10)
    trace.append(
        ["iwait and wait with timeout", list(lib.iwait([never], timeout=0.01)), lib.wait([never], timeout=0.01)]
    )
    never.kill()
    trace.append(["already finished", [g.value for g in lib.wait([greenlets[1]])]])

    late = lib.spawn(yielder, lib, "late", 3)
    trace.append(["wait() until the loop is empty", lib.wait(), late.dead])


@scenario(
    expected=[
        ["LoopExit in main while waiting", False],
        ["killed", True, "GreenletExit"],
        "LoopExit joining a greenlet in an unreferenced sleep",
        "LoopExit for an unreferenced sleep in main",
        ["wait()", True],
    ]
)
def loop_exit_when_nothing_can_wake_main(lib, trace):
    LoopExit = errors(lib).LoopExit

    def forgotten():
        lib.get_hub().switch()  # nothing will ever switch back

    g = lib.spawn(forgotten)
    try:
        lib.wait([g])
        trace.append("wait returned")
    except LoopExit:
        trace.append(["LoopExit in main while waiting", g.dead])
    g.kill()  # the hub keeps working after LoopExit
    trace.append(["killed", g.dead, type(g.value).__name__])

    unreferenced = lib.spawn(lib.sleep, 10, ref=False)
    try:
        unreferenced.join()
        trace.append("join returned")
    except LoopExit:
        trace.append("LoopExit joining a greenlet in an unreferenced sleep")
    unreferenced.kill()

    try:
        lib.sleep(1, ref=False)
        trace.append("unreferenced sleep in main returned")
    except LoopExit:
        trace.append("LoopExit for an unreferenced sleep in main")
    trace.append(["wait()", lib.wait()])


# --- Greenlet ---------------------------------------------------------------------------------------------------


@scenario(
    expected=[
        ["a", "a"],
        ["b", "unset"],
        ["a sees its own after b ran", "a"],
        ["main", "main"],
        ["copied context runs with main's value", "main"],
    ]
)
def contextvars_module_values_are_per_greenlet(lib, trace):
    from importlib import import_module

    contextvars = import_module(f"{lib.__name__}.contextvars")
    var = contextvars.ContextVar("var", default="unset")

    def first():
        var.set("a")
        trace.append(["a", var.get()])
        lib.sleep(0)
        trace.append(["a sees its own after b ran", var.get()])

    def second():
        trace.append(["b", var.get()])

    lib.joinall([lib.spawn(first), lib.spawn(second)])
    var.set("main")
    trace.append(["main", var.get()])
    context = contextvars.copy_context()
    trace.append(["copied context runs with main's value", lib.spawn(context.run, var.get).get()])


@scenario(
    expected=[
        ["new", False, False, False, False, None, None],
        ["scheduled", True, False, False],
        ["running", True, True, False, False],
        ["suspended", True, False, False],
        ["finished", False, True, True, True, "result", None],
        ["failed", False, True, True, False, None, "KeyError"],
        ["main is not a Greenlet", False],
    ],
    reports=("KeyError",),
)
def greenlet_attributes_at_each_stage(lib, trace):
    def work():
        me = lib.getcurrent()
        trace.append(["running", me is g, me.started, me.dead, me.ready()])
        lib.sleep(0)
        return "result"

    g = lib.Greenlet(work)
    trace.append(["new", g.started, g.ready(), g.dead, g.successful(), g.value, g.exception])
    g.start()
    trace.append(["scheduled", g.started, g.ready(), g.dead])
    lib.sleep(0)
    trace.append(["suspended", g.started, g.ready(), g.dead])
    g.join()
    # `started` is bool(g): true only between start() and the end, so it reads False once finished.
    trace.append(["finished", g.started, g.ready(), g.dead, g.successful(), g.value, g.exception])

    def fail():
        raise KeyError("k")

    bad = lib.spawn(fail)
    bad.join()
    trace.append(
        ["failed", bad.started, bad.ready(), bad.dead, bad.successful(), bad.value, type(bad.exception).__name__]
    )
    trace.append(["main is not a Greenlet", isinstance(lib.getcurrent(), lib.Greenlet)])


@scenario(
    expected=[
        ["repr", "<Greenlet at 0xADDR: f(5)>"],
        ["repr with kwargs", "<Greenlet at 0xADDR: f(1, n=5)>"],
        ["default name", True],
        ["named", "worker", '<Greenlet "worker" at 0xADDR: f(5)>'],
        ["repr when dead", '<Greenlet "worker" at 0xADDR: f(5)>'],
    ]
)
def greenlet_repr_and_name(lib, trace):
    def f(*args, **kwargs):
        return args

    g = lib.spawn(f, 5)
    trace.append(["repr", normalize_repr(repr(g))])
    trace.append(["repr with kwargs", normalize_repr(repr(lib.spawn(f, 1, n=5)))])
    trace.append(["default name", re.fullmatch(r"Greenlet-\d+", lib.spawn(f).name) is not None])
    g.name = "worker"
    trace.append(["named", g.name, normalize_repr(repr(g))])
    g.join()
    trace.append(["repr when dead", normalize_repr(repr(g))])
    lib.wait()


@scenario(
    expected=[
        ["get raised", "boom", True, True],
        ["get again", True],
        ["state", True, False, "ValueError('boom')"],
        "block=False raises Timeout",
        "timeout raises Timeout",
        ["still alive", False],
        ["get value", 7],
    ],
    reports=("ValueError",),
)
def get_reraises_or_returns(lib, trace):
    def fail():
        raise ValueError("boom")

    g = lib.spawn(fail)
    try:
        g.get()
    except ValueError as exc:
        frames = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
        trace.append(["get raised", str(exc), exc is g.exception, "fail" in frames])
    try:
        g.get()
    except ValueError as exc:
        trace.append(["get again", exc is g.exception])
    trace.append(["state", g.dead, g.successful(), repr(g.exception)])

    live = lib.spawn(lib.sleep, 10)
    try:
        live.get(block=False)
    except lib.Timeout:
        trace.append("block=False raises Timeout")
    try:
        live.get(timeout=0.01)
    except lib.Timeout:
        trace.append("timeout raises Timeout")
    trace.append(["still alive", live.dead])
    live.kill()
    trace.append(["get value", lib.spawn(lambda: 7).get()])


@scenario(
    expected=[
        "work",
        ["link", True],
        ["link_value", True],
        ["rawlink", True],
        "joined",
        "fail",
        ["link", True],
        ["link_exception", "KeyError('k')"],
        "joined failing",
        "linked after death",
        ["late link", True],
        "slow link starts",
        "rawlink after slow link",
        "joined slow",
        "slow link ends",
    ],
    reports=("KeyError",),
)
def links_fire_in_registration_order(lib, trace):
    def work():
        trace.append("work")
        return 42

    def add_links(g):
        g.link(lambda source: trace.append(["link", source is g]))
        g.link_value(lambda source: trace.append(["link_value", source is g]))
        g.link_exception(lambda source: trace.append(["link_exception", repr(source.exception)]))

        def unlinked(source):
            trace.append("unlinked callback ran")

        g.link(unlinked)
        g.rawlink(unlinked)
        g.unlink(unlinked)
        g.unlink(unlinked)

    g = lib.spawn(work)
    add_links(g)
    g.rawlink(lambda source: trace.append(["rawlink", source is g]))
    g.join()  # links registered before join() fire before it returns
    trace.append("joined")

    def fail():
        trace.append("fail")
        raise KeyError("k")

    bad = lib.spawn(fail)
    add_links(bad)
    bad.join()
    trace.append("joined failing")

    bad.link(lambda source: trace.append(["late link", source is bad]))
    trace.append("linked after death")  # the callback runs from the loop, not inside link()
    lib.sleep(0)

    def slow_link(source):
        trace.append("slow link starts")
        lib.sleep(0.1)  # link() callbacks run in their own greenlet and may block
        trace.append("slow link ends")

    quick = lib.spawn(lambda: None)
    quick.link(slow_link)
    quick.rawlink(lambda source: trace.append("rawlink after slow link"))
    quick.join()
    trace.append("joined slow")
    lib.wait()


@scenario(
    expected=[
        ["joined and dead on exit", True, "v"],
        ["body exception propagates", "KeyError"],
        ["greenlet killed with it", True, "KeyError"],
    ],
    reports=("KeyError",),
)
def greenlet_as_context_manager(lib, trace):
    def short():
        lib.sleep(0)
        return "v"

    with lib.Greenlet(short) as g:
        g.start()
    trace.append(["joined and dead on exit", g.dead, g.value])

    sleeper = lib.spawn(lib.sleep, 10)
    try:
        with sleeper:
            lib.sleep(0)
            raise KeyError("body")
    except KeyError as exc:
        trace.append(["body exception propagates", type(exc).__name__])
    trace.append(["greenlet killed with it", sleeper.dead, type(sleeper.exception).__name__])


@scenario(
    expected=[
        ["spawn_raw returns a raw greenlet", False, True],
        ["ran", [1, 2], {"k": 3}],
    ]
)
def spawn_raw_runs_a_plain_greenlet(lib, trace):
    raw = lib.spawn_raw(lambda *args, **kwargs: trace.append(["ran", list(args), kwargs]), 1, 2, k=3)
    trace.append(
        ["spawn_raw returns a raw greenlet", isinstance(raw, lib.Greenlet), isinstance(raw, greenlet.greenlet)]
    )
    lib.sleep(0)


# --- errors -----------------------------------------------------------------------------------------------------


@scenario(
    expected=[
        ["other", 0],
        ["other", 1],
        ["other", 2],
        ["failed greenlet", "ValueError", False],
        ["other finished", True],
        "the hub still runs",
    ],
    reports=("ValueError",),
)
def failing_greenlet_is_reported_and_others_go_on(lib, trace):
    def f(n):
        raise ValueError(f"bad {n}")

    def other():
        for i in range(3):
            trace.append(["other", i])
            lib.sleep(0)

    g, o = lib.spawn(f, 5), lib.spawn(other)
    lib.joinall([g, o])
    trace.append(["failed greenlet", type(g.exception).__name__, g.successful()])
    trace.append(["other finished", o.successful()])
    lib.sleep(0.01)
    trace.append("the hub still runs")


@scenario(expected=[["BlockingSwitchOutError in a hub callback", True], "joined"])
def blocking_inside_the_hub_raises(lib, trace):
    BlockingSwitchOutError = errors(lib).BlockingSwitchOutError

    def callback(source):
        try:
            lib.sleep(0.01)
            trace.append("slept inside the hub")
        except BlockingSwitchOutError:
            trace.append(["BlockingSwitchOutError in a hub callback", lib.getcurrent() is lib.get_hub()])

    g = lib.spawn(lambda: None)
    g.rawlink(callback)  # rawlink callbacks run in the hub itself
    g.join()
    trace.append("joined")


@scenario(expected=["InvalidSwitchError from join", ["still sleeping", False], ["killed", True]])
def unexpected_switch_into_join_raises(lib, trace):
    InvalidSwitchError = errors(lib).InvalidSwitchError
    main = lib.getcurrent()
    sleeper = lib.spawn(lib.sleep, 10)
    lib.spawn(main.switch, "bogus")
    try:
        sleeper.join()
        trace.append("join returned")
    except InvalidSwitchError:
        trace.append("InvalidSwitchError from join")
    trace.append(["still sleeping", sleeper.dead])
    sleeper.kill()
    trace.append(["killed", sleeper.dead])


# --- the monitoring thread ----------------------------------------------------------------------------------------


@scenario(
    expected=[
        ["quiet while switching", 0],
        ["reported", 1, True, True, True],
        ["once", 1],
    ]
)
def monitoring_thread_reports_a_blocked_loop_once(lib, trace):
    import io

    events = importlib.import_module(f"{lib.__name__}.events")
    RealEvent = importlib.import_module(f"{lib.__name__}.monkey").get_original("threading", "Event")
    lib.config.monitor_thread = True
    lib.config.max_blocking_time = 0.1
    hub = lib.get_hub()
    hub.exception_stream = stream = io.StringIO()
    blocked, arrived = [], RealEvent()

    def collect(event):
        if isinstance(event, events.EventLoopBlocked):
            blocked.append(event)
            arrived.set()

    events.subscribers.append(collect)
    lib.sleep(0.01)  # the hub runs, and starts its monitoring thread
    monitor = hub.periodic_monitoring_thread

    def switching():  # busy, but every greenlet yields to the loop often
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            lib.sleep(0.005)

    lib.joinall([lib.spawn(switching) for _ in range(3)])
    trace.append(["quiet while switching", len(blocked)])

    real_sleep = importlib.import_module(f"{lib.__name__}.monkey").get_original("time", "sleep")

    def culprit():
        arrived.wait(10)  # a real wait: the whole thread, and so the loop, stops until the report
        # The monitor notifies before it prints (gevent's order too): still blocking, wait until the report is out.
        deadline = time.monotonic() + 10
        while blocked and "\n".join(blocked[0].info) not in stream.getvalue() and time.monotonic() < deadline:
            real_sleep(0.01)

    guilty = lib.spawn(culprit)
    guilty.join()
    report = stream.getvalue()
    trace.append(
        ["reported", len(blocked), blocked[0].greenlet is guilty, "in culprit" in report, "arrived.wait(10)" in report]
    )
    deadline = time.monotonic() + 0.5  # five more looks, the loop running: no second report
    while time.monotonic() < deadline:
        lib.sleep(0.02)
    trace.append(["once", len(blocked)])
    monitor.kill()


@scenario(
    expected=[
        ["next hub, same loop", True, True, True],
        ["watchers kept", True, True],
        ["fired under the next hub", ["io", "timer"]],
        ["callback queued before destroy", True],
        ["after destroy_loop=True", True, True, True],
    ]
)
def the_default_loop_outlives_its_hub(lib, trace):
    import socket as stdlib_socket

    hub = lib.get_hub()
    loop = hub.loop
    lib.sleep(0)  # the hub has run
    fired = []
    timer = loop.timer(0.02)
    timer.start(fired.append, "timer")
    reader, writer = stdlib_socket.socketpair()
    io = loop.io(reader.fileno(), 1)
    io.start(lambda: (fired.append("io"), io.stop()))
    callback = loop.run_callback(fired.append, "callback")
    hub.destroy()
    successor = lib.get_hub()
    trace.append(["next hub, same loop", successor is not hub, successor.loop is loop, loop.default])
    trace.append(["watchers kept", timer.active, io.active])
    writer.send(b"x")
    deadline = time.monotonic() + 5
    while len(fired) < 2 and time.monotonic() < deadline:
        lib.sleep(0.005)
    trace.append(["fired under the next hub", sorted(fired)])
    trace.append(["callback queued before destroy", bool(callback.pending)])
    successor.destroy(destroy_loop=True)
    fresh = lib.get_hub()
    trace.append(["after destroy_loop=True", fresh.loop is not loop, fresh.loop.default, loop.ptr in (None, 0)])
    reader.close()
    writer.close()


@scenario(expected=[["default", False], ["destroyed with its hub", True], ["kept when told", True, False]])
def a_threads_loop_is_kept_only_when_told(lib, trace):
    import threading

    def in_thread():
        hub = lib.get_hub()
        loop = hub.loop
        trace.append(["default", loop.default])
        hub.destroy()
        trace.append(["destroyed with its hub", lib.get_hub().loop is not loop and loop.ptr in (None, 0)])
        hub = lib.get_hub()
        loop = hub.loop
        hub.destroy(destroy_loop=False)
        successor = lib.get_hub()
        trace.append(["kept when told", successor.loop is loop, loop.default])
        successor.destroy(destroy_loop=True)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(10)
