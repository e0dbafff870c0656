"""Queues for greenlets: Queue (joinable), SimpleQueue, LifoQueue, PriorityQueue, UnboundQueue and Channel.

The interface is the standard library's ``queue`` module (``Empty`` and ``Full`` are its very classes), plus
gevent's extensions: ``items=`` in the constructor, ``peek``, iteration until ``StopIteration`` is read, and the
3.13 ``shutdown``. Subclasses may override the stdlib's ``_init``/``_qsize``/``_put``/``_get`` hooks.

Blocked greenlets are served in the order they blocked. A put that finds getters waiting adds the item and wakes
the first getter, which takes an item when it runs (a greenlet that gets before then, without waiting, may take it
first, as in gevent; the woken getter then waits again at the front of the line). A get that frees a slot wakes the
first waiting putter, which stores its item itself when it runs (so a subclass's ``_put`` runs in the putter and
its exception is the putter's); if the slot was taken meanwhile, the putter waits again at the front. Putters are
woken one at a time, each waking the next once done, so blocked putters keep their order.

The state and every call that does not wait live in Rust (``ferrovent._core.ItemQueue``, the base of SimpleQueue):
``put`` with room and ``get`` with an item are one Rust call each, and so are a ``put`` that waits for a slot and a
``get`` that waits for an item (with no timeout or a number of seconds): no interpreter frame stays on the C stack
of a greenlet waiting there. Waiting greenlets park in the getters' and putters' ``WaitQueue``s; waking one is
queueing its resume, no callback runs in the hub.
"""

from __future__ import annotations

import queue as _stdlib_queue
import types
import warnings
from collections import deque
from collections.abc import Iterable
from functools import partial
from heapq import heapify, heappop, heappush
from time import monotonic
from typing import TYPE_CHECKING, Any, Optional

from greenlet import getcurrent

from ferrovent._core import ItemQueue, WaitQueue
from ferrovent.event import Event
from ferrovent.hub import get_hub
from ferrovent.timeout import Timeout, wait_bounded_by

if TYPE_CHECKING:
    from typing_extensions import Self

#: The classes of the stdlib's ``queue`` that ferrovent's replace (monkey-patching replaces these), the names taken
#: from it as they are, and ferrovent's own additions; ``ShutDown`` is the stdlib's where it has one (3.13).
__implements__ = ["Queue", "PriorityQueue", "LifoQueue", "SimpleQueue"]
__imports__ = ["Empty", "Full"]
__extensions__ = ["JoinableQueue", "UnboundQueue", "Channel"]
if hasattr(_stdlib_queue, "ShutDown"):
    __imports__.append("ShutDown")
else:
    __extensions__.append("ShutDown")
__all__ = __implements__ + __imports__ + __extensions__

Empty = _stdlib_queue.Empty
Full = _stdlib_queue.Full

if hasattr(_stdlib_queue, "ShutDown"):
    ShutDown = _stdlib_queue.ShutDown
else:

    class ShutDown(Exception):
        """Raised by put and get on a queue that was shut down (the stdlib has it from Python 3.13)."""


def _check_timeout(block: bool, timeout: Optional[float]) -> None:
    if block and timeout is not None and not isinstance(timeout, Timeout) and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - monotonic())


class _ReadUntilStop:
    """Iterating gets items until the ``StopIteration`` class itself is read."""

    __slots__ = ()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        item = self.get()
        if item is StopIteration:
            raise item
        return item


_STORAGE_HOOKS = ("_init", "_create_queue", "_qsize", "_put", "_get")


class SimpleQueue(ItemQueue, _ReadUntilStop):
    """A FIFO queue of at most ``maxsize`` items (None or <= 0: unbounded), without task tracking.

    ``len(queue)`` is its size, but a queue is always true in a boolean context. ``put``, ``get``, ``qsize``,
    ``empty``, ``full``, the ``_nowait`` variants and the state (``queue``, ``unfinished_tasks``, ``is_shutdown``,
    ``getters``, ``putters``) come from ``ItemQueue``; the waiting paths are here.
    """

    __slots__ = ("hub", "_all_done", "__weakref__")

    __class_getitem__ = classmethod(types.GenericAlias)

    #: True for a subclass that overrides a storage hook: its items are then only ever touched through the hooks.
    _hooked = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._hooked = any(getattr(cls, hook) is not getattr(SimpleQueue, hook) for hook in _STORAGE_HOOKS)

    def __init__(self, maxsize: Optional[int] = None, items: Iterable[Any] = (), _warn_depth: int = 2) -> None:
        if maxsize is not None and maxsize <= 0:
            if maxsize == 0:
                warnings.warn(
                    "Queue(0) now equivalent to Queue(None); if you want a channel, use Channel",
                    DeprecationWarning,
                    stacklevel=_warn_depth,
                )
            maxsize = None
        self._maxsize = -1 if maxsize is None else maxsize
        # Items held in Rust (in a deque once `queue` is read), unless a subclass has hooks of its own.
        self._plain = not type(self)._hooked
        self.hub = get_hub()
        self._loop = self.hub.loop
        self._all_done = None
        # A stdlib subclass may define ``_init(self, maxsize)`` without the items argument.
        if items:
            self._init(maxsize, items)
        else:
            self._init(maxsize)
        self.unfinished_tasks = self.qsize()

    # -- the stdlib's hooks ----------------------------------------------------------------------------------

    def _init(self, maxsize: Optional[int], items=()) -> None:
        if self._plain:
            self._hold(items)
        else:
            self.queue = self._create_queue(items)

    def _create_queue(self, items=()):
        return deque(items)

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: Any) -> None:
        self.queue.append(item)

    def _get(self) -> Any:
        return self.queue.popleft()

    def _peek(self) -> Any:
        return self._front()

    # -- state ----------------------------------------------------------------------------------------------

    @property
    def maxsize(self) -> Optional[int]:
        """The most items it holds, None for unbounded; may be changed (a larger size wakes waiting putters)."""
        return self._maxsize if self._maxsize > 0 else None

    @maxsize.setter
    def maxsize(self, value: Optional[int]) -> None:
        self._maxsize = -1 if value is None or value <= 0 else value
        if self.putters:
            self._wake_putter()

    def copy(self) -> SimpleQueue:
        """A new queue of the same class and ``maxsize`` holding the same items (not the waiting greenlets)."""
        return type(self)(self.maxsize, self.queue)

    def _format(self) -> str:
        parts = []
        if self.maxsize is not None:
            parts.append(f"maxsize={self.maxsize!r}")
        if self.queue:
            parts.append(f"queue={self.queue!r}")
        if self.getters:
            parts.append(f"getters[{len(self.getters)}]")
        if self.putters:
            parts.append(f"putters[{len(self.putters)}]")
        return "".join(" " + part for part in parts)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))}{self._format()}>"

    def __str__(self) -> str:
        return f"<{type(self).__name__}{self._format()}>"

    def __bool__(self) -> bool:
        return True

    # -- putting --------------------------------------------------------------------------------------------

    def _put_slow(self, item: Any, block: bool, timeout: Optional[float]) -> None:
        """``put`` when there is something to check first: a shutdown, a timeout, or a full queue."""
        if self.is_shutdown:
            raise ShutDown
        _check_timeout(block, timeout)
        if not self.full():
            self._add(item)
        elif not block or getcurrent() is self.hub:  # the hub cannot wait
            raise Full
        elif isinstance(timeout, Timeout):
            wait_bounded_by(timeout, partial(self._put_waiting, item, None))
        else:
            self._put_waiting(item, timeout)

    def _store_for_putter(self) -> bool:
        """From the hub, which cannot wait for a putter to run: stores the next waiting putter's item now.

        False if no putter waits. If storing fails, the item and the error are left in the putter's box, for the
        putter to raise (see ``ItemQueue._put_waiting``).
        """
        box = self._woken_box
        if box:  # woken for a slot and not run yet: its item is next
            self._woken_box = None
        else:
            try:
                box = self.putters.take_item(self._loop)
            except IndexError:
                return False
        item = box.pop()
        try:
            self._add(item)
        except BaseException as error:
            box.extend((item, error))  # the putter raises it
            if not isinstance(error, Exception):
                raise
        return True

    # -- getting --------------------------------------------------------------------------------------------

    def peek(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Returns the next item without removing it, waiting for one like ``get``."""
        if self.qsize():
            return self._peek()
        return self._get_slow(block, timeout, True)

    def peek_nowait(self) -> Any:
        """Returns the next item without removing it, or raises Empty."""
        return self.peek(False)

    def _take(self, peek: bool) -> Any:
        """Takes (or peeks at) the first item for a getter that waited."""
        if not peek:
            return self._pop()
        item = self._peek()
        self.getters.wake_one(self._loop)  # we used a wake without using an item: the next getter may have it
        return item

    def _pass_wake_on(self) -> None:
        """A getter woken for an item left without it (killed): the next getter may have it."""
        if self.getters and self.qsize():
            self.getters.wake_one(self._loop)

    def _get_slow(self, block: bool, timeout: Optional[float], peek: bool = False) -> Any:
        """``get`` (or ``peek``) of an empty queue: waits for an item, unless told not to."""
        if self.is_shutdown:
            raise ShutDown
        _check_timeout(block, timeout)
        if getcurrent() is self.hub:  # the hub cannot wait; a blocked putter's item can still be had
            while not self.qsize() and self._store_for_putter():
                pass
            if self.qsize():
                return self._take(peek)
            raise Empty
        if not block:
            raise Empty
        if isinstance(timeout, Timeout):
            return wait_bounded_by(timeout, partial(self._get_slow, True, None, peek))
        getters = self.getters
        deadline = None if timeout is None else monotonic() + timeout
        front = False
        while getters.wait(self._loop, timeout, front, None, self._pass_wake_on):
            if self.qsize():
                return self._take(peek)
            if self.is_shutdown:
                raise ShutDown
            front = True  # taken by someone who never waited: back to the front of the line
            timeout = _remaining(deadline)
        raise Empty


class Queue(SimpleQueue):
    """A SimpleQueue that also tracks unfinished tasks (``task_done``/``join``) and can be shut down."""

    __slots__ = ()

    def __init__(
        self, maxsize: Optional[int] = None, items: Iterable[Any] = (), unfinished_tasks: Optional[int] = None
    ) -> None:
        SimpleQueue.__init__(self, maxsize, items, _warn_depth=3)
        if unfinished_tasks:
            self.unfinished_tasks = unfinished_tasks

    def copy(self) -> Queue:
        """A new queue of the same class, ``maxsize``, items and count of unfinished tasks."""
        return type(self)(self.maxsize, self.queue, self.unfinished_tasks)

    def _format(self) -> str:
        result = SimpleQueue._format(self)
        if self.unfinished_tasks:
            result += f" tasks={self.unfinished_tasks}"
        return result

    def task_done(self) -> None:
        """Marks one item taken by get as processed; ``join`` returns once every put item is.

        Raises ValueError if called more times than items were put.
        """
        if self.unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self.unfinished_tasks -= 1
        if not self.unfinished_tasks:
            self._tasks_finished()

    def _tasks_finished(self) -> None:
        done = self._all_done
        if done is not None:
            self._all_done = None
            done.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits until every item put has been marked done; False if ``timeout`` passed first."""
        if not self.unfinished_tasks:
            return True
        done = self._all_done
        if done is None:
            done = self._all_done = Event()
        return done.wait(timeout)

    def shutdown(self, immediate: bool = False) -> None:
        """Shuts the queue down: puts raise ShutDown, and gets do too once the queue is empty.

        With ``immediate``, the queue is emptied first (each item counts as done). Every greenlet blocked in put
        or get is woken with ShutDown.
        """
        self.is_shutdown = True
        if immediate:
            while self.qsize():
                self._get()
                if self.unfinished_tasks > 0:
                    self.unfinished_tasks -= 1
            if not self.unfinished_tasks:
                self._tasks_finished()
        waiting = self.putters.pop_all() + self.getters.pop_all()
        for greenlet in waiting:
            self._loop.wake_raise(greenlet, ShutDown())


JoinableQueue = Queue


class UnboundQueue(Queue):
    """A Queue that can never be bounded: put never blocks."""

    __slots__ = ()

    def __init__(self, maxsize: None = None, items: Iterable[Any] = ()) -> None:
        if maxsize is not None:
            raise ValueError("UnboundQueue has no maxsize")
        Queue.__init__(self, None, items)


class PriorityQueue(Queue):
    """A Queue that returns the lowest item first (typically ``(priority, data)`` tuples)."""

    __slots__ = ()

    def _create_queue(self, items=()) -> list:
        heap = list(items)
        heapify(heap)
        return heap

    def _put(self, item: Any) -> None:
        heappush(self.queue, item)

    def _get(self) -> Any:
        return heappop(self.queue)


class LifoQueue(Queue):
    """A Queue that returns the most recently added item first."""

    __slots__ = ()

    def _create_queue(self, items=()) -> list:
        return list(items)

    def _get(self) -> Any:
        return self.queue.pop()

    def _peek(self) -> Any:
        return self.queue[-1]


class Channel(_ReadUntilStop):
    """A queue of size zero: ``put`` waits until a greenlet takes the item with ``get``.

    An item handed to a waiting getter is that getter's, even if its timeout expires before it runs.
    """

    __slots__ = ("getters", "putters", "hub", "_loop", "__weakref__")

    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, maxsize: int = 1) -> None:
        if maxsize != 1:
            raise ValueError("Channels have a maxsize of 1")
        self.getters = WaitQueue()  # each waits with a one-item list the putter fills
        self.putters = WaitQueue()  # each waits with its item
        self.hub = get_hub()
        self._loop = self.hub.loop

    def _format(self) -> str:
        result = ""
        if self.getters:
            result += f" getters[{len(self.getters)}]"
        if self.putters:
            result += f" putters[{len(self.putters)}]"
        return result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))}{self._format()}>"

    def __str__(self) -> str:
        return f"<{type(self).__name__}{self._format()}>"

    @property
    def balance(self) -> int:
        """Waiting putters minus waiting getters."""
        return len(self.putters) - len(self.getters)

    def qsize(self) -> int:
        """Always 0: a channel holds no items (see ``balance`` for the waiting greenlets)."""
        return 0

    def empty(self) -> bool:
        """Always True: a channel holds no items."""
        return True

    def full(self) -> bool:
        """Always True: a ``put`` always waits for a getter."""
        return True

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Hands ``item`` to a getter, waiting for one; Full if none came (``block`` false waits one loop turn)."""
        current = getcurrent()
        loop = self._loop
        if self.getters:
            self.getters.take_item(loop).append(item)
            if current is not self.hub:
                loop.sleep(0)  # the getter runs before the putter goes on
            return
        if current is self.hub:
            raise Full
        if block and isinstance(timeout, Timeout):
            wait_bounded_by(timeout, partial(self.putters.wait, loop, None, False, item))
        elif not self.putters.wait(loop, timeout if block else 0, False, item):
            raise Full

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``: raises ``Full`` unless a getter takes it within one loop turn."""
        self.put(item, False)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Takes an item from a putter, waiting for one; Empty if none came (``block`` false waits one loop turn)."""
        loop = self._loop
        if self.putters:
            return self.putters.take_item(loop)
        if getcurrent() is self.hub:
            raise Empty
        box = []
        if block and isinstance(timeout, Timeout):
            wait_bounded_by(timeout, partial(self.getters.wait, loop, None, False, box))
        elif not self.getters.wait(loop, timeout if block else 0, False, box):
            raise Empty
        return box[0]

    def get_nowait(self) -> Any:
        """``get(block=False)``: raises ``Empty`` unless a putter hands an item within one loop turn."""
        return self.get(False)
