"""Event and AsyncResult: wake greenlets when a flag is set or a result arrives.

Waiters are woken in the order they began waiting. Both may be made ready from another OS thread (the wake-up is
then run by the owning hub's loop), which is how results computed in real threads reach greenlets.
"""

from __future__ import annotations

from typing import Any, Optional

from ferrovent._linkable import Linkable
from ferrovent.timeout import Timeout, wait_bounded_by

__all__ = ["Event", "AsyncResult"]

_UNSET = object()


class Event(Linkable):
    """A flag greenlets can wait for, with the interface of ``threading.Event``.

    ``set()`` wakes every greenlet waiting at that moment, and those that start waiting before that wake-up is
    through (it runs behind the greenlets already queued, as gevent's notification does); each learns only that
    the flag was set at least once while it waited (it may have been cleared again since). Once set, ``wait()``
    returns at once until ``clear()``.
    """

    __slots__ = ()

    def __init__(self) -> None:
        Linkable.__init__(self)

    def __repr__(self) -> str:
        state = "set" if self._flag else "clear"
        return f"<{type(self).__name__} at {hex(id(self))} {state} _links[{len(self._links)}]>"

    # The flag and its methods are Rust (LinkCore, whose docstrings they carry): no Python frame on the hottest wait
    # there is, nor on a set or a clear.
    is_set = isSet = ready = Linkable._flag_is_set
    set = Linkable._set_flag
    clear = Linkable._clear_flag
    wait = Linkable._wait_for_flag


class AsyncResult(Linkable):
    """A one-time result: a value or an exception, delivered to every greenlet that waits for it.

    ``set(value)`` or ``set_exception(exc)`` makes it ready; ``get()`` returns the value or raises the exception,
    blocking until then. It can be used as a link target: ``greenlet.link(result)`` stores the greenlet's outcome.
    The futures-style ``result``/``done``/``cancel``/``cancelled`` are there too. Safe to set from another OS thread.
    """

    __slots__ = ("_value", "_exc_info")

    def __init__(self) -> None:
        Linkable.__init__(self)
        self._value = _UNSET
        self._exc_info = ()

    def __repr__(self) -> str:
        parts = [f"<{type(self).__name__} at {hex(id(self))}"]
        if self._value is not _UNSET:
            parts.append(f"value={self._value!r}")
        elif self._exc_info:
            parts.append(f"exception={self._exc_info[1]!r}")
        else:
            parts.append("unset")
        parts.append(f"_links[{len(self._links)}]>")
        return " ".join(parts)

    # -- state ------------------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """True once it holds a value or an exception."""
        return self._value is not _UNSET or bool(self._exc_info)

    done = ready

    def successful(self) -> bool:
        """True once it holds a value (not an exception)."""
        return self._value is not _UNSET

    @property
    def value(self) -> Any:
        """The value given to ``set()``, or None."""
        return None if self._value is _UNSET else self._value

    @property
    def exception(self) -> Optional[BaseException]:
        """The exception given to ``set_exception()``, or None."""
        return self._exc_info[1] if self._exc_info else None

    @property
    def exc_info(self) -> tuple:
        """``(type, value, traceback)`` of the stored exception, or ``()``."""
        return self._exc_info

    # -- setting ----------------------------------------------------------------------------------------------

    def set(self, value: Any = None) -> None:
        """Stores ``value`` and wakes every waiter. Safe to call from any OS thread."""
        self._value = value
        if self._must_notify():
            self._notify()

    set_result = set

    def set_exception(self, exception: BaseException, exc_info: Optional[tuple] = None) -> None:
        """Stores ``exception`` (re-raised by ``get()``, with ``exc_info``'s traceback if given) and wakes waiters."""
        if exc_info:
            self._exc_info = (exc_info[0], exc_info[1], exc_info[2])
        else:
            self._exc_info = (type(exception), exception, None)
        if self._must_notify():
            self._notify()

    def __call__(self, source: Any) -> None:
        """Stores the outcome of ``source`` (a finished Greenlet): lets it be given to ``link``/``rawlink``."""
        if source.successful():
            self.set(source.value)
        else:
            self.set_exception(source.exception, getattr(source, "exc_info", None))

    # -- getting ----------------------------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Returns the value or raises the exception, waiting for it if needed.

        Not ready: with ``block`` false, raises Timeout at once; else waits, raising Timeout after ``timeout``.
        """
        if self._value is not _UNSET:
            return self._value
        if not self._exc_info:
            if not block:
                raise Timeout()
            if isinstance(timeout, Timeout):
                wait_bounded_by(timeout, self._park_forever)
            elif not self._park(timeout):
                raise Timeout(timeout)
            if self._value is not _UNSET:
                return self._value
        _, value, tb = self._exc_info
        if isinstance(value, type):
            raise value
        raise value.with_traceback(tb)

    def __await__(self):
        """``await async_result`` in a coroutine waits for it (``ferrovent.asyncio.wait_greenlet``)."""
        from ferrovent.asyncio import wait_greenlet  # imported late: only asyncio users need it

        return wait_greenlet(self).__await__()

    def get_nowait(self) -> Any:
        """Returns the value or raises the exception; raises Timeout if not ready yet."""
        return self.get(block=False)

    def result(self, timeout: Optional[float] = None) -> Any:
        """Futures-style ``get``."""
        return self.get(timeout=timeout)

    def wait(self, timeout: Optional[float] = None) -> Any:
        """Blocks until ready or ``timeout`` passes; returns the value (None if an exception or time ran out)."""
        if self.ready():
            if self._dispatching:
                self._yield_to_woken()
        else:
            self._park_until(timeout)
        return self.value

    def cancel(self) -> bool:
        """An AsyncResult cannot be cancelled: returns False."""
        return False

    def cancelled(self) -> bool:
        """Always False."""
        return False
