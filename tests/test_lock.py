"""ferrovent.lock: semaphores, Lock and RLock, their fairness, kills and timeouts, and use from OS threads."""

from __future__ import annotations

import _thread
import threading
import time

import ferrovent
import pytest
from ferrovent.lock import BoundedSemaphore, DummySemaphore, Lock, RLock, Semaphore
from greenlet import GreenletExit

pytestmark = pytest.mark.timeout(10)


def hold(semaphore, log, name, turns=1):
    """Acquires, records ``name``, yields ``turns`` times, releases."""
    with semaphore:
        log.append(name)
        for _ in range(turns):
            ferrovent.sleep(0)


# -- Semaphore ---------------------------------------------------------------------------------------------------


def test_counter_acquire_release():
    s = Semaphore(2)
    assert s.acquire() and s.acquire()
    assert s.counter == 0 and s.locked() and not s.ready()
    assert s.acquire(blocking=False) is False
    assert s.release() == 1
    assert not s.locked() and s.ready()
    assert "counter=1" in repr(s)
    with pytest.raises(ValueError):
        Semaphore(-1)


def test_acquire_with_timeout_returns_false_and_leaves_no_link():
    s = Semaphore(0)
    start = time.monotonic()
    assert s.acquire(timeout=0.02) is False
    assert time.monotonic() - start >= 0.015
    assert s.linkcount() == 0


def test_waiters_acquire_in_the_order_they_waited():
    s, log = Semaphore(1), []
    greenlets = [ferrovent.spawn(hold, s, log, n) for n in range(5)]
    ferrovent.joinall(greenlets)
    assert log == [0, 1, 2, 3, 4]
    assert s.counter == 1


def test_each_release_wakes_one_more_waiter():
    s, log = Semaphore(0), []
    greenlets = [ferrovent.spawn(lambda n=n: log.append((n, s.acquire()))) for n in range(3)]
    ferrovent.sleep(0)
    s.release()
    s.release()
    ferrovent.sleep(0)
    assert log == [(0, True), (1, True)]
    s.release()
    ferrovent.joinall(greenlets)
    assert log == [(0, True), (1, True), (2, True)]


def test_a_releaser_that_acquires_again_first_keeps_the_unit_as_in_gevent():
    s, log = Semaphore(1), []

    def hog():
        for i in range(3):
            hold(s, log, f"hog{i}")

    ferrovent.joinall([ferrovent.spawn(hog), ferrovent.spawn(hold, s, log, "other")])
    assert log == ["hog0", "hog1", "hog2", "other"]


def test_a_woken_waiter_that_finds_the_unit_taken_waits_again_at_the_front():
    s, log = Semaphore(0), []
    first = ferrovent.spawn(lambda: log.append(("first", s.acquire())))
    second = ferrovent.spawn(lambda: log.append(("second", s.acquire())))
    ferrovent.sleep(0)
    s.release()  # wakes first...
    assert s.acquire(blocking=False)  # ...but the unit is taken before it runs
    ferrovent.sleep(0)
    assert log == [] and s.linkcount() == 2
    s.release()
    s.release()
    ferrovent.joinall([first, second])
    assert log == [("first", True), ("second", True)]


def test_killing_a_waiter_unlinks_it():
    s = Semaphore(0)
    g = ferrovent.spawn(s.acquire)
    ferrovent.sleep(0)
    g.kill()
    assert s.linkcount() == 0
    s.release()
    assert s.counter == 1


def test_a_waiter_killed_after_its_wake_passes_the_unit_to_the_next():
    s, log = Semaphore(0), []
    doomed = ferrovent.spawn(s.acquire)
    nxt = ferrovent.spawn(lambda: log.append(s.acquire()))
    ferrovent.sleep(0)
    ferrovent.get_hub().loop.throw(doomed, GreenletExit())  # delivered before the wake below
    s.release()
    nxt.join()
    assert doomed.dead and log == [True]
    assert s.counter == 0


def test_wait_returns_the_counter_without_taking_a_unit():
    s, log = Semaphore(0), []
    waiter = ferrovent.spawn(lambda: log.append(("wait", s.wait())))
    taker = ferrovent.spawn(lambda: log.append(("acquire", s.acquire())))
    ferrovent.sleep(0)
    s.release()
    ferrovent.joinall([waiter, taker])
    assert sorted(log) == [("acquire", True), ("wait", 1)]
    assert s.counter == 0
    assert Semaphore(3).wait() == 3
    assert Semaphore(0).wait(0.01) == 0


def test_bounded_semaphore_refuses_over_release():
    s = BoundedSemaphore(2)
    with pytest.raises(ValueError):
        s.release()
    s.acquire()
    s.release()
    assert s.counter == 2


def test_dummy_semaphore_never_blocks():
    s = DummySemaphore(5)
    assert all(s.acquire() for _ in range(100))
    assert s.wait() == 1 and s.ready() and not s.locked()
    s.release()
    s.rawlink(print)
    s.unlink(print)
    with s:
        pass


def test_rawlink_is_called_when_a_unit_is_released():
    s, calls = Semaphore(0), []
    s.rawlink(calls.append)
    s.release()
    ferrovent.sleep(0)
    assert calls == [s]


# -- Lock --------------------------------------------------------------------------------------------------------


def test_lock_has_the_thread_lock_interface():
    lock = Lock()
    assert not lock.locked() and repr(lock).startswith("<unlocked ")
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(False, 1)
    with pytest.raises(ValueError, match="must be positive"):
        lock.acquire(True, -2)
    assert lock.acquire_lock() is True and lock.locked_lock()
    assert repr(lock).startswith("<locked ")
    assert lock.acquire(False) is False
    assert lock.acquire(True, 0) is False
    assert lock.acquire(timeout=0.01) is False
    lock.release_lock()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    with lock as got:
        assert got is True and lock.locked()
    assert not lock.locked()


@pytest.mark.parametrize(
    "make", [Lock, RLock, _thread.allocate_lock, _thread.RLock], ids=["Lock", "RLock", "stdlib-Lock", "stdlib-RLock"]
)
def test_a_timeout_beyond_timeout_max_overflows_as_with_thread_locks(make):
    # The stdlib's own locks (not patched here) are the reference.
    lock = make()
    for too_long in (_thread.TIMEOUT_MAX + 1, 1e100):
        with pytest.raises(OverflowError):
            lock.acquire(timeout=too_long)
    assert lock.acquire(timeout=_thread.TIMEOUT_MAX) is True  # nothing was taken by the refused calls
    lock.release()
    assert lock.acquire(blocking=False) is True


def test_lock_may_be_released_by_another_greenlet():
    lock, log = Lock(), []
    lock.acquire()
    g = ferrovent.spawn(lambda: log.append(lock.acquire(timeout=-1)))
    ferrovent.sleep(0)
    ferrovent.spawn(lock.release).join()
    g.join()
    assert log == [True] and lock.locked()


def test_lock_at_fork_reinit_unlocks():
    lock = Lock()
    lock.acquire()
    lock._at_fork_reinit()
    assert not lock.locked()


# -- RLock -------------------------------------------------------------------------------------------------------


def test_rlock_is_reentrant_for_its_owner_only():
    lock, log = RLock(), []
    assert lock.acquire() and lock.acquire()
    assert lock.locked() and lock._is_owned() and lock._recursion_count() == 2

    def other():
        log.append(lock.acquire(blocking=False))
        with pytest.raises(RuntimeError, match="un-acquired"):
            lock.release()
        log.append(lock.acquire(timeout=0.01))

    ferrovent.spawn(other).join()
    assert log == [False, False]
    lock.release()
    assert lock.locked()
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()


def test_rlock_waiters_are_served_in_order():
    lock, log = RLock(), []

    def nested(name):
        with lock:
            with lock:
                log.append(name)
                ferrovent.sleep(0)

    ferrovent.joinall([ferrovent.spawn(nested, n) for n in range(4)])
    assert log == [0, 1, 2, 3]


def test_rlock_condition_hooks():
    lock = RLock()
    lock.acquire()
    lock.acquire()
    saved = lock._release_save()
    assert not lock.locked() and not lock._is_owned()
    got = []
    ferrovent.spawn(lambda: got.append(lock.acquire(blocking=False)) or lock.release()).join()
    assert got == [True]
    lock._acquire_restore(saved)
    assert lock._is_owned() and lock._recursion_count() == 2
    lock.release()
    lock.release()
    with pytest.raises(RuntimeError):
        lock._release_save()
    assert "unlocked" in repr(lock)


@pytest.mark.parametrize("make_lock", [Lock, RLock])
def test_threading_condition_runs_on_these_locks(monkeypatch, make_lock):
    monkeypatch.setattr(threading, "_allocate_lock", Lock)  # what the threading patch does for Condition's waiters
    cond, items, log = threading.Condition(make_lock()), [], []

    def consumer(name):
        with cond:
            while not items:
                cond.wait()
            log.append((name, items.pop(0)))

    consumers = [ferrovent.spawn(consumer, n) for n in range(2)]
    ferrovent.sleep(0)
    with cond:
        items.extend("ab")
        cond.notify_all()
    ferrovent.joinall(consumers)
    assert log == [(0, "a"), (1, "b")]
    with cond:
        start = time.monotonic()
        assert cond.wait(0.02) is False
        assert time.monotonic() - start >= 0.015
        assert cond.wait_for(lambda: True, timeout=0.01) is True


# -- OS threads --------------------------------------------------------------------------------------------------


def test_a_thread_without_a_hub_waits_for_a_lock_a_greenlet_holds():
    hub = ferrovent.get_hub()
    lock, done = Lock(), []
    lock.acquire()

    def in_thread():
        done.append(lock.acquire(True, 5))
        lock.release()
        hub.loop.run_callback_threadsafe(hub.loop.remove_ref)

    hub.loop.add_ref()
    _thread.start_new_thread(in_thread, ())
    ferrovent.sleep(0.02)
    assert done == []
    lock.release()
    while not done:
        ferrovent.sleep(0.005)
    assert done == [True]
    assert lock.acquire(timeout=5)


def test_a_thread_gives_up_after_its_timeout():
    lock, done = Lock(), []
    lock.acquire()
    _thread.start_new_thread(lambda: done.append(lock.acquire(True, 0.02)), ())
    deadline = time.monotonic() + 5
    while not done and time.monotonic() < deadline:
        ferrovent.sleep(0.005)
    assert done == [False]
    lock.release()
    assert not lock.locked() and lock.linkcount() == 0


def test_a_greenlet_waits_for_a_lock_a_thread_holds():
    lock, holding = Lock(), _thread.allocate_lock()
    holding.acquire()

    def in_thread():
        lock.acquire()
        holding.release()
        time.sleep(0.02)
        lock.release()

    _thread.start_new_thread(in_thread, ())
    holding.acquire()
    assert lock.acquire(timeout=5)


class _ReleasedWhileArriving(Semaphore):
    """A semaphore that, once armed, another OS thread releases just as a greenlet that found no unit goes into the
    line."""

    __slots__ = ("armed",)

    def __init__(self) -> None:
        Semaphore.__init__(self, 0)
        self.armed = False

    def _park(self, timeout, front=False):
        if self.armed:
            self.armed = False
            done = _thread.allocate_lock()
            done.acquire()
            _thread.start_new_thread(lambda: (self.release(), done.release()), ())
            done.acquire()
        return Semaphore._park(self, timeout, front)


@pytest.mark.parametrize("owned", [False, True], ids=["new", "owned"])
def test_a_release_from_another_thread_reaches_a_waiter_on_its_way_into_the_line(owned):
    s = _ReleasedWhileArriving()
    if owned:  # a greenlet of this hub waited on it before
        assert s.wait(0) == 0
    s.armed = True
    assert s.acquire(timeout=5) is True
    assert s.counter == 0 and s.linkcount() == 0
