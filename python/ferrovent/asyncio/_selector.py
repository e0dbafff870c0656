"""The asyncio loop's selector: registrations in the hub's Rust loop instead of a second poller.

asyncio's selector loop asks a selector two things: remember which fds it wants (``register``/``modify``/
``unregister``) and ``select(timeout)``: wait until one is ready. Here each registered fd is an io watch in the
hub's loop (``_core.watch_io``), and ``select`` parks the loop's greenlet in the hub, so while asyncio waits, the
hub runs every other greenlet, and one poll serves both.

A watch reports readiness once and then stands down until the next ``select``: io watches are level-triggered, and
one left armed while the asyncio loop is busy elsewhere (a coroutine blocked in patched code) would make the hub
spin on an fd nobody reads. ``select`` re-arms what fired, so a busy loop costs one watch call per fired fd.
"""

from __future__ import annotations

import selectors
import sys
from asyncio.events import _get_running_loop, _set_running_loop
from typing import TYPE_CHECKING, Any, Callable, Optional

from greenlet import getcurrent

from ferrovent import _core

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

    from ferrovent.hub import Hub


class HubSelector(selectors._BaseSelectorImpl):
    """A selector whose ``select()`` parks the calling greenlet in ``hub``'s loop until an fd is ready, the
    timeout passes, or `wake` is called (from another greenlet of the hub's thread)."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self._hub = hub
        self._watches: dict[int, int] = {}  # fd -> watch id, for armed watches
        self._fired: dict[int, int] = {}  # fd -> events seen since the last select
        self._parked: Optional[Any] = None  # the greenlet parked in select(), if one is
        self._armed_since_poll = False  # a watch started since select() last let the hub poll
        self._stood_down: list[int] = []  # fds whose watch fired and waits to be armed again
        self._on_ready: dict[int, Callable[[int], None]] = {}  # fd -> its watch's callback, made once

    # -- registrations
    def register(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> selectors.SelectorKey:
        """As the stdlib's selectors; the fd is watched in the hub's loop from now on."""
        key = super().register(fileobj, events, data)
        self._arm(key.fd, events)
        return key

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        """As the stdlib's selectors; the hub's loop stops watching the fd."""
        key = super().unregister(fileobj)
        self._disarm(key.fd)
        self._fired.pop(key.fd, None)
        self._on_ready.pop(key.fd, None)
        return key

    def _arm(self, fd: int, events: int) -> None:
        self._disarm(fd)
        self._armed_since_poll = True
        self._watches[fd] = _core.watch_io(self._hub.loop, fd, events, self._ready_callback(fd))

    def _disarm(self, fd: int) -> None:
        watch = self._watches.pop(fd, None)
        if watch is not None:
            _core.unwatch(self._hub.loop, watch)

    def _ready_callback(self, fd: int) -> Callable[[int], None]:
        callback = self._on_ready.get(fd)
        if callback is None:

            def callback(revents: int) -> None:
                # runs in the hub: note the events, stand down until the next select(), wake the loop
                self._fired[fd] = self._fired.get(fd, 0) | revents
                self._disarm(fd)
                self.wake()

            self._on_ready[fd] = callback
        return callback

    # -- waiting
    def wake(self) -> None:
        """Ends a ``select()`` parked in another greenlet (no-op if none is)."""
        parked = self._parked
        if parked is not None:
            self._parked = None
            self._hub.loop.wake(parked)

    def select(self, timeout: Optional[float] = None) -> list[tuple[selectors.SelectorKey, int]]:
        """The ready ``(key, events)`` pairs, parking the calling greenlet in the hub up to ``timeout`` seconds
        (None: until an fd is ready or `wake` is called); other greenlets run meanwhile."""
        for fd in self._stood_down:
            key = self._fd_to_key.get(fd)
            if key is not None and fd not in self._watches:
                self._arm(fd, key.events)
        # Other greenlets of this thread run while this one waits: asyncio's running loop and async-generator
        # hooks are per thread, so they must not see this loop's while it is away, and get it back on return.
        running, hooks = _get_running_loop(), sys.get_asyncgen_hooks()
        _set_running_loop(None)
        try:
            if self._fired or (timeout is not None and timeout <= 0 and not self._armed_since_poll):
                # yield all the same: greenlets get their turn on every asyncio iteration, and the hub polls the
                # fds at least once per switch interval however busy this loop is
                self._hub.loop.sleep(0)
            elif timeout is not None and timeout <= 0:
                # an fd was armed since the hub last polled: a zero timer fires on the hub's next iteration, after
                # its poll, so that fd is looked at now, as a zero-timeout select() would
                self._armed_since_poll = False
                self._hub.loop.park(0)
            else:
                self._armed_since_poll = False
                self._parked = getcurrent()
                try:
                    self._hub.loop.park(timeout)
                finally:
                    self._parked = None
        finally:
            _set_running_loop(running)
            sys.set_asyncgen_hooks(*hooks)
        fired, self._fired = self._fired, {}
        self._stood_down = list(fired)
        ready = []
        for fd, revents in fired.items():
            key = self._fd_to_key.get(fd)
            if key is not None:
                # a closed fd (ERROR) is reported ready for all its events: the callback's syscall says what
                events = key.events if revents & _core.ERROR else revents & key.events
                if events:
                    ready.append((key, events))
        return ready

    def close(self) -> None:
        """Stops every watch in the hub's loop and forgets the registrations."""
        for fd in list(self._watches):
            self._disarm(fd)
        self._fired.clear()
        self._on_ready.clear()
        super().close()
