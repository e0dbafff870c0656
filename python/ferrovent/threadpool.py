"""Real OS threads for blocking work (DNS lookups, C calls that hold no fd), with results greenlets can wait on.

A `ThreadPool` starts its threads on first need, never more than ``maxsize``, with the ORIGINAL ``_thread``
functions, so monkey-patching threading never turns them into greenlets. A job's outcome travels back through the
hub loop's thread-safe inbox (``loop.run_callback_threadsafe``) and fills the job's AsyncResult, waking the
greenlets that wait on it; while a job is outstanding the pool holds a reference on the loop, which keeps it
running.

Ctrl-C and worker threads: the kernel may deliver a process-directed SIGINT to any thread that does not block it
(macOS routinely does; Linux does when the main thread is busy or blocks it), and a signal caught in a worker only
sets Python's flag: the main thread sleeping in epoll would not notice until its next timer. So the first time a
main-thread hub's pool starts a thread, the pool gives that loop a ``signal.set_wakeup_fd`` socketpair watched by
an unreferenced wait: a signal caught in ANY thread writes a byte there, the poll returns, and the loop runs the
Python handler at once. Blocking signals in the workers instead was rejected: the mask is inherited by every
process a job starts (a child that could never be interrupted) and it cannot help with a signal aimed at one
thread. A wakeup fd already installed by someone else (asyncio) is left in place.
"""

from __future__ import annotations

import _socket
import functools
import os
import signal
import sys
import weakref
from _queue import SimpleQueue  # the C queue: its blocking get() is a real lock wait in any monkey-patched world
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from greenlet import getcurrent, greenlet

from ferrovent.event import AsyncResult
from ferrovent.exceptions import InvalidThreadUseError
from ferrovent.hub import Hub, get_hub
from ferrovent.monkey import get_original

__all__ = ["ThreadPool", "hub_threadpool", "is_worker_thread", "DEFAULT_SIZE"]

_start_new_thread, _get_ident, _thread_local = get_original("_thread", ["start_new_thread", "get_ident", "_local"])

#: Threads in a hub's own pool, the one DNS lookups use (gevent's ``Hub.threadpool_size``).
DEFAULT_SIZE = 10

_worker_state = _thread_local()  # ``is_worker`` is True in the threads of any ThreadPool
_live_pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()
_STOP = None  # the queue item that tells one worker thread to exit


def is_worker_thread() -> bool:
    """True in a thread of some ThreadPool: code there may block, and must not wait on its own pool."""
    return getattr(_worker_state, "is_worker", False)


def hub_threadpool(hub: Hub) -> ThreadPool:
    """``hub``'s own pool of `DEFAULT_SIZE` threads (gevent's ``hub.threadpool``), created on first use, of the
    class ``config.threadpool`` names (`ThreadPool` by default)."""
    pool = vars(hub).get("_threadpool")
    if pool is None:
        from ferrovent._config import config

        pool = hub._threadpool = config.threadpool(DEFAULT_SIZE, hub)
    return pool


def _work(tasks: SimpleQueue, deliver: Callable[..., None]) -> None:
    """A worker thread's life: run jobs until told to stop; each outcome goes to the owning loop's inbox."""
    _worker_state.is_worker = True
    while True:
        task = tasks.get()
        if task is _STOP:
            return
        func, args, kwargs, finish = task
        try:
            outcome = (func(*args, **kwargs), None)
        except BaseException:  # any outcome, KeyboardInterrupt included, belongs to the greenlet that waits
            outcome = (None, sys.exc_info())
        deliver(finish, *outcome)
        del task, func, args, kwargs, finish, outcome  # hold nothing of a finished job while idle


class _SlotWaiters:
    """Greenlets waiting, in arrival order, for the pool to have room for one more job."""

    __slots__ = ("_loop", "_queue")

    def __init__(self, loop):
        self._loop = loop
        self._queue: deque = deque()

    def __bool__(self) -> bool:
        return bool(self._queue)

    def wait(self, has_room: Callable[[], bool]) -> None:
        """Parks the current greenlet until it is first in line and ``has_room()``."""
        me = getcurrent()
        self._queue.append(me)
        try:
            while not (self._queue[0] is me and has_room()):
                self._loop.park()
        finally:
            self._queue.remove(me)
            if self._queue and has_room():
                self.wake_first()  # pass the turn on: this greenlet left (got the room, or was killed)

    def wake_first(self) -> None:
        if self._queue:
            self._loop.wake(self._queue[0])


class ThreadPool:
    """A pool of at most ``maxsize`` real OS threads that run blocking functions for the greenlets of one hub.

    Use it from the thread of its hub (the thread that created it). `spawn` waits while ``maxsize`` jobs are
    outstanding. A job that raises is reported by the hub, as gevent does, and re-raised by ``get()``.
    ``len(pool)`` is the number of jobs not yet finished.
    """

    def __init__(self, maxsize: int, hub: Hub | None = None):
        self.hub = get_hub() if hub is None else hub
        self._owner = _get_ident()
        self._maxsize = 0
        self._threads = 0  # threads started and not yet told to stop
        self._outstanding = 0  # jobs queued or running whose result has not come back
        self._tasks: SimpleQueue = SimpleQueue()
        self._deliver = self.hub.loop.run_callback_threadsafe
        self._slot_waiters = _SlotWaiters(self.hub.loop)
        self._join_waiters: list = []
        self.maxsize = maxsize
        _live_pools.add(self)

    # -- size ---------------------------------------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """The most threads, and the most outstanding jobs, this pool allows."""
        return self._maxsize

    @maxsize.setter
    def maxsize(self, maxsize: int) -> None:
        if not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be integer: {maxsize!r}")
        if maxsize < 0:
            raise ValueError(f"maxsize must not be negative: {maxsize!r}")
        self._maxsize = maxsize
        self._stop_threads(self._threads - maxsize)
        self._slot_waiters.wake_first()

    @property
    def size(self) -> int:
        """How many worker threads the pool has. Setting it starts threads now or tells extra ones to stop
        (a thread busy with a job stops after it)."""
        return self._threads

    @size.setter
    def size(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"Size of the pool cannot be negative: {size!r}")
        if size > self._maxsize:
            raise ValueError(f"Size of the pool cannot be bigger than maxsize: {size!r} > {self._maxsize!r}")
        while self._threads < size:
            self._start_thread()
        self._stop_threads(self._threads - size)

    def _stop_threads(self, count: int) -> None:
        for _ in range(count):
            self._threads -= 1
            self._tasks.put(_STOP)

    def _start_thread(self) -> None:
        _signal_wakeup.install(self.hub)
        self._threads += 1
        try:
            _start_new_thread(_work, (self._tasks, self._deliver))
        except BaseException:
            self._threads -= 1
            raise

    def __len__(self) -> int:
        return self._outstanding

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} at {hex(id(self))} tasks={self._outstanding} size={self._threads} "
            f"maxsize={self._maxsize}>"
        )

    # -- jobs ---------------------------------------------------------------------------------------------

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult:
        """Runs ``func(*args, **kwargs)`` in a worker thread; returns at once the AsyncResult it will fill.

        Waits while ``maxsize`` jobs are outstanding; starts a thread if every thread is busy and there is room.
        Raises InvalidThreadUseError outside the pool's hub thread.
        """
        if _get_ident() != self._owner:
            raise InvalidThreadUseError(f"{self!r} belongs to another thread's hub")
        if self._slot_waiters or not self._has_room():
            self._slot_waiters.wait(self._has_room)
        result = AsyncResult()
        self._outstanding += 1
        self.hub.loop.add_ref()
        self._tasks.put((func, args, kwargs, self._make_finish(result, func)))
        if self._threads < min(self._outstanding, self._maxsize):
            self._start_thread()
        return result

    def _has_room(self) -> bool:
        return self._outstanding < self._maxsize

    def _make_finish(self, result: AsyncResult, func: Callable) -> Callable[[Any, tuple | None], None]:
        """The callback the worker sends back through the inbox; it runs in the hub."""

        def finish(value, exc_info):
            self._outstanding -= 1
            self.hub.loop.remove_ref()
            self._slot_waiters.wake_first()
            if not self._outstanding:
                joiners, self._join_waiters = self._join_waiters, []
                for joiner in joiners:
                    self.hub.loop.wake(joiner)
            if exc_info is None:
                result.set(value)
            else:
                result.set_exception(exc_info[1], exc_info)
                self.hub.handle_error((self, func), *exc_info)

        return finish

    def apply(self, func: Callable[..., Any], args: Iterable | None = None, kwds: dict | None = None) -> Any:
        """Runs ``func(*args, **kwds)`` in a worker thread and returns its result (or raises its exception).

        Called from a thread other than the pool's hub thread (a worker, say), it just calls ``func``.
        """
        args = () if args is None else args
        kwds = {} if kwds is None else kwds
        if _get_ident() != self._owner:
            return func(*args, **kwds)
        return self.spawn(func, *args, **kwds).get()

    def imap(self, func: Callable[..., Any], *iterables: Iterable, maxsize: int | None = None) -> Iterator[Any]:
        """Yields ``func(*items)`` for the items of ``iterables`` taken in step, in order, computed in parallel.

        At most ``maxsize`` results (default: the pool's maxsize) are computed ahead of the reader.
        """
        ahead = max(1, self._maxsize if maxsize is None else min(maxsize, self._maxsize))
        pending: deque[AsyncResult] = deque()
        for items in zip(*iterables):
            if len(pending) >= ahead:
                yield pending.popleft().get()
            pending.append(self.spawn(func, *items))
        while pending:
            yield pending.popleft().get()

    def map(self, func: Callable[..., Any], iterable: Iterable) -> list:
        """``list(imap(func, iterable))``: every result, in order."""
        return list(self.imap(func, iterable))

    def join(self) -> None:
        """Waits until every outstanding job has finished."""
        while self._outstanding:
            me = getcurrent()
            self._join_waiters.append(me)
            try:
                self.hub.loop.park()
            finally:
                if me in self._join_waiters:
                    self._join_waiters.remove(me)

    def kill(self) -> None:
        """Tells every thread to stop once the jobs already queued are done (``size = 0``)."""
        self.size = 0

    def _forget_threads(self) -> None:
        """In a forked child: the threads are gone and the jobs they had will never report back."""
        forgotten, self._outstanding = self._outstanding, 0
        self._threads = 0
        self._tasks = SimpleQueue()
        self._join_waiters = []
        if self._owner == _get_ident():  # the forking thread's hub lives on in the child
            for _ in range(forgotten):
                self.hub.loop.remove_ref()
            self._slot_waiters.wake_first()


def _forget_threads_after_fork() -> None:
    for pool in list(_live_pools):
        pool._forget_threads()


os.register_at_fork(after_in_child=_forget_threads_after_fork)


class _SignalWakeup:
    """The main thread's ``signal.set_wakeup_fd`` socketpair and the unreferenced wait that watches it.

    A signal caught in any thread writes a byte to the socketpair; the loop's poll returns and the loop runs the
    Python handlers (see the module docstring). One per process; a new main-thread loop gets its own watcher.
    """

    def __init__(self):
        self._settled_for = None  # the loop the decision (watch, or leave someone else's fd alone) was made for
        self._read = None
        self._write = None

    def install(self, hub: Hub) -> None:
        """Makes signals caught in any thread wake ``hub``'s loop, if ``hub`` runs on the main thread."""
        if self._settled_for is hub.loop:
            return
        if self._write is None:
            self._read, self._write = _socket.socketpair()
            self._read.setblocking(False)
            self._write.setblocking(False)
        try:
            previous = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread: only the main thread runs Python's signal handlers
            return
        self._settled_for = hub.loop
        if previous not in (-1, self._write.fileno()):
            signal.set_wakeup_fd(previous)  # someone else (asyncio) watches signals this way: theirs stays
            return
        hub.loop.start(greenlet(functools.partial(self._watch, hub.loop), hub))

    def _watch(self, loop) -> None:
        fd = self._read.fileno()
        while True:
            try:
                while self._read.recv(512):
                    pass
            except BlockingIOError:
                pass
            loop.wait_fd(fd, False, ref=False)


_signal_wakeup = _SignalWakeup()
