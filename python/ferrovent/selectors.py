"""Cooperative selectors: the stdlib's ``selectors`` classes, whose ``select()`` blocks only the current greenlet.

Every public name of ``selectors`` is here. ``SelectSelector`` and ``PollSelector`` are the stdlib's running on
ferrovent's cooperative ``select()`` and ``poll()``. The selectors backed by a kernel object (``EpollSelector``,
``KqueueSelector``, ``DevpollSelector``) wait on that object's own fd, which is readable exactly when the selector
has events: the greenlet parks in the loop on it, then asks the selector with a zero timeout, so the answer is the
stdlib's and waiting costs one fd however many are registered. `GeventSelector`, gevent's selector, is the
cooperative version of the class the stdlib picked as its default, and is ``DefaultSelector``, as in gevent.
"""

from __future__ import annotations

import selectors as __selectors__
from functools import partial
from typing import Any, Optional

from ferrovent import select as _cooperative
from ferrovent._stdlib import copy_public_names
from ferrovent.os import _forget_fd

_copied = copy_public_names(__selectors__, globals())


class SelectSelector(__selectors__.SelectSelector):
    """Select-based selector; ``select()`` blocks only the current greenlet."""

    _select = staticmethod(_cooperative.select)


class _WaitsOnItsOwnFd:
    """For selectors with an fd of their own (epoll, kqueue, /dev/poll): park on it, then ask with timeout 0."""

    hub = None  # the hub whose loop select() waits in (None: the calling thread's)

    def select(self, timeout: Optional[float] = None) -> list[tuple[Any, int]]:
        """The ready ``(key, events)`` pairs, waiting up to ``timeout`` seconds (None: forever)."""
        waits = [(self.fileno(), False, True)]
        return _cooperative._level_wait(partial(super().select, 0), waits, timeout, self.hub)

    def close(self) -> None:
        """Closes the selector and its fd (after the loop has forgotten that fd)."""
        if not self._selector.closed:
            _forget_fd(self._selector.fileno())
        super().close()


_COOPERATIVE = {__selectors__.SelectSelector: SelectSelector}
__implements__ = ["DefaultSelector", "SelectSelector"]

if hasattr(__selectors__, "PollSelector"):

    class PollSelector(__selectors__.PollSelector):
        """Poll-based selector; ``select()`` blocks only the current greenlet."""

        _selector_cls = _cooperative.poll

    _COOPERATIVE[__selectors__.PollSelector] = PollSelector
    __implements__.append("PollSelector")


def _waiting_on_its_own_fd(std: type) -> type:
    """The cooperative version of the stdlib selector class ``std`` (epoll, kqueue, /dev/poll)."""
    doc = f"{std.__doc__.rstrip('.')}; ``select()`` blocks only the current greenlet."
    return type(std.__name__, (_WaitsOnItsOwnFd, std), {"__doc__": doc, "__module__": __name__})


for _name in ("EpollSelector", "KqueueSelector", "DevpollSelector"):
    if hasattr(__selectors__, _name):
        _std = getattr(__selectors__, _name)
        globals()[_name] = _COOPERATIVE[_std] = _waiting_on_its_own_fd(_std)
        __implements__.append(_name)
del _name


class GeventSelector(_COOPERATIVE[__selectors__.DefaultSelector]):
    """The selector to use with ferrovent (``DefaultSelector``): the stdlib's default kind, whose ``select()``
    blocks only the current greenlet. ``hub``: the hub whose loop it waits in (default: the calling thread's).
    As with every selector, unregister a file before closing it.
    """

    def __init__(self, hub: Any = None) -> None:
        super().__init__()
        if hub is not None:
            self.hub = hub

    def register(self, fileobj: Any, events: int, data: Any = None) -> __selectors__.SelectorKey:
        """Registers ``fileobj`` (an fd or an object with ``fileno()``) for ``events``; raises ValueError for an
        invalid mask or file descriptor (a closed one, say), KeyError if it is registered already."""
        try:
            return super().register(fileobj, events, data)
        except OSError as error:
            raise ValueError("Invalid file descriptor") from error


DefaultSelector = GeventSelector
__all__ = sorted({*_copied, *__implements__, "GeventSelector"})
