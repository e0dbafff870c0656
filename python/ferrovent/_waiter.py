"""Waiter: a one-shot rendezvous between the hub and one greenlet (gevent's low-level ``gevent.hub.Waiter``).

A greenlet calls ``get()`` and is suspended in the hub; a callback running in the hub hands it a value with
``switch(value)`` or an exception with ``throw(...)``, and the greenlet resumes at once, inside that callback. If the
value or exception comes before anyone waits, it is kept and the next ``get()`` returns (or raises) it without
waiting. Event, AsyncResult and Queue are the safe tools; a Waiter nobody switches leaves its greenlet suspended.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent

from ferrovent.exceptions import BlockingSwitchOutError, ConcurrentObjectUseError

if TYPE_CHECKING:
    from ferrovent.hub import Hub

__all__ = ["Waiter", "MultipleWaiter"]

_EMPTY = object()  # neither a value nor an exception has arrived


class Waiter:
    """Suspends one greenlet in ``get()`` until the hub calls ``switch`` or ``throw``; one value per round."""

    __slots__ = ("hub", "greenlet", "value", "_outcome")

    def __init__(self, hub: Hub | None = None) -> None:
        if hub is None:
            from ferrovent.hub import get_hub  # imported late: the hub module re-exports this class

            hub = get_hub()
        self.hub = hub
        self.greenlet = None  # the greenlet suspended in get(), if any
        self.value = None
        self._outcome = _EMPTY  # None once a value came; the throw() arguments once an exception did

    def clear(self) -> None:
        """Forgets the value or exception and the waiting greenlet, for another round."""
        self.greenlet = None
        self.value = None
        self._outcome = _EMPTY

    def __str__(self) -> str:
        name = type(self).__name__
        if self._outcome is _EMPTY:
            return f"<{name} greenlet={self.greenlet}>"
        if self._outcome is None:
            return f"<{name} greenlet={self.greenlet} value={self.value!r}>"
        return f"<{name} greenlet={self.greenlet} exc_info={self.exc_info!r}>"

    def ready(self) -> bool:
        """True once it holds a value or an exception."""
        return self._outcome is not _EMPTY

    def successful(self) -> bool:
        """True once it holds a value (not an exception)."""
        return self._outcome is None

    @property
    def exc_info(self) -> tuple[Any, ...] | None:
        """The arguments ``throw`` was given, once it was called (else None)."""
        outcome = self._outcome
        return None if outcome is _EMPTY else outcome

    def _resume(self, method, *args) -> None:
        if getcurrent() is not self.hub:
            raise AssertionError("Can only use Waiter.switch method from the Hub greenlet")
        try:
            method(*args)
        except BaseException:
            self.hub.handle_error(method, *sys.exc_info())

    def switch(self, value: Any) -> None:
        """Resumes the waiting greenlet with ``value`` (only from the hub), or keeps the value if none waits."""
        waiting = self.greenlet
        if waiting is None:
            self.value = value
            self._outcome = None
        else:
            self._resume(waiting.switch, value)

    def switch_args(self, *args: Any) -> None:
        """``switch(args)``: for callbacks that are given several arguments."""
        self.switch(args)

    def throw(self, *throw_args: Any) -> None:
        """Raises ``throw_args`` (as ``greenlet.throw`` takes them) in the waiting greenlet, or keeps them."""
        waiting = self.greenlet
        if waiting is None:
            self._outcome = throw_args
        else:
            self._resume(waiting.throw, *throw_args)

    def get(self) -> Any:
        """Returns the value (or raises the exception) kept, else suspends until ``switch`` or ``throw``."""
        outcome = self._outcome
        if outcome is None:
            return self.value
        if outcome is not _EMPTY:
            getcurrent().throw(*outcome)
        if self.greenlet is not None:
            raise ConcurrentObjectUseError(f"This Waiter is already used by {self.greenlet!r}")
        current = getcurrent()
        if current is self.hub:
            raise BlockingSwitchOutError("Impossible to call blocking function in the event loop callback")
        self.greenlet = current
        try:
            return self.hub.switch()
        finally:
            self.greenlet = None

    def __call__(self, source: Any) -> None:
        """As a link target: takes the outcome of ``source`` (a finished Greenlet or AsyncResult)."""
        if source.exception is None:
            self.switch(source.value)
        else:
            self.throw(source.exception)


class MultipleWaiter(Waiter):
    """A Waiter for several switches: each value is kept, and each ``get()`` returns the oldest one left."""

    __slots__ = ("_values",)

    def __init__(self, hub: Hub | None = None) -> None:
        Waiter.__init__(self, hub)
        self._values: list = []

    def switch(self, value: Any) -> None:
        self._values.append(value)
        Waiter.switch(self, True)

    def get(self) -> Any:
        if not self._values:
            Waiter.get(self)
            Waiter.clear(self)
        return self._values.pop(0)
