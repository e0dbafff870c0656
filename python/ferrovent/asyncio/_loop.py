"""`EventLoop`: the stdlib's Unix selector event loop, waiting in the hub's Rust loop through `HubSelector`.

Its hot paths are in Rust (``_core.AioLoop``): ``call_soon`` makes the ``asyncio.Handle`` without running
``Handle.__init__``, and `EventLoop._run_once` (timers, select, the ready handles run) is one Rust call. Both set and
read the private slots of asyncio's ``Handle``, so they are used only on the Python versions listed in
``_FAST_PATH_PYTHONS`` whose ``Handle`` has the slots expected, and not at all when the environment says
``FERROVENT_ASYNCIO_FAST=0`` (also ``false``, ``no``, ``off``): asyncio's own code runs then. Debug mode always
runs asyncio's own code (it records where each callback was queued and times each one). With the fast path, the
loop's ``call_soon``, ``_run_once``, ``create_future``, ``create_task`` (3.11 on), ``time``, ``get_debug`` and
``_check_closed`` are the instance's Rust calls (where its class keeps asyncio's), without a Python frame each; the
loop's state (``_stopping``, ``_scheduled``...) is read from its ``__dict__`` where its class defines none of those
names, and its ``_debug`` and ``_closed`` are properties whose setters tell the Rust side (asyncio assigns them;
every assignment goes through them).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import weakref
from asyncio import base_events, events, format_helpers, selector_events
from typing import TYPE_CHECKING, Any, Callable, Optional

from greenlet import getcurrent

from ferrovent import _core
from ferrovent._switches import switched_off
from ferrovent.exceptions import BlockingSwitchOutError
from ferrovent.hub import get_hub
from ferrovent.monkey import get_original

from ._handle import Handle as _FastHandle
from ._lookup import dict_first
from ._selector import HubSelector
from ._transport import SocketTransport

if TYPE_CHECKING:
    from ferrovent.hub import Hub

__all__ = ["FAST_PATH", "EventLoop", "new_event_loop", "EventLoopPolicy", "running_loop_of"]

# the OS thread's ident whatever patch_thread did (patched, threading.get_ident names the greenlet)
_os_thread_ident = get_original("_thread", "get_ident")
# hub -> the ferrovent loops running in its greenlets, latest started last (await_ runs on the latest one)
_running: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# The Python versions whose asyncio.Handle the Rust fast path was checked against (its slots, its __init__ and _run).
_FAST_PATH_PYTHONS = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
_HANDLE_SLOTS = {"_callback", "_args", "_cancelled", "_loop", "_source_traceback", "_repr", "__weakref__", "_context"}


def _asyncio_own(name: str) -> Optional[Callable[..., Any]]:
    """``Handle``'s method ``name`` if it is asyncio's own (not replaced before ferrovent was imported), else None."""
    method = asyncio.Handle.__dict__.get(name)
    code = getattr(method, "__code__", None)
    return method if code is not None and code.co_filename == events.__file__ else None


# What the fast path does instead of these: while they are replaced (to time callbacks, say), the replacements run.
_HANDLE_INIT, _HANDLE_RUN = _asyncio_own("__init__"), _asyncio_own("_run")


def _fast_path_allowed() -> bool:
    return (
        not switched_off("FERROVENT_ASYNCIO_FAST")
        and sys.version_info[:2] in _FAST_PATH_PYTHONS
        and set(asyncio.Handle.__slots__) == _HANDLE_SLOTS
        and asyncio.TimerHandle.__base__ is asyncio.Handle
        and _HANDLE_INIT is not None
        and _HANDLE_RUN is not None
    )


FAST_PATH = _fast_path_allowed()


def _dispatches_in_rust(loop_class: type, selector: HubSelector) -> bool:
    """Whether `_core.AioLoop` may poll ``selector`` and queue the handles of ready fds itself: the loop's class and
    the selector's keep asyncio's and ferrovent's own code for it."""
    return (
        loop_class._process_events is selector_events.BaseSelectorEventLoop._process_events
        and loop_class._add_callback is base_events.BaseEventLoop._add_callback
        and type(selector) is HubSelector
    )


# The loop's state the Rust fast path reads from the loop's ``__dict__`` first (see `_lookup.dict_first`).
_LOOP_STATE = ("_stopping", "_scheduled", "_timer_cancelled_count", "_clock_resolution")
# The loop's flags `EventLoop` keeps as properties whose setters tell the Rust fast path (see `_flags_kept`).
_LOOP_FLAGS = ("_debug", "_closed")


def _flags_kept(loop_class: type) -> bool:
    """Whether every assignment to the loop's `_LOOP_FLAGS` reaches `EventLoop`'s properties: the class keeps
    object's attribute lookup and assignment, and its lookup of those names finds them."""
    return (
        loop_class.__getattribute__ is object.__getattribute__
        and loop_class.__setattr__ is object.__setattr__
        and loop_class.__delattr__ is object.__delattr__
        and all(getattr(loop_class, name, None) is vars(EventLoop)[name] for name in _LOOP_FLAGS)
    )


def _loop_flag(name: str) -> property:
    """The loop attribute `name` (asyncio's plain attribute, kept in the instance's ``__dict__`` as before), whose
    setter and deleter also tell the Rust fast path, which then need not look it up at each call_soon."""

    def get(loop: EventLoop) -> Any:
        try:
            return loop.__dict__[name]
        except KeyError:
            raise AttributeError(f"{type(loop).__name__!r} object has no attribute {name!r}") from None

    def set_(loop: EventLoop, value: Any) -> None:
        loop.__dict__[name] = value
        fast = loop.__dict__.get("_fast")
        if fast is not None:
            fast.flag_stored(name, value)

    def delete(loop: EventLoop) -> None:
        get(loop)
        del loop.__dict__[name]
        fast = loop.__dict__.get("_fast")
        if fast is not None:
            fast.flag_stored(name, None)  # not a bool: the fast path looks it up, and finds it missing

    return property(get, set_, delete, f"asyncio's {name}, also told to the Rust fast path when set.")


def _report_callback_error(handle: asyncio.Handle, exc: BaseException) -> None:
    """What ``Handle._run`` does with a callback's exception: the loop's exception handler gets it."""
    context = {
        "message": f"Exception in callback {format_helpers._format_callback_source(handle._callback, handle._args)}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


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
        self._fast: Optional[_core.AioLoop] = None
        if FAST_PATH and type(self).call_soon is EventLoop.call_soon and type(self)._run_once is EventLoop._run_once:
            self._fast = _core.AioLoop(
                self,
                self._ready,
                selector._core,
                asyncio.Handle,
                asyncio.TimerHandle,
                _FastHandle if _FastHandle is not None else asyncio.Handle,
                _HANDLE_INIT,
                _HANDLE_RUN,
                EventLoop.call_soon.__get__(self),  # debug mode, a closed loop
                super()._run_once,  # debug mode
                _report_callback_error,
                _dispatches_in_rust(type(self), selector),
                dict_first(type(self), _LOOP_STATE),
                _flags_kept(type(self)),
            )
            # run_forever's loop and Task steps find the Rust calls without a Python frame around them
            self.call_soon = self._fast.call_soon  # type: ignore[method-assign]
            self._run_once = self._fast.run_once  # type: ignore[method-assign]
            if type(self).create_task is base_events.BaseEventLoop.create_task and sys.version_info >= (3, 11):
                self.create_task = self._fast.create_task  # type: ignore[method-assign]
            if type(self).create_future is base_events.BaseEventLoop.create_future:
                self.create_future = self._fast.create_future  # type: ignore[method-assign]
            if type(self).time is base_events.BaseEventLoop.time:
                self.time = self._fast.time  # type: ignore[method-assign]
            if type(self).get_debug is base_events.BaseEventLoop.get_debug:
                self.get_debug = self._fast.get_debug  # type: ignore[method-assign]
            if type(self)._check_closed is base_events.BaseEventLoop._check_closed:
                self._check_closed = self._fast.check_closed  # type: ignore[method-assign]

    _debug = _loop_flag("_debug")
    _closed = _loop_flag("_closed")

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

    def _run_once(self) -> None:
        """One iteration, as asyncio's; with the fast path, `_core.AioLoop.run_once` (the instance's) runs instead."""
        if self._fast is None or self._debug:
            super()._run_once()
        else:
            self._fast.run_once()

    def _make_socket_transport(
        self, sock: Any, protocol: asyncio.BaseProtocol, waiter: Any = None, *, extra: Any = None, server: Any = None
    ) -> asyncio.Transport:
        """As the stdlib's; with the fast path on, the transport reads for ``data_received`` in Rust."""
        if self._fast is None:
            return super()._make_socket_transport(sock, protocol, waiter, extra=extra, server=server)
        return SocketTransport(self, sock, protocol, waiter, extra, server)

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
