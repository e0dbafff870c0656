"""The waiting and notification machinery shared by Event, AsyncResult and the semaphores.

A linkable object keeps one FIFO line of links, a ``WaitQueue`` (Rust): greenlets parked in one of the object's
waits and callbacks registered with ``rawlink``. When the object becomes ready, a dispatch takes links from the
front of the line: a parked greenlet's resume joins the loop's ready queue right then (so the waiters run in the
order they waited, before anything scheduled after the notification), and a callback is queued with
``loop.run_callback`` at its place in that order, to run in the hub. Waking the whole line is one Rust call with no
Python call per greenlet; a wait is one Rust call too, which also tells a genuine wake from a stray one.

Because a woken greenlet only runs later, a dispatch can be overtaken: its greenlet may time out, be killed, or
(for a semaphore) find the counter taken by someone who did not wait. A semaphore counts the greenlets it woke
and that have not resumed (``_woken``), so it wakes no more waiters than it has units to give, and a waiter that
leaves without using its wake passes it on to the next in line.

Threads: an object belongs to the hub of the greenlets that link to it (its ``hub``); another thread's hub may
take it over once none of them waits. Making the object ready from another OS thread is safe: the dispatch is then
sent to the owner's loop with ``run_callback_threadsafe``. That must happen even when the line is still empty, since
a greenlet of the owner may be between its look at the object and its wait (another OS thread can run in between):
``_must_notify()`` (Rust) tells, cheaply, whether a change that made the object ready needs a notification.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from greenlet import getcurrent

from ferrovent._core import LinkCore, WaitQueue
from ferrovent.exceptions import InvalidThreadUseError
from ferrovent.hub import get_hub, get_hub_if_exists
from ferrovent.timeout import Timeout, wait_bounded_by

__all__ = ["Linkable"]


class Linkable(LinkCore):
    """Base of the objects greenlets wait on; subclasses define ``ready()`` and have links notified when it turns
    true (see the module's notes on threads). ``_dispatch`` wakes every link (Event, AsyncResult); the semaphores
    override it to wake only as many waiters as they have units for, counting them in ``_woken``.

    The state the wait path reads lives in ``LinkCore`` (Rust): ``_links`` (the line), ``_loop`` (the owner's
    loop), ``_flag`` (Event's, with its methods) and ``_dispatching`` (Event, AsyncResult: woken greenlets are
    queued to run).
    """

    __slots__ = ("hub", "_woken", "_scheduled", "__weakref__")

    def __init__(self, hub=None) -> None:
        #: The hub whose greenlets wait on this object (None until one does).
        self.hub = hub
        if hub is not None:
            self._loop = hub.loop
        self._woken = 0  # semaphores: greenlets woken for a unit and not resumed yet
        self._scheduled = None  # callbacks handed to the loop and not run yet (unlink cancels them)

    def ready(self) -> bool:
        raise NotImplementedError

    def linkcount(self) -> int:
        """How many links (waiting greenlets and callbacks) are registered; a callback counts until it has run."""
        scheduled = self._scheduled
        return len(self._links) + (len(scheduled) if scheduled else 0)

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
        if not self._links.remove(callback):
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
            self._dispatching = False  # a wake-up the old owner's loop never ran (its hub is gone)
        return self._loop

    # -- notification ---------------------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wakes links after the object became ready; from another OS thread, the owner's loop does it."""
        hub = self.hub
        if hub is not None and hub is not get_hub_if_exists():
            loop = hub.loop
            if loop is not None:  # else the owner's hub was destroyed: nobody of it waits any more
                loop.run_callback_threadsafe(self._notify)
            return
        if not self._links:
            return
        if hub is None:  # only foreign threads' callbacks wait: dispatch from here
            hub = get_hub_if_exists()
            if hub is not None:
                self._own(hub)
        self._dispatch()

    def _dispatch(self) -> None:
        """Wakes every link, in order: greenlets by their park tokens, callbacks through the loop."""
        if self._links.wake_all(self._loop, self._schedule_link) and not self._dispatching:
            self._dispatching = True
            self._loop.run_callback(self._dispatched)  # runs after every greenlet just woken

    def _dispatched(self) -> None:
        self._dispatching = False

    def _schedule_link(self, link) -> None:
        """Queues ``link(self)`` to run in the hub (now, if there is no hub at all: a foreign thread's callback)."""
        loop = self._loop
        if loop is None:
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
        The loop checks that it is the calling thread's; when not (or when nobody waited yet), the calling
        thread's hub takes the object over first, as ``_own`` allows.
        """
        loop = self._loop
        if loop is not None:
            try:
                return self._links.wait(loop, timeout, front, None, self._lost_wake)
            except InvalidThreadUseError:
                if self.hub is get_hub_if_exists():
                    raise  # thrown into the wait, not the loop's thread check
        loop = self._own(get_hub())
        if self.ready():  # made ready by another OS thread, which saw no owner to notify
            return self._ready_before_parking()
        return self._links.wait(loop, timeout, front, None, self._lost_wake)

    def _park_until(self, timeout) -> bool:
        """``_park(timeout)`` for the public waits, whose ``timeout`` may also be a Timeout instance: False if it
        fired (see ``ferrovent.timeout``)."""
        if isinstance(timeout, Timeout):
            return wait_bounded_by(timeout, self._park_forever, False)
        return self._park(timeout)

    def _park_forever(self) -> bool:
        return self._park(None)

    def _wait_bounded(self, timeout: Timeout) -> bool:
        """Event.wait (Rust) with a Timeout instance for ``timeout``: False if it fired first."""
        if not isinstance(timeout, Timeout):
            raise TypeError(f"timeout must be a number, None or a Timeout, not {type(timeout).__name__}")
        return wait_bounded_by(timeout, self._wait_for_flag, False)

    def _lost_wake(self) -> None:
        """A woken greenlet left without using its wake (Event, AsyncResult: nothing was consumed)."""

    def _ready_before_parking(self) -> bool:
        """``_park`` found the object ready (made so by another OS thread) as it took ownership."""
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
        self._links = WaitQueue()
        self._woken = 0
        self._dispatching = False
        self._scheduled = None
