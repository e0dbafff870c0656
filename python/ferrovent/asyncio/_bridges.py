"""Bridges between greenlets and coroutines: `await_` (a greenlet waits for an awaitable) and `greenlet` /
`wait_greenlet` (a coroutine waits for a greenlet or an ``AsyncResult``)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import Any, Callable, Optional, TypeVar

from greenlet import GreenletExit, getcurrent

from ferrovent import _core
from ferrovent.exceptions import BlockingSwitchOutError
from ferrovent.greenlet import Greenlet, spawn_raw
from ferrovent.hub import get_hub
from ferrovent.timeout import Timeout

from ._loop import EventLoop, running_loop_of

__all__ = ["await_", "wait_greenlet", "greenlet"]

T = TypeVar("T")

# hub -> the loop that runs await_'s awaitables when no ferrovent loop is running in the hub's thread
_background: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _loop_for_await(hub) -> EventLoop:
    """The latest ferrovent loop running in ``hub``'s greenlets; else the hub's background loop, started on first
    use in a greenlet of its own (it holds no reference on the hub, so it never keeps a program alive)."""
    loop = running_loop_of(hub)
    if loop is not None:
        return loop
    loop = _background.get(hub)
    if loop is None or loop.is_closed():
        loop = _background[hub] = EventLoop(hub, keeps_hub_alive=False)
        spawn_raw(loop.run_forever)
    return loop


def await_(awaitable: Awaitable[T], timeout: Optional[float] = None) -> T:
    """Runs ``awaitable`` on a ferrovent asyncio loop and blocks only the calling greenlet until it finishes.

    Returns its result or raises its exception. If it is cancelled, raises ``GreenletExit``. After ``timeout``
    seconds, cancels it and raises ``ferrovent.Timeout``; a greenlet killed (or timed out by an enclosing
    ``Timeout``) while waiting cancels it too. The loop is the ferrovent loop running in this thread (started
    last, if several are), else a loop kept for this purpose. Calling it from the greenlet that runs that loop
    (blocking code inside a coroutine) raises RuntimeError: ``await`` the awaitable there instead.
    """
    hub = get_hub()
    current = getcurrent()
    if current is hub:
        raise BlockingSwitchOutError("await_() would block the hub")
    loop = _loop_for_await(hub)
    if loop._greenlet is current:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # never to run: no "never awaited" warning on top of the error
        raise RuntimeError("await_() called inside the loop it would wait for: use 'await' in the coroutine")
    future = asyncio.ensure_future(awaitable, loop=loop)
    if not future.done():
        _wait_for_future(hub, current, future, timeout)
    if future.cancelled():
        raise GreenletExit("the awaitable was cancelled")
    return future.result()


def _wait_for_future(hub, current, future: asyncio.Future, timeout: Optional[float]) -> None:
    """Parks ``current`` until ``future`` is done; on timeout or on an exception thrown in, cancels it."""
    waiting = True

    def done(_future):
        if waiting:
            hub.loop.wake(current)

    future.add_done_callback(done)
    hub.loop.add_ref()  # the background loop holds none: this wait keeps the hub running
    try:
        woke = hub.loop.park(timeout)
        if woke is _core.TIMEOUT and not future.done():
            raise Timeout(timeout)
    except BaseException:
        future.cancel()
        raise
    finally:
        waiting = False
        hub.loop.remove_ref()
        future.remove_done_callback(done)


async def wait_greenlet(source: Any) -> Any:
    """Waits, in a coroutine, for a ``Greenlet`` or ``AsyncResult`` (anything with ``rawlink``/``unlink`` and
    ``get(block=False)``) to be ready, and returns its value or raises its exception.

    The greenlet runs in the hub of the thread: the coroutine's loop may be any loop of that thread. Cancelling
    the waiting task kills a ``Greenlet`` (without waiting for it to die) and stops waiting for anything else.
    """
    if not source.ready():
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # a ferrovent loop is woken by call_soon from the hub; another loop needs its thread-safe wake-up
        call_soon = loop.call_soon if isinstance(loop, EventLoop) else loop.call_soon_threadsafe

        def ready(_source):
            call_soon(_set_if_pending, future)

        source.rawlink(ready)
        try:
            await future
        except asyncio.CancelledError:
            source.unlink(ready)
            if isinstance(source, Greenlet):
                source.kill(block=False)
            raise
    return source.get(block=False)


def _set_if_pending(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def greenlet(func: Callable[..., T], *args: Any, **kwargs: Any) -> Awaitable[T]:
    """Spawns ``func(*args, **kwargs)`` in a ``Greenlet`` and gives what a coroutine awaits for its result
    (``await ferrovent.asyncio.greenlet(requests.get, url)``); cancelling the awaiting task kills the greenlet."""
    return wait_greenlet(Greenlet.spawn(func, *args, **kwargs))
