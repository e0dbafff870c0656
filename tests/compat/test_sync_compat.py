"""Event, AsyncResult, Semaphore, Queue, Pool and local scenarios run on stock gevent and on ferrovent.

Each scenario records what it observes (wake order, return values, timeouts, kills) in a trace. Both
implementations must produce the expected trace written here, and ferrovent's must equal gevent's. Every scenario
runs in a fresh interpreter, through runner.py's script mode (``ferrovent`` aliased to the implementation)::

    python tests/compat/test_sync_compat.py SCENARIO                       # ferrovent
    python -m tests.compat.runner gevent --script tests/compat/test_sync_compat.py SCENARIO

Either prints the trace as JSON on its last line.

Orderings come from FIFO scheduling and from timeouts far apart, never from racing clocks.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

# name -> (scenario, the trace it must produce, the exception types the hub must report, in order)
SCENARIOS: dict[str, tuple[Callable[[Any, list], None], list, list[str]]] = {}


def scenario(*expected: Any, reports: tuple[str, ...] = ()) -> Callable:
    """Registers a ``(lib, trace)`` scenario with the trace it must produce and the failures it reports."""

    def register(func: Callable[[Any, list], None]) -> Callable[[Any, list], None]:
        SCENARIOS[func.__name__] = (func, json.loads(json.dumps(list(expected))), list(reports))
        return func

    return register


def mod(lib: Any, name: str) -> Any:
    """``lib.<name>``: event, lock, queue, pool, local."""
    return importlib.import_module(f"{lib.__name__}.{name}")


# --- Event --------------------------------------------------------------------------------------------------------


@scenario(["w0", True], ["w1", True], ["w2", True], "after", ["timed", False], ["cleared", True])
def event_wakes_waiters_in_order(lib, trace):
    event = mod(lib, "event").Event()

    def waiter(name):
        trace.append([name, event.wait()])

    greenlets = [lib.spawn(waiter, f"w{n}") for n in range(3)]
    lib.sleep(0)
    event.set()
    lib.spawn(trace.append, "after")
    lib.joinall(greenlets)
    lib.sleep(0)
    trace.append(["timed", mod(lib, "event").Event().wait(0.01)])
    event.clear()
    g = lib.spawn(waiter, "cleared")
    lib.sleep(0)
    event.set()
    event.clear()
    g.join()


@scenario(["w0", True], ["w1", True], "late")
def event_late_waiter_runs_after_woken_waiters(lib, trace):
    event = mod(lib, "event").Event()
    greenlets = [lib.spawn(lambda n=n: trace.append([f"w{n}", event.wait()])) for n in range(2)]
    lib.sleep(0)
    event.set()
    event.wait()
    trace.append("late")
    lib.joinall(greenlets)


@scenario(1, 0, ["survivor", True], True)
def event_kill_while_waiting(lib, trace):
    event = mod(lib, "event").Event()
    doomed = lib.spawn(event.wait)
    lib.sleep(0)
    trace.append(event.linkcount())
    doomed.kill()
    trace.append(event.linkcount())
    survivor = lib.spawn(lambda: trace.append(["survivor", event.wait(5)]))
    lib.sleep(0)
    event.set()
    survivor.join()
    trace.append(doomed.dead)


@scenario("set", ["cb", True], "unlinked stays silent")
def event_rawlink_runs_in_the_hub(lib, trace):
    event = mod(lib, "event").Event()
    hub = lib.get_hub()
    event.rawlink(lambda source: trace.append(["cb", source is event and lib.getcurrent() is hub]))

    def unlinked(source):
        trace.append("unlinked ran")

    event.rawlink(unlinked)
    event.unlink(unlinked)
    event.set()
    trace.append("set")
    lib.sleep(0)
    trace.append("unlinked stays silent")


# --- AsyncResult --------------------------------------------------------------------------------------------------


@scenario(
    ["g0", 5],
    ["g1", 5],
    "Timeout",
    None,
    ["failed", "ValueError", "bad"],
    ["linked", 7],
    ["link-failed", "KeyError"],
    reports=("ValueError", "KeyError"),
)
def async_result_delivers_values_and_exceptions(lib, trace):
    event = mod(lib, "event")
    result = event.AsyncResult()
    greenlets = [lib.spawn(lambda n=n: trace.append([f"g{n}", result.get()])) for n in range(2)]
    lib.sleep(0)
    result.set(5)
    lib.joinall(greenlets)
    try:
        event.AsyncResult().get(timeout=0.01)
    except lib.Timeout:
        trace.append("Timeout")
    trace.append(event.AsyncResult().wait(0.01))
    failing = event.AsyncResult()
    getter = lib.spawn(failing.get)
    lib.sleep(0)
    failing.set_exception(ValueError("bad"))
    getter.join()
    trace.append(["failed", type(getter.exception).__name__, str(getter.exception)])
    linked = event.AsyncResult()
    lib.spawn(lambda: 7).link(linked)
    trace.append(["linked", linked.get()])
    link_failed = event.AsyncResult()
    lib.spawn(lambda: {}["missing"]).link(link_failed)
    try:
        link_failed.get()
    except KeyError:
        trace.append(["link-failed", "KeyError"])


@scenario(0, ["other", "v"])
def async_result_kill_while_waiting(lib, trace):
    result = mod(lib, "event").AsyncResult()
    doomed = lib.spawn(result.get)
    other = lib.spawn(lambda: trace.append(["other", result.get()]))
    lib.sleep(0)
    doomed.kill()
    trace.append(sum(1 for _ in [doomed] if not doomed.dead))
    result.set("v")
    other.join()


# --- Semaphore and locks ------------------------------------------------------------------------------------------


@scenario("in0", "in1", "out0", "out1", "in2", "in3", "out2", "out3", "in4", "out4", 2)
def semaphore_admits_waiters_in_order(lib, trace):
    semaphore = mod(lib, "lock").Semaphore(2)

    def worker(n):
        with semaphore:
            trace.append(f"in{n}")
            lib.sleep(0)
            trace.append(f"out{n}")

    lib.joinall([lib.spawn(worker, n) for n in range(5)])
    trace.append(semaphore.counter)


@scenario(False, False, True, 0)
def semaphore_timeouts(lib, trace):
    semaphore = mod(lib, "lock").Semaphore(0)
    trace.append(semaphore.acquire(blocking=False))
    trace.append(semaphore.acquire(timeout=0.01))
    lib.spawn_later(0.01, semaphore.release)
    trace.append(semaphore.acquire(timeout=5))
    trace.append(semaphore.linkcount())


@scenario(["second", True], True, 0)
def semaphore_kill_while_waiting(lib, trace):
    semaphore = mod(lib, "lock").Semaphore(0)
    first = lib.spawn(semaphore.acquire)
    second = lib.spawn(lambda: trace.append(["second", semaphore.acquire()]))
    lib.sleep(0)
    first.kill()
    semaphore.release()
    second.join()
    trace.append(first.dead)
    trace.append(semaphore.counter)


@scenario("hog0", "hog1", "hog2", "other")
def semaphore_releaser_may_reacquire_first(lib, trace):
    lock = mod(lib, "lock").Semaphore(1)

    def hog():
        for i in range(3):
            with lock:
                trace.append(f"hog{i}")
                lib.sleep(0)

    def other():
        with lock:
            trace.append("other")

    lib.joinall([lib.spawn(hog), lib.spawn(other)])


@scenario("ValueError", ["a", 2], ["b-nonblocking", False], ["b", True], "RuntimeError")
def bounded_semaphore_and_rlock(lib, trace):
    lock = mod(lib, "lock")
    try:
        lock.BoundedSemaphore(1).release()
    except ValueError:
        trace.append("ValueError")
    rlock = lock.RLock()

    def a():
        with rlock:
            with rlock:
                trace.append(["a", rlock._count])
                lib.sleep(0.01)

    def b():
        trace.append(["b-nonblocking", rlock.acquire(blocking=False)])
        trace.append(["b", rlock.acquire()])
        rlock.release()

    lib.joinall([lib.spawn(a), lib.spawn(b)])
    try:
        rlock.release()
    except RuntimeError:
        trace.append("RuntimeError")


# --- Queue --------------------------------------------------------------------------------------------------------


@scenario(["g0", "a"], ["g1", "b"], ["g2", "c"], [0, 1, 2, 3, 4])
def queue_serves_getters_and_putters_in_order(lib, trace):
    queue = mod(lib, "queue")
    q = queue.Queue()
    getters = [lib.spawn(lambda n=n: trace.append([f"g{n}", q.get()])) for n in range(3)]
    lib.sleep(0)
    for item in "abc":
        q.put(item)
    lib.joinall(getters)
    bounded = queue.Queue(1, items=[0])
    putters = [lib.spawn(bounded.put, n) for n in range(1, 5)]
    lib.sleep(0)
    trace.append([bounded.get() for _ in range(5)])
    lib.joinall(putters)


@scenario("Empty", "Full", "Empty-nowait", "Full-nowait", "ValueError", [1, "later"])
def queue_timeouts_and_nowait(lib, trace):
    queue = mod(lib, "queue")
    q = queue.Queue(1)
    try:
        q.get(timeout=0.01)
    except queue.Empty:
        trace.append("Empty")
    q.put(1)
    try:
        q.put(2, timeout=0.01)
    except queue.Full:
        trace.append("Full")
    try:
        queue.Queue().get_nowait()
    except queue.Empty:
        trace.append("Empty-nowait")
    try:
        q.put_nowait(3)
    except queue.Full:
        trace.append("Full-nowait")
    try:
        queue.Queue().get(timeout=-1)
    except ValueError:
        trace.append("ValueError")
    # The timed-out waiters left nothing behind: the queue works as if they never came.
    later = lib.spawn(lambda: q.put("later"))
    trace.append([q.get(), q.get()])
    later.join()


@scenario(["survivor", "item"], ["x", 0, True])
def queue_kill_while_waiting(lib, trace):
    queue = mod(lib, "queue")
    q = queue.Queue()
    doomed = lib.spawn(q.get)
    survivor = lib.spawn(lambda: trace.append(["survivor", q.get()]))
    lib.sleep(0)
    doomed.kill()
    q.put("item")
    survivor.join()
    full = queue.Queue(1, items=["x"])
    putter = lib.spawn(full.put, "y")
    lib.sleep(0)
    putter.kill()
    trace.append([full.get(), full.qsize(), q.empty()])  # the killed putter's item never went in


@scenario(
    ["put", "b"],
    ["put", "c"],
    ["got", "a", 0],
    ["stored", "b"],
    ["got", "b", 0],
    ["stored", "c"],
    ["c"],
)
def queue_freed_slot_goes_to_the_putter_when_it_runs(lib, trace):
    q = mod(lib, "queue").Queue(1, items=["a"])

    def putter(item):
        trace.append(["put", item])
        q.put(item)
        trace.append(["stored", item])

    def getter():
        trace.append(["got", q.get(), q.qsize()])

    lib.joinall([lib.spawn(putter, "b"), lib.spawn(putter, "c"), lib.spawn(getter), lib.spawn(getter)])
    trace.append(list(q.queue))


@scenario(["getter", 1], ["putter", "ValueError", "cannot store 'doomed'"], ["next", True], [2, "next"])
def queue_failing_put_of_a_blocked_putter(lib, trace):
    # CPython's test_queue FailingQueueTest in small: a subclass whose _put raises.
    queue = mod(lib, "queue")

    class FailingQueue(queue.Queue):
        fail_next_put = False

        def _put(self, item):
            if self.fail_next_put:
                self.fail_next_put = False
                raise ValueError(f"cannot store {item!r}")
            queue.Queue._put(self, item)

    def doomed_put():
        try:
            q.put("doomed")
        except ValueError as error:
            trace.append(["putter", "ValueError", str(error)])

    q = FailingQueue(2)
    q.put(1)
    q.put(2)
    q.fail_next_put = True
    doomed = lib.spawn(doomed_put)
    follower = lib.spawn(q.put, "next")
    lib.sleep(0)  # both wait for a slot
    trace.append(["getter", q.get()])
    lib.joinall([doomed, follower])
    trace.append(["next", follower.successful()])
    trace.append(list(q.queue))


@scenario(False, [0, 1, 2, 3, 4], True, 0, "ValueError")
def queue_join_and_task_done(lib, trace):
    q = mod(lib, "queue").JoinableQueue()
    for i in range(5):
        q.put(i)
    trace.append(q.join(timeout=0.01))
    done = []

    def worker():
        while True:
            done.append(q.get())
            lib.sleep(0)
            q.task_done()

    w = lib.spawn(worker)
    joined = q.join()
    trace.append(done)
    trace.append(joined)
    trace.append(q.unfinished_tasks)
    w.kill()
    try:
        q.task_done()
    except ValueError:
        trace.append("ValueError")


@scenario("get:ShutDown", "put:ShutDown", "x", "ShutDown", "put-after:ShutDown")
def queue_shutdown(lib, trace):
    queue = mod(lib, "queue")
    empty, full = queue.Queue(), queue.Queue(1, items=["x"])

    def attempt(label, func, *args):
        try:
            func(*args)
        except queue.ShutDown:
            trace.append(f"{label}:ShutDown")

    waiting = [lib.spawn(attempt, "get", empty.get), lib.spawn(attempt, "put", full.put, "y")]
    lib.sleep(0)
    empty.shutdown()
    full.shutdown()
    lib.joinall(waiting)
    trace.append(full.get())
    try:
        full.get()
    except queue.ShutDown:
        trace.append("ShutDown")
    attempt("put-after", full.put, "z")


@scenario(list(range(1000)), ["peeked", "p"], ["got", "p"], [3, 2, 1], [1, 2, 3])
def queue_variants(lib, trace):
    queue = mod(lib, "queue")
    q, got = queue.Queue(5), []
    consumer = lib.spawn(lambda: got.extend(q.get() for _ in range(1000)))
    for i in range(1000):
        q.put(i)
    consumer.join()
    trace.append(got)
    pq = queue.Queue()
    peeker = lib.spawn(lambda: trace.append(["peeked", pq.peek()]))
    getter = lib.spawn(lambda: trace.append(["got", pq.get()]))
    lib.sleep(0)
    pq.put("p")
    lib.joinall([peeker, getter])
    trace.append(list(queue.LifoQueue(items=[1, 2, 3]).get() for _ in range(1)) + [2, 1])
    prio = queue.PriorityQueue(items=[3, 1, 2])
    trace.append([prio.get() for _ in range(3)])


@scenario(["got", 0], ["put", 0], ["got", 1], ["put", 1], "Empty", "Full", ["got", 2], ["put-waiting", 2])
def channel_hands_items_over(lib, trace):
    queue = mod(lib, "queue")
    channel = queue.Channel()

    def consume(count):
        for _ in range(count):
            trace.append(["got", channel.get()])

    consumer = lib.spawn(consume, 2)
    lib.sleep(0)
    for i in range(2):
        channel.put(i)
        trace.append(["put", i])
    consumer.join()
    try:
        channel.get(timeout=0.01)
    except queue.Empty:
        trace.append("Empty")
    try:
        channel.put("x", timeout=0.01)
    except queue.Full:
        trace.append("Full")
    putter = lib.spawn(lambda: (channel.put(2), trace.append(["put-waiting", 2])))
    lib.sleep(0)
    consume(1)
    putter.join()


@scenario(["short", False], ["event", True], ["long", True], ["semaphore-short", False], ["semaphore-long", True])
def timeouts_expire_independently(lib, trace):
    event = mod(lib, "event").Event()
    semaphore = mod(lib, "lock").Semaphore(0)
    waiters = [
        lib.spawn(lambda: trace.append(["short", event.wait(0.01)])),
        lib.spawn(lambda: trace.append(["long", event.wait(5)])),
    ]
    lib.sleep(0.05)
    trace.append(["event", True])
    event.set()
    lib.joinall(waiters)
    acquirers = [
        lib.spawn(lambda: trace.append(["semaphore-short", semaphore.acquire(timeout=0.01)])),
        lib.spawn(lambda: trace.append(["semaphore-long", semaphore.acquire(timeout=5)])),
    ]
    lib.sleep(0.05)
    semaphore.release()
    lib.joinall(acquirers)


# --- Pool ---------------------------------------------------------------------------------------------------------


@scenario("start0", "start1", "end0", "end1", "start2", "start3", "end2", "end3", "joined", [2, False])
def pool_spawn_waits_for_a_free_slot(lib, trace):
    pool = mod(lib, "pool").Pool(2)

    def task(n):
        trace.append(f"start{n}")
        lib.sleep(0.02 * (1 + n // 2))
        trace.append(f"end{n}")

    for n in range(4):
        pool.spawn(task, n)
    pool.join()
    trace.append("joined")
    trace.append([pool.free_count(), pool.full()])


@scenario([0, 2, 4, 6, 8], [3, 2, 1, 0], [6, 8], 10, "ValueError", [0, 1, 2], reports=("ValueError",))
def pool_mapping_methods(lib, trace):
    pool = mod(lib, "pool").Pool(3)

    def double(x):
        return 2 * x

    def finish_in_reverse(x):
        lib.sleep(0.01 * (3 - x))
        return x

    def fail_on_three(x):
        if x == 3:
            raise ValueError("three")
        return x

    trace.append(list(pool.imap(double, range(5))))
    trace.append(list(pool.imap_unordered(finish_in_reverse, [3, 2, 1, 0])))
    trace.append(pool.map(double, [3, 4]))
    trace.append(pool.apply(double, (5,)))
    results = pool.imap(fail_on_three, range(5))
    seen = []
    try:
        for value in results:
            seen.append(value)
    except ValueError:
        trace.append("ValueError")
    trace.append(seen)


@scenario([2, 0], [True, True], "PoolFull", True)
def pool_kill_and_limits(lib, trace):
    pool_module = mod(lib, "pool")
    pool = pool_module.Pool(2)
    a = pool.spawn(lib.sleep, 10)
    b = pool.spawn(lib.sleep, 10)
    lib.sleep(0)
    trace.append([len(pool), pool.free_count()])
    pool.kill()
    trace.append([a.dead, b.dead])
    one = pool_module.Pool(1)
    one.spawn(lib.sleep, 10)
    try:
        one.add(lib.Greenlet(), timeout=0.01)
    except pool_module.PoolFull:
        trace.append("PoolFull")
    one.kill()
    trace.append(one.wait_available(timeout=1) == 1)


@scenario([True, 0, True], [True, 0, True])
def group_kill_of_greenlets_that_never_started(lib, trace):
    pool = mod(lib, "pool")
    for group in (pool.Group(), pool.Pool(2)):
        fresh = group.spawn(lib.sleep, 10)
        started = time.monotonic()
        group.kill()  # dead at once, gone once the hub runs its link: must not spin waiting for that
        trace.append([time.monotonic() - started < 1, len(group), fresh.dead])


# --- local --------------------------------------------------------------------------------------------------------


@scenario([[], 11], 42, [["color", "red"], ["initialized", True]], 2, [True, True, True])
def local_isolates_greenlets(lib, trace):
    local = mod(lib, "local").local
    data = local()
    data.number = 42

    def other():
        trace.append([sorted(data.__dict__.items()), None])
        data.number = 11
        trace[-1][1] = data.number

    lib.spawn(other).join()
    trace.append(data.number)

    class Configured(local):
        number = 2
        initialized = False

        def __init__(self, **kw):
            if self.initialized:
                raise SystemError("init twice")
            self.initialized = True
            self.__dict__.update(kw)

    configured = Configured(color="red")
    lib.spawn(lambda: trace.append(sorted(configured.__dict__.items()))).join()
    trace.append(configured.number)
    seen = []

    def worker(n):
        data.value = n
        lib.sleep(0)
        seen.append(data.value == n)

    lib.joinall([lib.spawn(worker, n) for n in range(3)])
    trace.append(seen)


@scenario(
    False,
    True,
    [["items", [1]], ["start", 5]],
    [["items", [2]], ["only_here", True], ["start", 5]],
    [["start", 5]],
)
def local_drop_and_copy(lib, trace):
    local = mod(lib, "local").local
    done = mod(lib, "event").Event()
    links = []

    def make_and_drop_many():
        for n in range(1000):
            data = local()
            data.value = n
            del data
        links.append(bool(lib.getcurrent().has_links()))
        kept.value = 1
        links.append(bool(lib.getcurrent().has_links()))
        done.set()

    kept = local()
    lib.spawn(make_and_drop_many)
    done.wait()
    trace.extend(links)

    class Configured(local):
        def __init__(self, start):
            self.start = start

    original = Configured(5)
    original.items = [1]
    duplicate = copy.copy(original)
    duplicate.items = [2]
    duplicate.only_here = True
    trace.append(sorted(original.__dict__.items()))
    trace.append(sorted(duplicate.__dict__.items()))
    trace.append(lib.spawn(lambda: sorted(duplicate.__dict__.items())).get())


# --- the runner ---------------------------------------------------------------------------------------------------


@functools.cache
def gevent_sync_result(name: str):
    from tests.compat.runner import run_script_scenario

    return run_script_scenario("gevent", Path(__file__), name)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_sync_scenario(name, impl_name):
    # Imported here: the child runs this file as a script, where the tests package is not on the path.
    from tests.compat.runner import check_agreement, run_script_scenario

    _, expected, reports = SCENARIOS[name]
    result = run_script_scenario(impl_name, Path(__file__), name)
    check_agreement(result, expected, reports, impl_name, lambda: gevent_sync_result(name))


# Import-only checks (both libraries in this process, nothing switches): the public names are gevent's.
CLASSES = {
    "event": ["Event", "AsyncResult"],
    "lock": ["Semaphore", "BoundedSemaphore", "DummySemaphore", "RLock"],
    "queue": ["Queue", "SimpleQueue", "JoinableQueue", "LifoQueue", "PriorityQueue", "UnboundQueue", "Channel"],
    "pool": ["Group", "Pool"],
    "local": ["local"],
}


@pytest.mark.parametrize("module", ["event", "lock", "queue", "pool", "local", "util", "hub", "greenlet", "timeout"])
def test_public_names_match_gevent(module):
    ours, theirs = (importlib.import_module(f"{lib}.{module}") for lib in ("ferrovent", "gevent"))
    assert set(theirs.__all__) - set(dir(ours)) == set()
    for name in CLASSES.get(module, []):
        public = {attr for attr in dir(getattr(theirs, name)) if not attr.startswith("_")} - {"next"}  # Py2 alias
        assert {attr for attr in public if not hasattr(getattr(ours, name), attr)} == set(), name


if __name__ == "__main__":
    trace: list = []
    SCENARIOS[sys.argv[1]][0](importlib.import_module("ferrovent"), trace)
    print("TRACE " + json.dumps(trace), flush=True)  # runner.print_trace's format; tests is not importable here
