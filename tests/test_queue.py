"""ferrovent.queue: the Queue family and Channel: ordering, blocking, timeouts, kills, join and shutdown."""

from __future__ import annotations

import collections
import gc
import queue as stdlib_queue
import time
import weakref

import ferrovent
import pytest
from ferrovent.queue import (
    Channel,
    Empty,
    Full,
    JoinableQueue,
    LifoQueue,
    PriorityQueue,
    Queue,
    ShutDown,
    SimpleQueue,
    UnboundQueue,
)

pytestmark = pytest.mark.timeout(10)


def collect(q, log, name, count=1, method="get"):
    """Takes ``count`` items from ``q`` (with ``method``), recording ``(name, item)`` for each."""
    for _ in range(count):
        log.append((name, getattr(q, method)()))


def test_exceptions_are_the_stdlib_ones():
    assert Empty is stdlib_queue.Empty and Full is stdlib_queue.Full
    assert issubclass(ShutDown, Exception)
    assert JoinableQueue is Queue


def test_fifo_sizes_and_truth():
    q = Queue(3, items=[1, 2])
    assert q.qsize() == len(q) == 2 and not q.empty() and not q.full() and q.maxsize == 3
    q.put(3)
    assert q.full() and q.unfinished_tasks == 3
    assert [q.get(), q.get(), q.get()] == [1, 2, 3]
    assert q.empty() and bool(q) is True
    assert "maxsize=3" in repr(q)


def test_zero_or_negative_maxsize_means_unbounded():
    with pytest.warns(DeprecationWarning):
        q = Queue(0)
    assert q.maxsize is None and not q.full()
    assert SimpleQueue(-1).maxsize is None
    for i in range(1000):
        q.put(i)
    assert not q.full()


def test_class_getitem():
    assert Queue[int].__origin__ is Queue
    assert Channel[str].__origin__ is Channel


def test_nowait_and_timeouts():
    q = Queue(1)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.peek_nowait()
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.02)
    assert time.monotonic() - start >= 0.015
    q.put_nowait("x")
    with pytest.raises(Full):
        q.put_nowait("y")
    with pytest.raises(Full):
        q.put("y", timeout=0.01)
    with pytest.raises(ValueError):
        Queue().put(1, timeout=-1)
    with pytest.raises(ValueError):
        Queue().get(timeout=-1)
    assert q.getters == q.putters == type(q.getters)()  # timeouts leave no waiter behind


@pytest.mark.parametrize("timeout", [None, 5])
def test_a_getter_whose_item_was_taken_before_it_ran_stays_first_in_line(timeout):
    q, log = Queue(), []
    first = ferrovent.spawn(lambda: log.append(("first", q.get(timeout=timeout))))
    ferrovent.sleep(0)
    second = ferrovent.spawn(lambda: log.append(("second", q.get(timeout=timeout))))
    ferrovent.sleep(0)
    q.put("a")  # wakes the first getter...
    assert q.get_nowait() == "a"  # ...whose item is taken before it runs
    ferrovent.sleep(0)  # it finds nothing and waits again, at the front
    q.put("b")
    q.put("c")
    ferrovent.joinall([first, second], timeout=1)
    assert log == [("first", "b"), ("second", "c")]


def test_blocked_getters_are_served_in_order():
    q, log = Queue(), []
    greenlets = [ferrovent.spawn(collect, q, log, n) for n in range(4)]
    ferrovent.sleep(0)
    for item in "abcd":
        q.put(item)
    ferrovent.joinall(greenlets)
    assert log == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]


def test_blocked_putters_keep_their_order():
    q = Queue(1, items=["first"])
    greenlets = [ferrovent.spawn(q.put, n) for n in range(4)]
    ferrovent.sleep(0)
    assert len(q.putters) == 4
    assert [q.get() for _ in range(5)] == ["first", 0, 1, 2, 3]
    ferrovent.joinall(greenlets)
    assert all(g.successful() for g in greenlets)


class FailingQueue(Queue):
    """A stdlib-style subclass whose next ``_put`` raises when told to (CPython's test_queue has one)."""

    fail_next_put = False

    def _put(self, item):
        if self.fail_next_put:
            self.fail_next_put = False
            raise ValueError(f"cannot store {item!r}")
        Queue._put(self, item)


def test_a_blocked_putters_failing_put_raises_in_the_putter():
    q = FailingQueue(2, items=[1, 2])
    q.fail_next_put = True
    putter = ferrovent.spawn(q.put, "doomed")
    follower = ferrovent.spawn(q.put, "next")
    ferrovent.sleep(0)
    assert q.get() == 1  # the getter gets its item; the putter stores its own when it runs
    ferrovent.joinall([putter, follower])
    assert isinstance(putter.exception, ValueError)
    assert follower.successful()  # the slot the failed put left went to the next putter
    assert list(q.queue) == [2, "next"] and q.unfinished_tasks == 3


def test_the_putter_woken_for_a_slot_runs_its_put_itself():
    q, log = Queue(1, items=["a"]), []

    def putter(item):
        log.append(("put", item))
        q.put(item)
        log.append(("stored", item))

    def getter():
        log.append(("got", q.get(), q.qsize()))

    greenlets = [ferrovent.spawn(putter, "b"), ferrovent.spawn(putter, "c"), ferrovent.spawn(getter)]
    greenlets.append(ferrovent.spawn(getter))
    ferrovent.joinall(greenlets)
    # gevent's order: the freed slot is not counted until its putter runs; the second getter waits for "b".
    assert log == [
        ("put", "b"),
        ("put", "c"),
        ("got", "a", 0),
        ("stored", "b"),
        ("got", "b", 0),
        ("stored", "c"),
    ]
    assert list(q.queue) == ["c"]


def test_a_putter_killed_after_its_wake_passes_the_slot_on():
    q = Queue(1, items=[0])
    doomed = ferrovent.spawn(q.put, "doomed")
    nxt = ferrovent.spawn(q.put, "next")
    ferrovent.sleep(0)
    ferrovent.get_hub().loop.throw(doomed, ferrovent.GreenletExit())  # delivered before ...
    assert q.get() == 0  # ... the wake this gives the first putter: it dies before it can store its item
    nxt.join(timeout=1)
    assert nxt.successful() and list(q.queue) == ["next"]


def test_a_get_in_the_hub_stores_the_next_putters_item_first():
    q = FailingQueue(1, items=[0])
    first = ferrovent.spawn(q.put, "first")
    second = ferrovent.spawn(q.put, "second")
    ferrovent.sleep(0)
    out = []
    assert q.get() == 0  # the first putter is woken, not run yet
    ferrovent.get_hub().loop.run_callback(lambda: out.append(q.get()))  # the hub cannot wait for it to run
    ferrovent.joinall([first, second])
    assert out == ["first"] and first.successful() and second.successful() and list(q.queue) == ["second"]
    # If storing fails there, the error is the putter's.
    doomed = ferrovent.spawn(q.put, "doomed")
    ferrovent.sleep(0)
    q.fail_next_put = True
    assert q.get() == "second"

    def get_in_the_hub():
        try:
            out.append(q.get())
        except Empty:
            out.append("Empty")

    ferrovent.get_hub().loop.run_callback(get_in_the_hub)
    doomed.join()
    assert isinstance(doomed.exception, ValueError) and out[1:] == ["Empty"] and q.empty()


def test_bounded_producer_consumer_delivers_everything_in_order():
    q, got = Queue(5), []

    def consume():
        for _ in range(1000):
            got.append(q.get())

    consumer = ferrovent.spawn(consume)
    for i in range(1000):
        q.put(i)
    consumer.join()
    assert got == list(range(1000))


def test_get_that_waited_still_lets_a_non_waiting_getter_take_first():
    q, log = Queue(), []
    g = ferrovent.spawn(collect, q, log, "waiter")
    ferrovent.sleep(0)
    q.put(1)
    assert q.get_nowait() == 1  # taken before the woken waiter runs, as in gevent
    ferrovent.sleep(0)
    assert log == [] and len(q.getters) == 1
    q.put(2)
    g.join()
    assert log == [("waiter", 2)]


def test_killing_a_getter_or_putter_unlinks_it():
    q = Queue(1, items=[0])
    putter = ferrovent.spawn(q.put, 1)
    getter = ferrovent.spawn(Queue().get)
    ferrovent.sleep(0)
    putter.kill()
    assert not q.putters
    getter.kill()
    assert q.get() == 0 and q.empty()


def test_a_getter_killed_after_its_wake_passes_the_item_on():
    q, log = Queue(), []
    doomed = ferrovent.spawn(q.get)
    nxt = ferrovent.spawn(collect, q, log, "next")
    ferrovent.sleep(0)
    ferrovent.get_hub().loop.throw(doomed, ferrovent.GreenletExit())
    q.put("item")
    nxt.join()
    assert log == [("next", "item")]


def test_a_stray_wake_does_not_end_a_get():
    q, log = Queue(), []
    g = ferrovent.spawn(collect, q, log, "g")
    ferrovent.sleep(0)
    ferrovent.get_hub().loop.wake(g, "stray")
    ferrovent.sleep(0)
    assert log == [] and len(q.getters) == 1
    q.put("real")
    g.join()
    assert log == [("g", "real")]


def test_peek_waits_without_taking_and_lets_a_getter_have_the_item():
    q, log = Queue(), []
    peeker = ferrovent.spawn(collect, q, log, "peek", method="peek")
    getter = ferrovent.spawn(collect, q, log, "get")
    ferrovent.sleep(0)
    q.put("x")
    ferrovent.joinall([peeker, getter])
    assert log == [("peek", "x"), ("get", "x")]
    assert q.empty()
    q.put("y")
    assert q.peek() == "y" and q.peek_nowait() == "y" and q.qsize() == 1


def test_immediate_shutdown_empties_the_queue_and_releases_join():
    q = Queue(items=[1, 2, 3])
    joiner = ferrovent.spawn(q.join)
    ferrovent.sleep(0)
    q.shutdown(immediate=True)
    joiner.join()
    assert joiner.value is True and q.empty() and q.unfinished_tasks == 0
    with pytest.raises(ShutDown):
        q.get()


def test_iteration_stops_at_stop_iteration():
    q = Queue(items=[1, 2, StopIteration, 3])
    assert list(q) == [1, 2]
    assert q.get() == 3


def test_lifo_and_priority_order():
    lifo = LifoQueue(items=[1, 2])
    lifo.put(3)
    assert lifo.peek() == 3
    assert [lifo.get() for _ in range(3)] == [3, 2, 1]
    prio = PriorityQueue(items=[(3, "c"), (1, "a")])
    prio.put((2, "b"))
    assert [prio.get() for _ in range(3)] == [(1, "a"), (2, "b"), (3, "c")]
    waiting = []
    g = ferrovent.spawn(collect, prio, waiting, "w")
    ferrovent.sleep(0)
    prio.put((0, "z"))
    g.join()
    assert waiting == [("w", (0, "z"))]


def test_unbound_queue():
    with pytest.raises(ValueError):
        UnboundQueue(5)
    q = UnboundQueue(items=[1])
    q.put(2)
    assert [q.get(), q.get()] == [1, 2] and q.maxsize is None


def test_stdlib_style_subclass_hooks_are_used():
    class Reversed(Queue):
        def _init(self, maxsize):
            self.queue = []

        def _qsize(self):
            return len(self.queue)

        def _put(self, item):
            self.queue.insert(0, item)

        def _get(self):
            return self.queue.pop(0)

    q = Reversed(2)
    q.put(1)
    q.put(2)
    assert q.full() and [q.get(), q.get()] == [2, 1]


def test_growing_maxsize_admits_waiting_putters():
    q = Queue(1, items=[0])
    g = ferrovent.spawn(q.put, 1)
    ferrovent.sleep(0)
    q.maxsize = 2
    g.join()
    assert list(q.queue) == [0, 1]


def test_copy():
    q = Queue(5, items=[1, 2])
    c = q.copy()
    assert c.maxsize == 5 and list(c.queue) == [1, 2] and c.unfinished_tasks == 2


def test_in_the_hub_get_and_put_never_block():
    q, out = Queue(1), []

    def in_hub():
        with pytest.raises(Empty):
            q.get()
        q.put("a")
        with pytest.raises(Full):
            q.put("b")
        out.append(q.get())

    ferrovent.get_hub().loop.run_callback(in_hub)
    ferrovent.sleep(0)
    assert out == ["a"]


# -- Channel -----------------------------------------------------------------------------------------------------


def test_channel_put_waits_for_a_getter():
    ch, log = Channel(), []

    def put(item):
        ch.put(item)
        log.append(("put", item))

    putter = ferrovent.spawn(put, 1)
    ferrovent.sleep(0)
    assert log == [] and ch.balance == 1
    log.append(("got", ch.get()))
    putter.join()
    assert log == [("got", 1), ("put", 1)]


def test_channel_hands_over_to_a_waiting_getter_before_the_putter_goes_on():
    ch, log = Channel(), []
    getter = ferrovent.spawn(lambda: log.append(("got", ch.get())))
    ferrovent.sleep(0)
    assert ch.balance == -1
    ch.put("x")
    log.append("putter on")
    getter.join()
    assert log == [("got", "x"), "putter on"]


def test_channel_timeouts_and_state():
    ch = Channel()
    assert ch.qsize() == 0 and ch.empty() and ch.full()
    with pytest.raises(Empty):
        ch.get(timeout=0.01)
    with pytest.raises(Empty):
        ch.get_nowait()
    with pytest.raises(Full):
        ch.put(1, timeout=0.01)
    with pytest.raises(Full):
        ch.put_nowait(1)
    assert ch.balance == 0
    with pytest.raises(ValueError):
        Channel(2)


def test_channel_iteration():
    ch, got = Channel(), []
    consumer = ferrovent.spawn(lambda: got.extend(ch))
    for i in range(3):
        ch.put(i)
    ch.put(StopIteration)
    consumer.join()
    assert got == [0, 1, 2]


def test_block_is_taken_by_its_truth_value():
    q = Queue(1)
    with pytest.raises(Empty):
        q.get(0)
    q.put("x", 1)
    with pytest.raises(Full):
        q.put("y", 0)
    assert q.get(1) == "x"


def test_the_storage_is_the_public_deque():
    q = Queue()
    q.put(1)
    q.queue.append(2)  # as with gevent, the deque is the queue's storage
    assert q.qsize() == len(q) == 2 and [q.get(), q.get()] == [1, 2] and q.empty()


def test_the_deque_read_from_a_queue_stays_its_storage():
    q = Queue(items=[1, 2])
    q.put(3)
    assert q.peek() == 1 and q.qsize() == 3
    storage = q.queue  # the items held in Rust move into this deque, which stays the storage
    assert isinstance(storage, collections.deque) and list(storage) == [1, 2, 3]
    q.put(4)
    storage.appendleft(0)
    assert q.queue is storage and list(storage) == [0, 1, 2, 3, 4]
    assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4] and not storage
    q.queue = collections.deque(["given"])
    assert q.peek() == "given" and q.get() == "given" and q.empty()


def test_a_queue_in_a_cycle_with_its_items_is_collected():
    class Item:
        pass

    q = Queue()
    item = Item()
    item.queue = q  # the queue holds the item (in Rust), the item holds the queue
    q.put(item)
    gone = weakref.ref(item)
    del q, item
    gc.collect()
    assert gone() is None


def test_a_put_whose_item_was_taken_as_its_timeout_fired_succeeds():
    q, taken = Queue(1, items=["first"]), []
    loop = ferrovent.get_hub().loop
    loop.call_later(0, lambda: taken.append(q.get_nowait()))  # due before the putter's timeout, run first
    putter = ferrovent.spawn(q.put, "second", timeout=0.01)
    ferrovent.sleep(0)  # the putter waits, its timeout armed
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:  # both timers fall due without the loop running
        pass
    putter.join()
    assert putter.successful() and taken == ["first"] and list(q.queue) == ["second"]


def test_shutdown_raises_in_blocked_getters_and_putters():
    empty, full, log = Queue(), Queue(1, items=["x"]), []

    def attempt(name, func, *args):
        try:
            func(*args)
        except ShutDown:
            log.append(name)

    waiting = [ferrovent.spawn(attempt, "get", empty.get), ferrovent.spawn(attempt, "put", full.put, "y")]
    ferrovent.sleep(0)
    assert len(empty.getters) == len(full.putters) == 1
    empty.shutdown()
    full.shutdown()
    ferrovent.joinall(waiting)
    assert sorted(log) == ["get", "put"] and not empty.getters and not full.putters
    assert full.get() == "x"  # items put before the shutdown can still be had


def test_blocked_putters_of_a_hooked_queue_are_admitted_in_order():
    q = LifoQueue(2, items=[1, 2])
    putters = [ferrovent.spawn(q.put, n) for n in (3, 4)]
    ferrovent.sleep(0)
    assert len(q.putters) == 2
    assert q.get() == 2 and q.qsize() == 1  # the freed slot waits for its putter to run, as in gevent
    assert q.get() == 1 and q.qsize() == 0
    ferrovent.joinall(putters)
    assert [q.get(), q.get()] == [4, 3]  # 3 went in first


def test_put_and_get_take_every_call_shape_and_refuse_wrong_ones():
    q = Queue()
    q.put(1)
    q.put(2, True)
    q.put(3, block=False)
    q.put(item=4, timeout=1)
    assert [q.get(), q.get(True), q.get(block=False), q.get(timeout=1)] == [1, 2, 3, 4]
    with pytest.raises(stdlib_queue.Empty):
        q.get(False)
    with pytest.raises(TypeError, match="item"):
        q.put()
    with pytest.raises(TypeError):
        q.get(True, 1, 2)
    with pytest.raises(TypeError, match="unexpected"):
        q.put(1, wait=True)
    with pytest.raises(TypeError, match="doesn't apply"):
        Queue.put(object(), 1)
