"""ferrovent.pool: Group and Pool tracking, limits, killing, and the mapping methods (apply, map, imap ...)."""

from __future__ import annotations

import ferrovent
import pytest
from ferrovent.event import Event
from ferrovent.pool import Group, Pool, PoolFull
from ferrovent.queue import Full

from tests.child import run_child

pytestmark = pytest.mark.timeout(10)


def double(x):
    return 2 * x


def fail_on_three(x):
    if x == 3:
        raise ValueError("three")
    return x


def test_group_tracks_greenlets_until_they_finish():
    group = Group()
    assert not group and len(group) == 0
    g = group.spawn(ferrovent.sleep, 0.01)
    assert g in group and len(group) == 1 and list(group) == [g]
    assert group.join() is True
    assert g not in group and not group
    assert not group.full() and group.wait_available() is None


def test_group_from_greenlets_add_discard_start():
    running = ferrovent.spawn(ferrovent.sleep, 10)
    group = Group([running])
    assert running in group
    group.discard(running)
    assert running not in group
    unstarted = ferrovent.Greenlet(lambda: "done")
    group.start(unstarted)
    assert unstarted in group
    group.join()
    assert unstarted.value == "done"
    running.kill()
    with pytest.raises(TypeError):
        Group([], [])


def test_join_with_timeout_and_raise_error():
    group = Group()
    sleeper = group.spawn(ferrovent.sleep, 10)
    assert group.join(timeout=0.01) is False
    group.kill()
    assert sleeper.dead and not group
    group.spawn(fail_on_three, 3)
    with pytest.raises(ValueError, match="three"):
        group.join(raise_error=True)


def test_kill_and_killone():
    group = Group()
    a = group.spawn(ferrovent.sleep, 10)
    b = group.spawn(ferrovent.sleep, 10)
    ferrovent.sleep(0)
    group.killone(a)
    assert a.dead and a not in group and b in group
    group.kill(block=False)
    assert b in group.dying
    group.join()
    assert b.dead and not group.dying


@pytest.mark.timeout(30)
@pytest.mark.parametrize("make", ["Group()", "Pool(2)", "Pool()"])
def test_killing_greenlets_that_never_started_returns_at_once(make):
    # They die at once, but leave the group only when the hub runs their links: a kill that waited for their deaths
    # returned at once and went round again, spinning forever without letting the hub run. In a child, timed.
    proc = run_child(
        f"""
        import time
        import ferrovent
        from ferrovent.pool import Group, Pool
        group = {make}
        fresh = [group.spawn(ferrovent.sleep, 10)]
        t0 = time.monotonic()
        group.kill()
        elapsed = [time.monotonic() - t0]
        started = [group.spawn(ferrovent.sleep, 10)]
        ferrovent.sleep(0)
        fresh.append(group.spawn(ferrovent.sleep, 10))
        t0 = time.monotonic()
        group.kill()
        elapsed.append(time.monotonic() - t0)
        print(max(elapsed), len(group), all(g.dead for g in started + fresh))
        """,
        timeout=20,
    )
    elapsed, size, dead = proc.stdout.split()
    assert float(elapsed) < 1 and size == "0" and dead == "True"


def test_killing_a_group_tracking_a_raw_greenlet():
    group = Group()
    raw = ferrovent.spawn_raw(ferrovent.sleep, 10)
    group.add(raw)
    group.spawn(ferrovent.sleep, 10)
    ferrovent.sleep(0)
    with ferrovent.Timeout(2):
        group.kill()  # nothing tells when a raw greenlet dies: it is killed and dropped, as killall does
    ferrovent.sleep(0)
    assert not group and raw.dead


def test_pool_spawn_blocks_while_full():
    pool, log = Pool(2), []

    def task(name):
        log.append(("start", name))
        ferrovent.sleep(0.01)
        log.append(("end", name))

    for name in range(3):
        pool.spawn(task, name)
        log.append(("spawned", name))
    pool.join()
    assert log.index(("spawned", 2)) > log.index(("end", 0))
    assert log.index(("start", 2)) > log.index(("end", 0))
    assert pool.free_count() == 2 and not pool.full()


def test_pool_limits_and_errors():
    with pytest.raises(ValueError):
        Pool(-1)
    pool = Pool(1)
    sleeper = pool.spawn(ferrovent.sleep, 10)
    assert pool.full() and pool.free_count() == 0
    with pytest.raises(PoolFull):
        pool.add(ferrovent.Greenlet(), blocking=False)
    with pytest.raises(PoolFull):
        pool.add(ferrovent.Greenlet(), timeout=0.01)
    assert issubclass(PoolFull, Full)
    assert pool.wait_available(timeout=0.01) == 0
    sleeper.kill()
    assert pool.wait_available() == 1
    assert Pool(0).wait_available(timeout=0.01) == 0
    unlimited = Pool()
    assert unlimited.free_count() == 1 and not unlimited.full()


def test_discarding_by_hand_frees_exactly_one_slot():
    pool = Pool(1)
    g = pool.spawn(ferrovent.sleep, 0.01)
    pool.discard(g)
    g.join()
    ferrovent.sleep(0)
    assert pool._semaphore.counter == 1


def test_apply_family():
    pool = Pool(2)
    assert pool.apply(double, (4,)) == 8
    assert pool.apply(lambda **kw: kw, kwds={"a": 1}) == {"a": 1}
    got = []
    assert pool.apply_cb(double, (5,), callback=got.append) == 10
    result = pool.apply_async(double, (6,), callback=got.append)
    assert result.get() == 12
    ferrovent.sleep(0)
    assert sorted(got) == [10, 12]


def test_apply_from_inside_the_pool_runs_inline():
    pool = Pool(1)
    assert pool.spawn(lambda: pool.apply(double, (3,))).get() == 6


def test_apply_async_never_blocks_when_full():
    pool = Pool(1)
    blocker = pool.spawn(ferrovent.sleep, 0.02)
    result = pool.apply_async(double, (7,))
    assert not blocker.dead
    assert result.get() == 14


def test_map_and_map_async():
    pool = Pool(3)
    assert pool.map(double, range(10)) == [2 * i for i in range(10)]
    got = []
    g = pool.map_async(double, [1, 2], callback=got.append)
    assert g.get() == [2, 4] and got == [[2, 4]]
    assert Group().map(double, [5]) == [10]


def test_imap_keeps_input_order_and_consumes_the_input_lazily():
    pool, taken, release = Pool(2), [], Event()

    def items():
        for i in range(6):
            taken.append(i)
            yield i

    def later_ones_wait_then_finish_first(x):
        if x:
            release.wait()
            ferrovent.sleep(0.001 * (6 - x))
        return x

    results = pool.imap(later_ones_wait_then_finish_first, items())
    assert next(results) == 0
    assert len(taken) < 6  # the pool's other slot is busy: the input was not all pulled up front
    release.set()
    assert list(results) == list(range(1, 6))


def test_imap_with_several_iterables():
    assert list(Pool(3).imap(lambda a, b: a + b, [1, 2], [10, 20])) == [11, 22]


def test_imap_unordered_yields_in_completion_order():
    pool = Pool(4)

    def sleep_then(x):
        ferrovent.sleep(0.005 * x)
        return x

    assert list(pool.imap_unordered(sleep_then, [3, 1, 2, 0])) == [0, 1, 2, 3]


def test_imap_failure_is_raised_to_the_reader():
    results = Pool(2).imap(fail_on_three, range(5))
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="three"):
        next(results)


def test_imap_maxsize_bounds_waiting_results():
    pool = Pool(10)
    results = pool.imap_unordered(double, range(20), maxsize=2)
    ferrovent.sleep(0.01)
    assert len(pool) + results.queue.qsize() <= 3
    assert sorted(results) == [2 * i for i in range(20)]


def test_greenlet_class():
    class Named(ferrovent.Greenlet):
        pass

    pool = Pool(2, greenlet_class=Named)
    assert isinstance(pool.spawn(double, 1), Named)
    pool.join()
