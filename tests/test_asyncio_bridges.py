"""Bridges between greenlets and coroutines: ``await_`` from a greenlet, ``greenlet``/``wait_greenlet`` (and
``await`` on a Greenlet or AsyncResult) from a coroutine, with cancellation crossing both ways."""

from __future__ import annotations

import asyncio

import ferrovent
import pytest
from ferrovent import GreenletExit, Timeout
from ferrovent.asyncio import await_, greenlet, wait_greenlet
from ferrovent.event import AsyncResult, Event

from tests.asyncio_helpers import BOUND, run


async def double_later(x, delay=0.01):
    await asyncio.sleep(delay)
    return x * 2


# -- await_: a greenlet waits for an awaitable


def test_await_returns_the_result_and_blocks_only_the_calling_greenlet():
    order = []

    def waiter():
        order.append(("result", await_(double_later(21, 0.05))))

    g = ferrovent.spawn(waiter)
    ferrovent.spawn(order.append, "another greenlet ran")
    g.join(BOUND)
    assert order == ["another greenlet ran", ("result", 42)]


def test_await_from_many_greenlets_at_once():
    greenlets = [ferrovent.spawn(await_, double_later(i, 0.05 - i * 0.005)) for i in range(10)]
    assert ferrovent.joinall(greenlets, timeout=BOUND) and [g.value for g in greenlets] == [i * 2 for i in range(10)]


def test_await_raises_the_awaitables_exception():
    async def fails():
        await asyncio.sleep(0)
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        await_(fails())


def test_await_timeout_raises_timeout_and_cancels_the_task():
    cancelled = Event()

    async def slow():
        try:
            await asyncio.sleep(BOUND * 2)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(Timeout):
        await_(slow(), timeout=0.01)
    assert cancelled.wait(BOUND)


def test_killing_a_greenlet_in_await_cancels_the_task():
    started, cancelled = Event(), Event()

    async def slow():
        started.set()
        try:
            await asyncio.sleep(BOUND * 2)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    g = ferrovent.spawn(await_, slow())
    assert started.wait(BOUND)
    g.kill(block=True, timeout=BOUND)
    assert isinstance(g.value, GreenletExit)
    assert cancelled.wait(BOUND)


def test_an_awaitable_cancelled_elsewhere_raises_greenlet_exit():
    async def cancels_itself():
        asyncio.current_task().cancel()
        await asyncio.sleep(1)

    with pytest.raises(GreenletExit):
        await_(cancels_itself())


def test_await_uses_the_loop_running_in_another_greenlet():
    async def loop_of_awaitable():
        return asyncio.get_running_loop()

    async def main():
        g = ferrovent.spawn(await_, loop_of_awaitable())
        return await wait_greenlet(g), asyncio.get_running_loop()

    used, running = run(main())
    assert used is running


def test_await_inside_the_loops_own_greenlet_raises_instead_of_deadlocking():
    async def main():
        with pytest.raises(RuntimeError, match="await_"):
            await_(asyncio.sleep(0))
        return "no deadlock"

    assert run(main()) == "no deadlock"


# -- from a coroutine: greenlet(), wait_greenlet(), await Greenlet / AsyncResult


def test_await_greenlet_spawns_and_returns_its_value():
    def blocking_work(x):
        ferrovent.sleep(0.01)
        return x + 1

    async def main():
        return await greenlet(blocking_work, 41)

    assert run(main()) == 42


def test_await_greenlet_raises_its_exception():
    def fails():
        raise ValueError("in the greenlet")

    async def main():
        await greenlet(fails)

    with pytest.raises(ValueError, match="in the greenlet"):
        run(main())


def test_a_greenlet_and_an_async_result_are_awaitable_directly():
    async def main():
        g = ferrovent.spawn(lambda: "greenlet")
        result = AsyncResult()
        ferrovent.spawn_later(0.01, result.set, "async result")
        return await g, await result

    assert run(main()) == ("greenlet", "async result")


def test_cancelling_the_task_awaiting_a_greenlet_kills_the_greenlet():
    started = Event()

    def forever():
        started.set()
        ferrovent.sleep(BOUND * 2)

    async def main():
        g = ferrovent.spawn(forever)
        task = asyncio.get_running_loop().create_task(wait_greenlet(g))
        assert await greenlet(started.wait, BOUND)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await greenlet(g.join, BOUND)
        return g

    g = run(main())
    assert g.dead and isinstance(g.value, GreenletExit)


def test_cancelling_the_task_awaiting_an_async_result_leaves_it_alone():
    result = AsyncResult()

    async def main():
        task = asyncio.get_running_loop().create_task(wait_greenlet(result))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    result.set("later")
    assert result.get(timeout=BOUND) == "later"
