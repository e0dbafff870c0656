"""The waiting and notification machinery shared by Event, AsyncResult and the semaphores.

A linkable object keeps one FIFO line of links. A link is either a greenlet parked in one of the object's waits
or a callback registered with ``rawlink``. When the object becomes ready, a dispatch takes links from the front of
the line: a parked greenlet is woken with one ``loop.wake`` (its resume joins the loop's ready queue right then,
so the waiters run in the order they waited, before anything scheduled after the notification), and a callback is
queued with ``loop.run_callback`` to run in the hub. Nothing else is built per wait: the greenlet itself is the
link and the object itself is the wake value, which tells a genuine wake apart from a stray one.

Because a woken greenlet only runs later, a dispatch can be overtaken: its greenlet may time out, be killed, or
(for a semaphore) find the counter taken by someone who did not wait. A semaphore counts the greenlets it woke
and that have not resumed (``_woken``), so it wakes no more waiters than it has units to give, and a waiter that
leaves without using its wake passes it on to the next in line.

Threads: an object belongs to the hub of the greenlets that link to it (its ``hub``); another thread's hub may
take it over once none of them waits. Making the object ready from another OS thread is safe: the dispatch is then
sent to the owner's loop with ``run_callback_threadsafe``.
"""

from __future__ import annotations

import sys
from collections import deque
from time import monotonic
from typing import Any, Callable, Optional

from greenlet import getcurrent

from ferrovent._core import TIMEOUT
from ferrovent.exceptions import InvalidThreadUseError
from ferrovent.hub import get_hub, get_hub_if_exists

__all__ = ["Linkable"]


class Linkable:
    """Base of the objects greenlets wait on; subclasses define ``ready()`` and call ``_notify()`` when it turns
    true. ``_dispatch`` wakes every link (Event, AsyncResult); the semaphores override it to wake only as many
    waiters as they have units for, counting them in ``_woken``."""

    __slots__ = ("hub", "_loop", "_links", "_woken", "_dispatching", "_scheduled", "__weakref__")

    def __init__(self, hub=None) -> None:
        #: The hub whose greenlets wait on this object (None until one does).
        self.hub = hub
        self._loop = None if hub is None else hub.loop
        self._links = deque()
        self._woken = 0  # semaphores: greenlets woken for a unit and not resumed yet
        self._dispatching = False  # Event, AsyncResult: woken greenlets are queued to run
        self._scheduled = None  # callbacks handed to the loop and not run yet (unlink cancels them)

    def ready(self) -> bool:
        raise NotImplementedError

    def linkcount(self) -> int:
        """How many links (waiting greenlets and callbacks) are registered."""
        return len(self._links)

    # -- links ------------------------------------------------------------------------------------------

    def rawlink(self, callback: Callable[[Any], Any]) -> None:
        """Calls ``callback(self)`` in the hub once this object is ready (soon, if it already is).

        The callback runs in the hub, so it must not block. It is unlinked before it is called.
        """
        if not callable(callback):
            raise TypeError(f"Expected callable: {callback!r}")
        self._own(get_hub())
        self._links.append(callback)
        if self.ready():
            self._notify()

    def unlink(self, callback: Callable[[Any], Any]) -> None:
        """Removes a callback added by ``rawlink``; one that was due to run but has not run yet is cancelled."""
        try:
            self._links.remove(callback)
        except ValueError:
            scheduled = self._scheduled
            if scheduled:
                try:
                    scheduled.remove(callback)
                except ValueError:
                    pass

    def _own(self, hub):
        """Makes ``hub`` (the calling thread's) the owner, unless another hub's greenlets are waiting. Returns the
        owner's loop."""
        owner = self.hub
        if owner is not hub:
            if owner is not None and (self._links or self._woken):
                raise InvalidThreadUseError(owner, hub, getcurrent())
            self.hub = hub
            self._loop = hub.loop
        return self._loop

    # -- notification ---------------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wakes links after the object became ready; from another OS thread, the owner's loop does it."""
        if not self._links:
            return
        hub = self.hub
        if hub is not None and hub is not get_hub_if_exists():
            hub.loop.run_callback_threadsafe(self._notify)
            return
        if hub is None:  # only foreign threads' callbacks wait: dispatch from here
            hub = get_hub_if_exists()
            if hub is not None:
                self._own(hub)
        self._dispatch(None if hub is None else hub.loop)

    def _dispatch(self, loop) -> None:
        """Wakes every link, in order: greenlets with one ``loop.wake`` each, callbacks through the loop."""
        links = self._links
        called = None
        woke = False
        while links:  # popped one by one: safe even if another OS thread appends meanwhile
            link = links.popleft()
            if not callable(link):
                loop.wake(link, self)
                woke = True
            elif called is None or id(link) not in called:  # a callback linked twice runs once
                called = called or set()
                called.add(id(link))
                self._schedule_call(loop, link)
        if woke and not self._dispatching:
            self._dispatching = True
            loop.run_callback(self._dispatched)  # runs after every greenlet just woken

    def _dispatched(self) -> None:
        self._dispatching = False

    def _schedule_call(self, loop, link) -> None:
        if loop is None:  # no hub anywhere: only a foreign thread's callback can be waiting; call it now
            self._call_link(link)
            return
        scheduled = self._scheduled
        if scheduled is None:
            scheduled = self._scheduled = []
        scheduled.append(link)
        loop.run_callback(self._run_scheduled, link)

    def _run_scheduled(self, link) -> None:
        try:
            self._scheduled.remove(link)
        except ValueError:
            return  # unlinked after it was scheduled
        self._call_link(link)

    def _call_link(self, link) -> None:
        try:
            link(self)
        except BaseException:
            hub = self.hub or get_hub_if_exists()
            if hub is None:
                raise
            hub.handle_error((link, self), *sys.exc_info())

    # -- waiting --------------------------------------------------------------------------------------------

    def _park(self, timeout: Optional[float], front: bool = False) -> bool:
        """Parks the current greenlet in the line until a dispatch wakes it: True if woken, False on timeout.

        A wake that reaches the greenlet after its timeout still counts (True): the object became ready in time.
        """
        current = getcurrent()
        loop = self._loop
        if current.parent is not self.hub or loop is None:  # a greenlet's parent is its thread's hub
            loop = self._own(get_hub())
        links = self._links
        if front:
            links.appendleft(current)
        else:
            links.append(current)
        if links[0] is current and self.ready():
            links.remove(current)  # made ready by another OS thread since the caller looked
            return self._ready_before_parking()
        try:
            deadline = None if timeout is None else monotonic() + timeout
            result = loop.park(timeout)
            if result is not self:
                result = self._after_odd_wake(loop, current, result, deadline)
        except BaseException:
            self._abandon(current)
            raise
        return result is self

    def _after_odd_wake(self, loop, current, result, deadline: Optional[float]):
        """Handles a park that ended some other way than our own wake: a timeout, or a stray wake."""
        while result is not self:
            if current not in self._links:
                return self  # a dispatch took us off the line; its wake is the one we lost
            if result is TIMEOUT:
                self._links.remove(current)
                return TIMEOUT
            result = loop.park(None if deadline is None else max(0.0, deadline - monotonic()))
        return result

    def _abandon(self, current) -> None:
        """Leaves the line after an exception; a wake already given to us goes to the next waiter."""
        try:
            self._links.remove(current)
        except ValueError:
            self._lost_wake()

    def _lost_wake(self) -> None:
        """A woken greenlet left without using its wake (Event, AsyncResult: nothing was consumed)."""

    def _ready_before_parking(self) -> bool:
        """``_park`` found the object ready (set from another OS thread) just as it queued: no need to wait."""
        return True

    def _yield_to_woken(self) -> None:
        """Lets the greenlets just woken by a notification run before the caller, which found us ready."""
        hub = get_hub_if_exists()
        if hub is not None and getcurrent() is not hub:
            hub.loop.sleep(0)

    def _at_fork_reinit(self) -> None:
        """Forgets every waiter and the owning hub (called in a forked child, whose hub and greenlets are new)."""
        self.hub = None
        self._loop = None
        self._links = deque()
        self._woken = 0
        self._dispatching = False
        self._scheduled = None
