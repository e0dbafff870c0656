"""Groups and pools of greenlets.

A Group tracks greenlets until they finish, so they can be joined or killed together. A Pool is a Group with a
limit: ``spawn`` blocks while ``size`` greenlets are running. Both offer the ``multiprocessing.Pool``-style mapping
methods (``apply``, ``map``, ``imap``, ``imap_unordered`` ...), which run each call in a greenlet of the group.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional

from greenlet import GreenletExit, getcurrent

from ferrovent.event import Event
from ferrovent.greenlet import Greenlet, killall
from ferrovent.lock import DummySemaphore, Semaphore
from ferrovent.queue import Full as QueueFull
from ferrovent.queue import UnboundQueue
from ferrovent.timeout import Timeout

__all__ = ["Group", "Pool", "PoolFull", "IMap", "IMapUnordered"]


class _Failure:
    """A failed call travelling through an imap result queue: raised when the reader reaches it."""

    __slots__ = ("exception", "raise_exception")

    def __init__(self, exception: BaseException, raise_exception: Optional[Callable[[], Any]] = None) -> None:
        self.exception = exception
        self.raise_exception = raise_exception

    def reraise(self) -> None:
        if self.raise_exception is not None:
            self.raise_exception()
        raise self.exception


class IMapUnordered(Greenlet):
    """An iterator over ``func(*args)`` for each item, run in greenlets made by ``spawn``, in completion order.

    The iterator is itself a greenlet: it walks the input (so the input is consumed lazily, as slots free up) and
    spawns one greenlet per item; each result goes to a queue the reader takes from. With ``maxsize``, at most that
    many finished results wait for the reader before spawning pauses.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        spawn: Callable[..., Greenlet],
        maxsize: Optional[int] = None,
        _zipped: bool = False,
    ) -> None:
        Greenlet.__init__(self)
        self.spawn = spawn
        self.func = func
        self.iterable = iterable
        self._zipped = _zipped
        self.queue = UnboundQueue()
        self._result_semaphore = Semaphore(maxsize) if maxsize else None
        self._outstanding_tasks = 0
        self._max_index = -1  # index of the last item spawned
        self.finished = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._result_semaphore is not None:
            self._result_semaphore.release()
        value = self._next_value()
        if type(value) is _Failure:
            value.reraise()
        return value

    def _next_value(self) -> Any:
        return self.queue.get()

    def _run(self) -> None:
        try:
            func = self.func
            spawn = self.spawn
            on_result = self._on_result
            semaphore = self._result_semaphore
            for item in self.iterable:
                self._max_index += 1
                if semaphore is not None:
                    semaphore.acquire()
                self._outstanding_tasks += 1
                task = spawn(func, *item) if self._zipped else spawn(func, item)
                task._imap_task_index = self._max_index
                task.rawlink(on_result)
            self._on_finish(None)
        except BaseException as e:
            self._on_finish(e)
            raise
        finally:
            self.spawn = self.func = self.iterable = None

    def _on_result(self, task: Greenlet) -> None:
        """Runs in the hub when a task finishes: queues its result (and the end marker after the last one)."""
        self._outstanding_tasks -= 1
        put_finished = self.ready() and self._outstanding_tasks <= 0 and not self.finished
        if put_finished:
            self.finished = True
        if task.successful():
            self.queue.put(self._for_success(task))
        else:
            self.queue.put(self._for_failure(task))
        if put_finished:
            self.queue.put(self._for_end())

    def _on_finish(self, exception: Optional[BaseException]) -> None:
        """Runs in this greenlet once the input is exhausted (or failed)."""
        if self.finished:
            return
        if exception is not None:
            self.finished = True
            self.queue.put(self._for_own_failure(exception))
        elif self._outstanding_tasks <= 0:
            self.finished = True
            self.queue.put(self._for_end())

    # What goes in the result queue; IMap wraps each with the item's index.

    def _for_success(self, task: Greenlet) -> Any:
        return task.value

    def _for_failure(self, task: Greenlet) -> Any:
        return _Failure(task.exception, getattr(task, "_raise_exception", None))

    def _for_end(self) -> Any:
        return _Failure(StopIteration())

    def _for_own_failure(self, exception: BaseException) -> Any:
        return _Failure(exception, self._raise_exception)


class IMap(IMapUnordered):
    """Like IMapUnordered, but yields results in input order (keeping early finishers until their turn)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._results: dict[int, Any] = {}
        self.index = 0  # the index of the next result to yield
        IMapUnordered.__init__(self, *args, **kwargs)

    def _next_value(self) -> Any:
        try:
            value = self._results.pop(self.index)
        except KeyError:
            while True:
                index, value = self.queue.get()
                if index == self.index:
                    break
                self._results[index] = value
        self.index += 1
        return value

    def _for_success(self, task: Greenlet) -> Any:
        return (task._imap_task_index, task.value)

    def _for_failure(self, task: Greenlet) -> Any:
        return (task._imap_task_index, IMapUnordered._for_failure(self, task))

    def _for_end(self) -> Any:
        return (self._max_index + 1, IMapUnordered._for_end(self))

    def _for_own_failure(self, exception: BaseException) -> Any:
        return (self._max_index + 1, IMapUnordered._for_own_failure(self, exception))


class _PassValue:
    """A link that calls ``callback(value)`` when the greenlet it watches finishes successfully."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Any], Any]) -> None:
        self.callback = callback

    def __call__(self, source: Greenlet) -> None:
        if source.successful():
            self.callback(source.value)

    def __eq__(self, other: object) -> bool:
        return self.callback == getattr(other, "callback", other)

    def __hash__(self) -> int:
        return hash(self.callback)

    def __repr__(self) -> str:
        return repr(self.callback)


class Group:
    """The greenlets started through it that are still running; finished ones drop out by themselves.

    ``len(group)``, ``greenlet in group`` and iteration look at those greenlets; an empty group is false.
    """

    #: The class ``spawn`` makes: Greenlet, or a subclass (settable per instance or subclass).
    greenlet_class = Greenlet

    def __init__(self, *args: Iterable[Greenlet]) -> None:
        if len(args) > 1:
            raise TypeError(f"Group takes at most one iterable of greenlets ({len(args)} given)")
        self.greenlets = set(*args)
        for greenlet in self.greenlets:
            greenlet.rawlink(self._discard)
        self.dying = set()  # killed and not dead yet: never killed twice
        self._empty_event = Event()
        if not self.greenlets:
            self._empty_event.set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))} {self.greenlets}>"

    def __len__(self) -> int:
        return len(self.greenlets)

    def __contains__(self, item: object) -> bool:
        return item in self.greenlets

    def __iter__(self) -> Iterator[Greenlet]:
        return iter(self.greenlets)

    def add(self, greenlet: Greenlet) -> None:
        """Tracks ``greenlet`` (preferably not started yet) until it finishes."""
        rawlink = getattr(greenlet, "rawlink", None)
        if rawlink is not None:  # a raw greenlet (the main one, say) has no links: tracked until discarded
            rawlink(self._discard)
        self.greenlets.add(greenlet)
        self._empty_event.clear()

    def _discard(self, greenlet: Greenlet) -> None:
        self.greenlets.discard(greenlet)
        self.dying.discard(greenlet)
        if not self.greenlets:
            self._empty_event.set()

    def discard(self, greenlet: Greenlet) -> None:
        """Stops tracking ``greenlet``."""
        self._discard(greenlet)
        unlink = getattr(greenlet, "unlink", None)
        if unlink is not None:
            unlink(self._discard)

    def start(self, greenlet: Greenlet) -> None:
        """Tracks the unstarted ``greenlet``, then starts it."""
        self.add(greenlet)
        greenlet.start()

    def spawn(self, *args: Any, **kwargs: Any) -> Greenlet:
        """Creates a ``greenlet_class(*args, **kwargs)``, tracks it and starts it."""
        greenlet = self.greenlet_class(*args, **kwargs)
        self.start(greenlet)
        return greenlet

    def join(self, timeout: Optional[float] = None, raise_error: bool = False) -> bool:
        """Waits until the group is empty (at least once); False if ``timeout`` passed first.

        With ``raise_error``, re-raises the exception of a greenlet (among those tracked at the call) that failed.
        """
        greenlets = list(self.greenlets) if raise_error else ()
        result = self._empty_event.wait(timeout=timeout)
        for greenlet in greenlets:
            if greenlet.exception is not None:
                if hasattr(greenlet, "_raise_exception"):
                    greenlet._raise_exception()
                raise greenlet.exception
        return result

    def kill(self, exception: Any = GreenletExit, block: bool = True, timeout: Optional[float] = None) -> None:
        """Kills every tracked greenlet; with ``block``, waits (up to ``timeout``) until all are gone."""
        timer = Timeout._start_new_or_dummy(timeout)
        try:
            while self.greenlets:
                for greenlet in list(self.greenlets):
                    if greenlet in self.dying:
                        continue
                    kill = getattr(greenlet, "kill", None)
                    if kill is not None:
                        kill(exception, block=False)
                        self.dying.add(greenlet)
                    else:  # a raw greenlet: no link tells when it dies, so (as killall does) it is not waited for
                        killall([greenlet], exception, block=False)
                        self.discard(greenlet)
                if not block:
                    break
                # Dead is not gone: a greenlet leaves in a link the hub runs after its death (at once for one killed
                # before it started), so wait for the group to empty, not for the deaths, which may be over already.
                self._empty_event.wait()
        except Timeout as ex:
            if ex is not timer:
                raise
        finally:
            timer.cancel()

    def killone(
        self, greenlet: Greenlet, exception: Any = GreenletExit, block: bool = True, timeout: Optional[float] = None
    ) -> None:
        """Kills ``greenlet`` if it is tracked and not already being killed; with ``block``, waits for it."""
        if greenlet not in self.dying and greenlet in self.greenlets:
            greenlet.kill(exception, block=False)
            self.dying.add(greenlet)
            if block:
                greenlet.join(timeout)

    def full(self) -> bool:
        """A Group has no limit: never full."""
        return False

    def wait_available(self, timeout: Optional[float] = None) -> Optional[int]:
        """A Group has no limit: returns at once."""
        return None

    # -- mapping ------------------------------------------------------------------------------------------------

    def apply(self, func: Callable[..., Any], args: Optional[tuple] = None, kwds: Optional[dict] = None) -> Any:
        """Returns ``func(*args, **kwds)``, run in a greenlet of the group (inline if called from one)."""
        args = () if args is None else args
        kwds = {} if kwds is None else kwds
        if getcurrent() in self:
            return func(*args, **kwds)
        return self.spawn(func, *args, **kwds).get()

    def apply_cb(
        self,
        func: Callable[..., Any],
        args: Optional[tuple] = None,
        kwds: Optional[dict] = None,
        callback: Optional[Callable[[Any], Any]] = None,
    ) -> Any:
        """``apply``, then ``callback(result)`` in a new greenlet if a callback is given."""
        result = self.apply(func, args, kwds)
        if callback is not None:
            Greenlet.spawn(callback, result)
        return result

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Optional[tuple] = None,
        kwds: Optional[dict] = None,
        callback: Optional[Callable[[Any], Any]] = None,
    ) -> Greenlet:
        """Starts ``func(*args, **kwds)`` without blocking, even when full; returns the greenlet running it.

        ``callback(result)`` runs when it succeeds. When the group is full the call waits for a slot inside an
        untracked greenlet, so joining the group is not a way to wait for it: join the returned greenlet.
        """
        args = () if args is None else args
        kwds = {} if kwds is None else kwds
        if self.full():
            return Greenlet.spawn(self.apply_cb, func, args, kwds, callback)
        greenlet = self.spawn(func, *args, **kwds)
        if callback is not None:
            greenlet.link(_PassValue(callback))
        return greenlet

    def _map(self, func: Callable[[Any], Any], iterable: Iterable[Any]) -> list:
        return [greenlet.get() for greenlet in [self.spawn(func, item) for item in iterable]]

    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any]) -> list:
        """``[func(item) for item in iterable]``, each call in a greenlet of the group; results in input order."""
        return Greenlet.spawn(self._map, func, iterable).get()

    def map_cb(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], callback: Optional[Callable[[list], Any]] = None
    ) -> list:
        """As ``map``, then calls ``callback(results)`` if given; returns the results."""
        result = self.map(func, iterable)
        if callback is not None:
            callback(result)
        return result

    def map_async(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], callback: Optional[Callable[[list], Any]] = None
    ) -> Greenlet:
        """Runs ``map`` in a new greenlet and returns it; ``callback(results)`` runs when it is done."""
        return Greenlet.spawn(self.map_cb, func, iterable, callback)

    def _imap(self, cls: type, func: Callable[..., Any], iterables: tuple, maxsize: Optional[int]) -> IMapUnordered:
        return cls.spawn(func, zip(*iterables), spawn=self.spawn, _zipped=True, maxsize=maxsize)

    def imap(self, func: Callable[..., Any], *iterables: Iterable[Any], maxsize: Optional[int] = None) -> IMap:
        """A lazy iterator over ``func(*args)`` for the items of ``iterables`` taken in parallel, in input order.

        At most the group's limit run at once; ``maxsize`` bounds how many finished results wait to be read.
        """
        return self._imap(IMap, func, iterables, maxsize)

    def imap_unordered(
        self, func: Callable[..., Any], *iterables: Iterable[Any], maxsize: Optional[int] = None
    ) -> IMapUnordered:
        """Like ``imap``, but yields each result as soon as it is ready (cheaper than keeping order)."""
        return self._imap(IMapUnordered, func, iterables, maxsize)


class PoolFull(QueueFull):
    """Raised when a full Pool cannot take a greenlet without blocking (or within the timeout)."""


class Pool(Group):
    """A Group of at most ``size`` running greenlets: adding to a full pool waits for one to finish.

    ``size`` None means no limit; 0 means nothing can ever run (only useful with ``wait_available(timeout)``).
    """

    def __init__(self, size: Optional[int] = None, greenlet_class: Optional[type] = None) -> None:
        if size is not None and size < 0:
            raise ValueError(f"size must not be negative: {size!r}")
        Group.__init__(self)
        self.size = size
        if greenlet_class is not None:
            self.greenlet_class = greenlet_class
        self._semaphore = DummySemaphore() if size is None else Semaphore(size)

    def wait_available(self, timeout: Optional[float] = None) -> int:
        """Waits until a greenlet can be added without blocking; returns how many can."""
        return self._semaphore.wait(timeout=timeout)

    def full(self) -> bool:
        """True if adding a greenlet would block."""
        return self.free_count() <= 0

    def free_count(self) -> int:
        """About how many more greenlets fit (1 for an unlimited pool)."""
        if self.size is None:
            return 1
        return max(0, self.size - len(self))

    def start(self, greenlet: Greenlet, blocking: bool = True, timeout: Optional[float] = None) -> None:
        """Adds the unstarted ``greenlet`` (see ``add``), then starts it."""
        self.add(greenlet, blocking, timeout)
        greenlet.start()

    def add(self, greenlet: Greenlet, blocking: bool = True, timeout: Optional[float] = None) -> None:
        """Tracks ``greenlet``, first waiting (up to ``timeout``) for a free slot.

        Raises PoolFull if no slot was free and ``blocking`` is false, or none came within ``timeout``.
        """
        if not self._semaphore.acquire(blocking, timeout):
            raise PoolFull()
        try:
            Group.add(self, greenlet)
        except BaseException:
            self._semaphore.release()
            raise

    def _discard(self, greenlet: Greenlet) -> None:
        tracked = greenlet in self.greenlets  # a greenlet discarded by hand and then finishing frees one slot
        Group._discard(self, greenlet)
        if tracked:
            self._semaphore.release()
