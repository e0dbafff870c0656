"""`EventLoop`: the stdlib's Unix selector event loop, waiting in the hub's Rust loop through `HubSelector`."""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

from greenlet import getcurrent

from ferrovent.exceptions import BlockingSwitchOutError
from ferrovent.hub import get_hub
from ferrovent.monkey import get_original

from ._selector import HubSelector

if TYPE_CHECKING:
    from ferrovent.hub import Hub

# the OS thread's ident whatever patch_thread did (patched, threading.get_ident names the greenlet)
_os_thread_ident = get_original("_thread", "get_ident")
# hub -> the ferrovent loops running in its greenlets, latest started last (await_ runs on the latest one)
_running: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class EventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on the hub's reactor: its tasks and the hub's greenlets share one thread and one poll.

    Transports, servers, TLS, subprocesses, signal handlers and executors are the stdlib's ``SelectorEventLoop``'s;
    what differs is waiting: ``select`` parks the greenlet that runs the loop, so other greenlets run meanwhile,
    and ``call_soon``/``call_at`` from another greenlet of the thread wake it without a self-pipe round trip.

    ``hub``: the hub whose loop it waits in (default: the calling thread's). While running, the loop holds one of
    the hub's references (``keeps_hub_alive``), as a greenlet blocked in ``run_until_complete`` would expect; the
    loop that serves `await_` when no other is running does not, so an idle one never keeps a program alive.
    """

    def __init__(self, hub: Hub | None = None, *, keeps_hub_alive: bool = True) -> None:
        self._hub = hub if hub is not None else get_hub()
        self._keeps_hub_alive = keeps_hub_alive
        self._greenlet = None  # the greenlet running the loop, while it runs
        self._os_thread = None  # the OS thread running it, while it runs
        selector = HubSelector(self._hub)
        self._wake_select = selector._core.wake  # the Rust call itself: call_soon makes it every time
        super().__init__(selector)

    @property
    def hub(self) -> Hub:
        """The hub whose reactor this loop waits in."""
        return self._hub

    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        """As the stdlib's; wakes the loop if it is parked in ``select`` (called from another greenlet)."""
        handle = super().call_soon(callback, *args, context=context)
        if handle._source_traceback:
            del handle._source_traceback[-1]  # debug mode: the caller's frame ends it, not this one
        self._wake_select()
        return handle

    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.TimerHandle:
        """As the stdlib's; wakes the loop if it is parked in ``select``, since the timer may be due earlier."""
        handle = super().call_at(when, callback, *args, context=context)
        self._wake_select()  # the new timer may be due before the parked select's timeout
        if handle._source_traceback:
            del handle._source_traceback[-1]
        return handle

    def _check_thread(self) -> None:
        # debug mode's "non-thread-safe operation" check: any greenlet of the loop's OS thread may call in
        if self._thread_id is not None and _os_thread_ident() != self._os_thread:
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one (another OS thread)"
            )

    def run_forever(self) -> None:
        """As the stdlib's, in the calling greenlet (never the hub: it would have nowhere to park)."""
        current = getcurrent()
        if current is self._hub:
            raise BlockingSwitchOutError("an asyncio loop cannot run in the hub: run it in a greenlet")
        if self._keeps_hub_alive:
            self._hub.loop.add_ref()
        self._greenlet = current
        self._os_thread = _os_thread_ident()
        running = _running.setdefault(self._hub, [])
        running.append(self)
        try:
            super().run_forever()
        finally:
            running.remove(self)
            self._greenlet = None
            if self._keeps_hub_alive:
                self._hub.loop.remove_ref()


def new_event_loop() -> EventLoop:
    """A new ferrovent asyncio loop for the calling thread's hub (``asyncio.run(..., loop_factory=...)``)."""
    return EventLoop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The policy whose loops are ferrovent's: ``asyncio.set_event_loop_policy(EventLoopPolicy())`` (Python 3.11)."""

    _loop_factory = EventLoop


def running_loop_of(hub) -> Optional[EventLoop]:
    """The ferrovent loop started last among those running in ``hub``'s greenlets, or None."""
    loops = _running.get(hub)
    return loops[-1] if loops else None
