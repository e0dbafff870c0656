"""The asyncio loop's selector: its fds waited on in the hub's Rust loop, not in a poll of their own.

asyncio's selector loop asks a selector two things: remember which fds it wants (``register``/``modify``/
``unregister``) and ``select(timeout)``: say which are ready, waiting up to ``timeout``. Here the registrations
live in a Rust object (``_core.AioSelector``), and ``select`` answers with level truth, as the stdlib's selectors
would: on Linux from one zero-timeout epoll_wait on the selector's own level-triggered epoll instance (kept in step
at each ``register``/``modify``/``unregister``, as the stdlib's ``EpollSelector``, so a question costs per ready fd),
elsewhere from one zero-timeout poll(2) over the registered fds. Only when nothing is ready and the timeout allows
does the loop's greenlet park in the hub's fd table: on Linux on the epoll fd, which the hub's poller watches and
which turns readable when any registered fd is ready; elsewhere on each registered fd. Meanwhile the hub runs every
other greenlet, and its one poll serves both.

As with the stdlib's default loop on Linux, an fd epoll refuses (a regular file) cannot be registered
(``PermissionError``), and an fd closed while registered silently stops being reported. A forked child gets an
epoll instance of its own at its first use of the selector (at once if its loop was waiting at the fork), so
parent and child do not change each other's set.

A ``select`` that finds something ready returns at once, without a switch, unless the hub has greenlets ready to
run or a switch interval (``sys.getswitchinterval()``) has passed since the loop last let the hub run: then it
yields once, until after the hub's next poll. So greenlets, their fds and their timers get a turn at least once
per switch interval however busy asyncio is, and a busy asyncio loop pays nothing for them otherwise.
"""

from __future__ import annotations

import selectors
from typing import TYPE_CHECKING, Any, Optional

from ferrovent import _core

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

    from ferrovent.hub import Hub

__all__ = ["HubSelector"]

_BOTH = selectors.EVENT_READ | selectors.EVENT_WRITE


class HubSelector(selectors._BaseSelectorImpl):
    """A selector whose ``select()`` parks the calling greenlet in ``hub``'s loop until an fd is ready, the
    timeout passes, or `wake` is called (from another greenlet of the hub's thread)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self._hub = hub
        self._core = _core.AioSelector(hub.loop)

    # -- registrations
    def register(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> selectors.SelectorKey:
        """As the stdlib's selectors; ``select`` looks at the fd from now on."""
        key = super().register(fileobj, events, data)
        try:
            self._core.set(key.fd, events, key)
        except BaseException:
            super().unregister(fileobj)  # as the stdlib's EpollSelector: the kernel refused it (a regular file)
            raise
        return key

    def modify(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> selectors.SelectorKey:
        """As the stdlib's selectors, in place: the fd keeps its registration in the hub's poller."""
        fd = self._fileobj_lookup(fileobj)
        key = self._fd_to_key.get(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        if not events or events & ~_BOTH:
            raise ValueError(f"Invalid events: {events!r}")
        if events != key.events or data != key.data:
            key = key._replace(events=events, data=data)
            try:
                self._core.set(fd, events, key)
            except BaseException:
                self.unregister(fileobj)  # as the stdlib's EpollSelector
                raise
            self._fd_to_key[fd] = key
        return key

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        """As the stdlib's selectors; the hub's poller forgets the fd unless a greenlet waits on it."""
        key = super().unregister(fileobj)
        self._core.remove(key.fd)
        return key

    # -- waiting
    def wake(self) -> None:
        """Ends a ``select()`` parked in another greenlet (no-op if none is)."""
        self._core.wake()

    def select(self, timeout: Optional[float] = None) -> list[tuple[selectors.SelectorKey, int]]:
        """The ready ``(key, events)`` pairs, parking the calling greenlet in the hub up to ``timeout`` seconds
        (None: until an fd is ready or `wake` is called) if none is; other greenlets run meanwhile, and see no
        running asyncio loop (this thread's running loop and async-generator hooks are this loop's again on
        return)."""
        return self._core.select(timeout)

    def close(self) -> None:
        """Forgets the registrations and closes the epoll instance; the hub's poller forgets what it watched for it."""
        self._core.close()
        super().close()
