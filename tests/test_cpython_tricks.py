"""Stress tests for the CPython-internals tricks: the frame-chunk cache and small frame stacks (rust/cpython/).

Each scenario is one a user can hit: another allocator installed after import, deep stacks, frames and tracebacks
that outlive their greenlet, garbage collection, threads and fork with greenlets parked, tracers, bursts. They
also pass with the tricks switched off (FERROVENT_SMALL_STACKS=0, FERROVENT_ARENA_CACHE=0), as CI runs them.
Scenarios whose effect is process-wide (the allocator, the one-time probe, fork, RSS) run in a fresh interpreter.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import traceback

import ferrovent
import pytest
from ferrovent import _core
from ferrovent.event import Event

from tests.child import run_child

pytestmark = pytest.mark.timeout(60)

TRICKS_TESTED = sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:2] <= (3, 13)
SWITCHED_OFF = {"FERROVENT_SMALL_STACKS": "0", "FERROVENT_ARENA_CACHE": "0"}
SWITCHED_ON = {name: "1" for name in SWITCHED_OFF}


def descend(depth: int, then):
    """Recurses `depth` Python frames (a few hundred bytes each), then calls `then`."""
    if depth:
        return descend(depth - 1, then)
    return then()


def idle_after_a_burst(count: int = 3000) -> None:
    """Runs and finishes a burst of greenlets, then lets the loop block long enough to give memory back."""
    ferrovent.joinall([ferrovent.spawn(descend, i % 50, lambda: None) for i in range(count)])
    ferrovent.sleep(0.05)


@pytest.mark.skipif(not TRICKS_TESTED, reason="the tricks run on CPython 3.11-3.13 only")
def test_tricks_are_on_unless_switched_off():
    ferrovent.spawn(lambda: None).join()
    assert _core.small_frame_stacks() is (os.environ.get("FERROVENT_SMALL_STACKS") != "0")
    assert _core.arena_cache() is (os.environ.get("FERROVENT_ARENA_CACHE") != "0")


def test_each_switch_turns_its_trick_off_and_the_cache_switch_leaves_the_allocator_alone():
    code = """
        import ctypes, json, sys
        class Arena(ctypes.Structure):
            _fields_ = [("ctx", ctypes.c_void_p), ("alloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]
        def current():
            arena = Arena()
            ctypes.pythonapi.PyObject_GetArenaAllocator(ctypes.byref(arena))
            return (arena.ctx, arena.alloc, arena.free)
        before = current()
        import ferrovent
        from ferrovent import _core
        ferrovent.spawn(lambda: None).join()
        print(json.dumps([_core.small_frame_stacks(), _core.arena_cache(), current() == before]))
    """
    runs = {
        "small stacks off": {**SWITCHED_ON, "FERROVENT_SMALL_STACKS": "0"},
        "cache off": {**SWITCHED_ON, "FERROVENT_ARENA_CACHE": "off"},
        "both off": SWITCHED_OFF,
    }
    seen = {name: run_child(code, env=env).stdout.strip() for name, env in runs.items()}
    assert seen["both off"] == "[false, false, true]"
    # Small stacks need the cache: without it, each call across their shallow chunk boundary maps a chunk.
    assert seen["cache off"] == "[false, false, true]"
    if TRICKS_TESTED:
        assert seen["small stacks off"] == "[false, true, false]"


# A loop in a greenlet that calls a function at each depth in turn: at one of them (a few calls deep with small
# stacks) the callee's frame starts a new frame-stack chunk, which CPython takes and frees on every call.
CALLS_AT_EACH_DEPTH = """
    import json, resource
    import ferrovent

    def leaf():
        return 1

    def descend(depth):
        if depth:
            return descend(depth - 1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        assert sum(leaf() for _ in range(2000)) == 2000
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    print(json.dumps([ferrovent.spawn(descend, depth).get() for depth in range(40)]))
"""


@pytest.mark.parametrize("env", [SWITCHED_ON, {"FERROVENT_ARENA_CACHE": "0"}, {"FERROVENT_SMALL_STACKS": "0"}])
def test_a_call_across_a_chunk_boundary_does_not_map_a_chunk_each_time(env):
    # A freshly mapped chunk costs at least one page fault when CPython writes its header.
    faults = json.loads(run_child(CALLS_AT_EACH_DEPTH, env=env).stdout)
    assert len(faults) == 40 and max(faults) < 200, faults


# The allocator a profiler or an embedder saved before ferrovent was imported, put back after greenlets ran.
REPLACE_ALLOCATOR = """
    import ctypes, gc, sys

    class Arena(ctypes.Structure):
        _fields_ = [("ctx", ctypes.c_void_p), ("alloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]

    api = ctypes.pythonapi
    saved = Arena()
    api.PyObject_GetArenaAllocator(ctypes.byref(saved))

    import ferrovent
    from ferrovent import _core
    from ferrovent.event import Event

    def descend(depth, then):
        return descend(depth - 1, then) if depth else then()

    def burst(release):
        greenlets = [ferrovent.spawn(descend, i % 300, release.wait) for i in range(3000)]
        ferrovent.sleep(0)
        return greenlets

    first, second = Event(), Event()
    parked = burst(first)
    api.PyObject_SetArenaAllocator(ctypes.byref(saved))
    assert not _core.arena_cache()
    parked += burst(second)          # started under the restored allocator
    first.set()
    second.set()
    results = [g.get(timeout=30) for g in parked]
    assert results == [True] * len(parked), results[:5]
    del parked
    gc.collect()
    ferrovent.sleep(0.05)             # idle: a trim would run now
    ferrovent.joinall([ferrovent.spawn(descend, 400, lambda: 1) for _ in range(500)])
    print("ok")
"""


def test_restoring_an_allocator_saved_before_import_is_safe():
    assert run_child(REPLACE_ALLOCATOR, timeout=60).stdout.strip() == "ok"


def test_deep_recursion_then_park_then_resume():
    release = Event()
    depths = [0, 1, 10, 60, 200, 700]
    greenlets = [ferrovent.spawn(descend, d, lambda d=d: (release.wait(), d)[1]) for d in depths * 50]
    ferrovent.sleep(0)
    idle_after_a_burst()  # memory the parked greenlets do not use is given back meanwhile
    release.set()
    assert [g.get(timeout=30) for g in greenlets] == depths * 50


def fail_at_depth(depth: int, secret: str):
    marker = f"local-{depth}"  # noqa: F841 - read back from the traceback's frames
    if depth:
        return fail_at_depth(depth - 1, secret)
    raise ValueError(secret)


def test_tracebacks_kept_after_the_greenlet_died_stay_readable():
    greenlets = [ferrovent.spawn(fail_at_depth, depth, f"secret-{depth}") for depth in (0, 5, 150, 600)]
    ferrovent.joinall(greenlets)
    assert all(g.dead and isinstance(g.exception, ValueError) for g in greenlets)
    idle_after_a_burst()  # their stacks' chunks are recycled or given back by now
    for g, depth in zip(greenlets, (0, 5, 150, 600)):
        _, exc, tb = g.exc_info
        frames = [frame for frame, _ in traceback.walk_tb(tb)]
        ours = [frame for frame in frames if frame.f_code.co_name == "fail_at_depth"]
        assert len(ours) == depth + 1
        assert [frame.f_locals["marker"] for frame in ours] == [f"local-{d}" for d in range(depth, -1, -1)]
        assert all(frame.f_locals["secret"] == f"secret-{depth}" for frame in ours)
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        assert f"ValueError: secret-{depth}" in text


def test_frames_of_parked_greenlets_can_be_walked():
    release = Event()

    def parked_at(depth: int, label: str):
        here = f"{label}-{depth}"  # noqa: F841 - read back through gr_frame
        if depth:
            return parked_at(depth - 1, label)
        release.wait()
        return label

    labels = [f"g{i}" for i in range(300)]
    greenlets = [ferrovent.spawn(parked_at, i % 40, label) for i, label in enumerate(labels)]
    ferrovent.sleep(0)
    idle_after_a_burst()
    for _ in range(2):
        for i, g in enumerate(greenlets):
            frame, seen = g.gr_frame, []
            while frame is not None:
                if frame.f_code.co_name == "parked_at":
                    seen.append(frame.f_locals["here"])
                frame = frame.f_back
            assert seen == [f"{labels[i]}-{d}" for d in range(0, i % 40 + 1)]
        gc.collect()
    release.set()
    assert [g.get(timeout=30) for g in greenlets] == labels


def test_gc_storms_with_thousands_parked():
    release = Event()
    ended = []

    class Cycle:
        def __init__(self):
            self.me = self

    def parked(i: int):
        junk = [Cycle() for _ in range(3)]  # noqa: F841 - garbage with cycles kept alive in the frame
        try:
            descend(i % 30, release.wait)
        finally:
            ended.append(i)

    thresholds = gc.get_threshold()
    gc.set_threshold(50, 2, 2)  # collections all the time, in the middle of switches and frame pushes
    try:
        greenlets = [ferrovent.spawn(parked, i) for i in range(6000)]
        ferrovent.sleep(0)
        ferrovent.killall(greenlets[:3000:3], timeout=30)  # killed while parked: their stacks unwind
        for _ in range(3):
            gc.collect()
            idle_after_a_burst(1000)
        assert sorted(ended) == list(range(0, 3000, 3))
        release.set()
        ferrovent.joinall(greenlets, timeout=30)
    finally:
        gc.set_threshold(*thresholds)
    assert sorted(ended) == list(range(6000))


def test_threads_ending_with_parked_greenlets():
    code = """
        import gc, threading
        import ferrovent

        def descend(depth, then):
            return descend(depth - 1, then) if depth else then()

        def worker(destroy):
            for i in range(200):
                ferrovent.spawn(descend, i % 60, lambda: ferrovent.sleep(3600))
            ferrovent.sleep(0.01)
            if destroy:
                ferrovent.get_hub().destroy()

        for round in range(3):
            threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(4)]
            [t.start() for t in threads]
            [t.join(30) for t in threads]
            assert not any(t.is_alive() for t in threads)
            gc.collect()
            ferrovent.joinall([ferrovent.spawn(descend, i % 80, lambda: None) for i in range(2000)])
            ferrovent.sleep(0.05)
        print("ok")
    """
    assert run_child(code, timeout=60).stdout.strip() == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_with_parked_greenlets():
    code = """
        import os
        import ferrovent
        from ferrovent.event import Event

        def descend(depth, then):
            return descend(depth - 1, then) if depth else then()

        release = Event()
        parked = [ferrovent.spawn(descend, i % 100, lambda i=i: (release.wait(), i)[1]) for i in range(2000)]
        ferrovent.sleep(0)
        pid = ferrovent.fork()
        if pid == 0:
            # The child resumes its copies of the parked greenlets, and runs bursts of its own.
            ferrovent.joinall([ferrovent.spawn(descend, i % 50, lambda: None) for i in range(3000)])
            ferrovent.sleep(0.05)
            release.set()
            ok = [g.get(timeout=30) for g in parked] == list(range(2000))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        release.set()
        assert [g.get(timeout=30) for g in parked] == list(range(2000))
        print("ok")
    """
    assert run_child(code, timeout=60).stdout.strip() == "ok"


@pytest.mark.skipif(not TRICKS_TESTED, reason="the probe runs on CPython 3.11-3.13 only")
def test_the_probe_runs_nothing_a_tracer_sees_and_a_greenlet_tracer_only_delays_it():
    code = """
        import sys, threading
        import greenlet
        import ferrovent
        from ferrovent import _core

        events = []
        def tracer(frame, event, arg):
            events.append((frame.f_code.co_name, frame.f_code.co_filename))
            return tracer
        def switches(event, args):
            events.append(("greenlet", event))

        previous = greenlet.settrace(switches)
        sys.settrace(tracer)
        sys.setprofile(lambda frame, event, arg: events.append((frame.f_code.co_name, event)))
        ferrovent.spawn(lambda: sum(range(3))).join()
        sys.settrace(None)
        sys.setprofile(None)
        # The greenlet tracer ran Python code on the new greenlet's stack first: not fresh, so not learnt yet.
        assert _core.small_frame_stacks() is None, _core.small_frame_stacks()
        greenlet.settrace(previous)
        sys.settrace(tracer)
        ferrovent.spawn(lambda: None).join()
        sys.settrace(None)
        assert _core.small_frame_stacks() is True
        assert not [e for e in events if "probe" in str(e)], events
        print("ok")
    """
    assert run_child(code, env=SWITCHED_ON).stdout.strip() == "ok"


def test_a_burst_leaves_rss_near_its_pre_burst_figure_and_few_mappings():
    code = """
        import gc, os
        import ferrovent
        from ferrovent.event import Event

        def rss():
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        def mappings():
            with open("/proc/self/maps") as maps:
                return sum(1 for _ in maps)

        ferrovent.sleep(0.01)
        before, maps_before = rss(), mappings()
        go = Event()
        greenlets = [ferrovent.spawn(go.wait) for _ in range(100_000)]
        ferrovent.sleep(0)
        peak, maps_peak = rss(), mappings()
        go.set()
        ferrovent.joinall(greenlets)
        del greenlets
        gc.collect()
        ferrovent.sleep(0.2)  # the loop blocks: idle
        print(before, peak, rss(), maps_peak - maps_before)
    """
    before, peak, after, new_mappings = map(int, run_child(code, env=SWITCHED_ON, timeout=60).stdout.split())
    assert peak > 4 * before, "the burst did not grow the process: the test measures nothing"
    if TRICKS_TESTED and sys.platform == "linux":
        assert after < 2 * before, f"RSS {before >> 20} MiB before the burst, {after >> 20} MiB after it"
        # Over 100 MiB of slabs, mapped one after the other, merge into a few mappings.
        assert new_mappings < 50, new_mappings


def test_greenlets_in_many_threads_at_once():
    errors = []

    def worker(n: int):
        try:
            results = [ferrovent.spawn(descend, i % 70, lambda i=i: i) for i in range(500)]
            ferrovent.joinall(results)
            assert [g.value for g in results] == list(range(500))
            ferrovent.sleep(0.03)
            ferrovent.get_hub().destroy()
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append((n, exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert not any(t.is_alive() for t in threads)
