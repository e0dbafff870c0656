"""Timeout: an exception raised in a greenlet after a delay, usable as a context manager; and with_timeout.

Wherever gevent takes ``timeout=`` on a blocking call (``Event.wait``, ``AsyncResult.get``, ``Greenlet.join``,
``Queue.get``, ``Semaphore.acquire``...), a Timeout instance may be given instead of seconds: `wait_bounded_by`
runs the wait under it. It is started unless already pending and closed when the wait ends; if it fires, the calls
that report a timeout by their return value (``wait``, ``join``, ``acquire``) return as timed out, and those that
raise (``get``, ``put``, ``peek``) raise it. A Timeout made with another exception raises that exception in both.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from greenlet import getcurrent

from ferrovent.hub import get_hub

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Timeout", "with_timeout"]

_T = TypeVar("_T")

_NONE = object()
#: `wait_bounded_by`'s ``expired`` for the calls that let the Timeout propagate.
RAISE = object()


class _NoTimeout:
    """Stands in for a Timeout of None seconds: nothing to start or cancel."""

    __slots__ = ()
    pending = False

    def cancel(self):
        pass

    close = cancel

    def __enter__(self):
        return self

    def __exit__(self, t, v, tb):
        return None


_NO_TIMEOUT = _NoTimeout()


class Timeout(BaseException):
    """Raises itself (or ``exception``) in the greenlet that started it once ``seconds`` have passed.

    Creating it does not start it: ``start()``, ``start_new()`` or a ``with`` block does. ``exception`` None
    raises this Timeout; False raises it too, but its own ``with`` block swallows it; a string is kept as the
    message and this Timeout is raised; a class or instance raises that instead. ``seconds`` None never fires. A
    cancelled Timeout never fires. ``ref`` False lets the loop exit while it is pending; ``priority`` is accepted
    for gevent's signature and ignored. It derives from ``BaseException`` (as gevent's), so ``except Exception``
    does not catch it.

    Usage: ``with Timeout(5): ...``, or ``t = Timeout.start_new(5)`` and ``t.cancel()`` in a ``finally``. Timers
    never fire early here (docs/differences.md, "Scheduling").
    """

    def __init__(
        self,
        seconds: float | None = None,
        exception: type[BaseException] | BaseException | str | bool | None = None,
        ref: bool = True,
        priority: int = -1,
    ) -> None:
        BaseException.__init__(self)
        self.seconds = seconds
        self.exception = exception
        self._ref = ref
        self._timer = None
        self._loop = None

    def start(self) -> None:
        """Starts counting in the current greenlet: that greenlet is the one it fires in. Does nothing if
        ``seconds`` is None. Raises ``AssertionError`` if already pending."""
        if self.pending:
            raise AssertionError(f"{self!r} is already started; to restart it, cancel it first")
        if self.seconds is None:
            return
        exception = self.exception
        throws = self if exception is None or exception is False or isinstance(exception, str) else exception
        if isinstance(throws, type):
            throws = throws()
        self._loop = get_hub().loop
        self._timer = self._loop.throw_later(self.seconds, getcurrent(), throws, ref=self._ref)

    @classmethod
    def start_new(
        cls,
        timeout: float | Timeout | None = None,
        exception: type[BaseException] | BaseException | str | bool | None = None,
        ref: bool = True,
    ) -> Timeout:
        """Creates and starts a Timeout of ``timeout`` seconds and returns it; a Timeout instance passed in is
        started (if not pending) and returned as it is."""
        if isinstance(timeout, Timeout):
            if not timeout.pending:
                timeout.start()
            return timeout
        started = cls(timeout, exception, ref=ref)
        started.start()
        return started

    @staticmethod
    def _start_new_or_dummy(timeout, exception=None, ref=True):
        if timeout is None:
            return _NO_TIMEOUT
        return Timeout.start_new(timeout, exception, ref)

    @property
    def pending(self) -> bool:
        """True while started and neither fired nor cancelled."""
        return self._timer is not None and self._loop.timer_pending(self._timer)

    def cancel(self) -> None:
        """Stops it; it will not fire after this returns. It may be started again. Cancelling twice is harmless."""
        if self._timer is not None:
            self._loop.cancel_timer(self._timer)
            self._timer = None

    def close(self) -> None:
        """Cancels it and releases what it holds (the ``with`` block's exit calls it)."""
        self.cancel()
        self._loop = None

    def __repr__(self):
        pending = " pending" if self.pending else ""
        return f"<{type(self).__name__} at {hex(id(self))} seconds={self.seconds} exception={self.exception}{pending}>"

    def __str__(self):
        if self.seconds is None:
            return ""
        suffix = "" if self.seconds == 1 else "s"
        if self.exception is None:
            return f"{self.seconds} second{suffix}"
        if self.exception is False:
            return f"{self.seconds} second{suffix} (silent)"
        return f"{self.seconds} second{suffix}: {self.exception}"

    def __enter__(self) -> Self:
        if not self.pending:
            self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self.close()
        if value is self and self.exception is False:
            return True
        return None


def with_timeout(seconds: float | None, function: Callable[..., _T], *args: Any, **kwds: Any) -> _T | Any:
    """Calls ``function(*args, **kwds)`` and returns its result, interrupting it with ``Timeout`` after ``seconds``.

    The Timeout is raised to the caller, unless the keyword ``timeout_value`` is given (it is not passed on to
    ``function``): then that value is returned instead. A Timeout the function itself starts is not mistaken for
    this one.
    """
    timeout_value = kwds.pop("timeout_value", _NONE)
    timeout = Timeout.start_new(seconds)
    try:
        try:
            return function(*args, **kwds)
        except Timeout as ex:
            if ex is timeout and timeout_value is not _NONE:
                return timeout_value
            raise
    finally:
        timeout.cancel()


def wait_bounded_by(timeout: Timeout, wait, expired=RAISE):
    """Runs ``wait()`` (a wait with no time limit of its own) under the Timeout instance ``timeout``.

    Returns what ``wait()`` returns, or ``expired`` if ``timeout`` fired (raising itself); with ``expired`` left as
    `RAISE`, the Timeout propagates. See the module's notes.
    """
    if not timeout.pending:
        timeout.start()
    try:
        return wait()
    except Timeout as fired:
        if fired is not timeout or expired is RAISE:
            raise
        return expired
    finally:
        timeout.close()
