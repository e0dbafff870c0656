"""Real OS threads for blocking work (DNS lookups, C calls that hold no fd, files), with results greenlets wait on.

A `ThreadPool` starts its threads on first need, never more than ``maxsize``, with the ORIGINAL ``_thread``
functions, so monkey-patching threading never turns them into greenlets. Each worker thread runs its loop in a
`_WorkerGreenlet` of its own (what ``getcurrent()`` returns in a task). A job's outcome travels back in a
`ThreadResult` through the hub loop's thread-safe inbox and fills the job's AsyncResult, waking the greenlets that
wait on it; while a job is outstanding the pool holds a reference on the loop, which keeps it running. Like
gevent's, a pool accepts one job more than ``maxsize`` before `spawn` waits, so a thread finishing a job finds the
next one queued. Before each job a worker installs ``threading.setprofile``'s and ``threading.settrace``'s
hooks, and removes them after. `ThreadPool` offers the mapping methods of `ferrovent.pool.Group` (``apply_async``
returns a greenlet), and `ThreadPoolExecutor` is ``concurrent.futures.ThreadPoolExecutor`` on a ThreadPool,
whose futures greenlets can wait on.

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
import concurrent.futures
import functools
import os
import signal
import sys
import weakref
from _queue import Empty, SimpleQueue  # the C queue: its blocking get() is a real lock wait when patched
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import _base as _futures_base
from typing import Any, Optional

from greenlet import getcurrent, greenlet

from ferrovent.event import AsyncResult
from ferrovent.exceptions import InvalidThreadUseError
from ferrovent.greenlet import Greenlet
from ferrovent.hub import Hub, get_hub, get_hub_if_exists
from ferrovent.monkey import get_original, is_module_patched
from ferrovent.pool import IMap, IMapUnordered

__all__ = ["ThreadPool", "ThreadResult", "ThreadPoolExecutor", "hub_threadpool", "is_worker_thread", "DEFAULT_SIZE"]

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


def _get_thread_profile(_sys: Any = sys) -> Any:
    """The profile hook ``threading.setprofile`` installed (None if none, or threading is not imported)."""
    threading = _sys.modules.get("threading")
    return getattr(threading, "_profile_hook", None)


def _get_thread_trace(_sys: Any = sys) -> Any:
    """The trace hook ``threading.settrace`` installed (None if none, or threading is not imported)."""
    threading = _sys.modules.get("threading")
    return getattr(threading, "_trace_hook", None)


def _nothing(*_args: Any) -> None:
    """What a ThreadResult calls once it has delivered (its receiver and readiness callback are spent)."""


class ThreadResult:
    """One outcome sent from a worker thread to a hub: made in the hub's thread, set once from any thread.

    `set` or `handle_error` (in the worker) hands it to the hub loop's thread-safe inbox. In the hub it then calls
    ``call_when_ready()``, reports an error to the hub (as gevent does, with ``context``), and calls
    ``receiver(self)`` (an AsyncResult stores the outcome). After that it holds neither the value nor the
    traceback.
    """

    __slots__ = ("receiver", "hub", "value", "exc_info", "context", "_call_when_ready", "_deliver")

    def __init__(self, receiver: Callable[[ThreadResult], Any], hub: Hub, call_when_ready: Callable[[], Any]) -> None:
        self.receiver = receiver
        self.hub = hub
        self.value: Any = None
        self.exc_info: tuple = ()
        self.context: Any = None
        self._call_when_ready = call_when_ready
        self._deliver = hub.loop.run_callback_threadsafe

    @property
    def exception(self) -> Optional[BaseException]:
        """The exception the job raised, or None."""
        return self.exc_info[1] if self.exc_info else None

    def successful(self) -> bool:
        """True if the job returned (rather than raised)."""
        return self.exception is None

    def set(self, value: Any) -> None:
        """From any thread: the job returned ``value``."""
        self.value = value
        self._deliver(self._on_ready)

    def handle_error(self, context: Any, exc_info: tuple) -> None:
        """From any thread: the job (described by ``context``) raised; ``exc_info`` is ``sys.exc_info()``."""
        self.context = context
        self.exc_info = exc_info
        self._deliver(self._on_ready)

    def _on_ready(self) -> None:
        """Runs in the hub."""
        call_when_ready, self._call_when_ready = self._call_when_ready, _nothing
        try:
            call_when_ready()
            if self.exc_info:
                self.hub.handle_error(self.context, *self.exc_info)
            self.context = self.hub = None
            self.receiver(self)
        finally:
            self.receiver = _nothing
            self.value = None
            if self.exc_info:
                self.exc_info = (self.exc_info[0], self.exc_info[1], None)


def _let_own_hub_block() -> None:
    """A worker waiting for its next job blocks its thread on purpose: if a job started a hub in this thread, that
    hub's monitoring thread must not report the wait as a blocked loop."""
    hub = get_hub_if_exists()
    monitor = hub.periodic_monitoring_thread if hub is not None else None
    if monitor is not None:
        monitor.ignore_current_greenlet_blocking()


class _WorkerGreenlet(greenlet):
    """One worker thread of a ThreadPool, running its loop as a greenlet of that thread.

    Made in the pool's thread (so the pool counts it at once), it starts its thread and is switched to there. It
    takes jobs until told to stop, or until it has waited ``idle_task_timeout`` seconds for one (if that is not
    negative). `_before_run_task` and `_after_run_task` run around each job: they install, then remove, the
    threading module's profile and trace hooks. If installing fails, the job's caller gets the error and the worker
    exits (the pool starts another), so a job never runs with half its hooks.
    """

    def __init__(self, threadpool: ThreadPool) -> None:
        super().__init__()
        self._hub = threadpool.hub
        self._stderr = sys.stderr
        self._tasks = threadpool._tasks
        self._idle_task_timeout = threadpool.idle_task_timeout
        self._pool = weakref.ref(threadpool)
        self._deliver = threadpool.hub.loop.run_callback_threadsafe
        self._thread_ident = 0
        _start_new_thread(self._begin, ())

    def _begin(self) -> None:
        """The new thread's first function: makes this greenlet a child of the thread's main greenlet, runs it."""
        self.parent = getcurrent()
        self._thread_ident = _get_ident()
        try:
            self.switch()
        except BaseException:  # run() reported what it could; at interpreter shutdown there may be no stderr
            pass

    def run(self) -> None:
        _worker_state.is_worker = True
        timeout = None if self._idle_task_timeout < 0 else self._idle_task_timeout
        told_to_stop = False
        task = None
        try:
            while True:
                _let_own_hub_block()
                try:
                    task = self._tasks.get(timeout=timeout)
                except Empty:
                    return  # idle for too long
                if task is _STOP:
                    told_to_stop = True
                    return
                self._run_task(*task)
                task = None
        except Exception as error:
            print(f"Failed to run worker thread. Task={task!r} Exception={error!r}", file=self._stderr)
        finally:
            own_hub = get_hub_if_exists()
            if own_hub is not None:  # a job started a hub in this thread: it ends with the thread
                own_hub.destroy(True)
            pool = self._pool()
            if not told_to_stop and pool is not None:
                try:
                    self._deliver(pool._worker_left)
                except Exception:  # the pool's hub and loop are gone, and with them its use for workers
                    pass

    def _run_task(self, func: Callable[..., Any], args: tuple, kwargs: dict, thread_result: ThreadResult) -> None:
        try:
            self._before_run_task(func, args, kwargs, thread_result)
        except BaseException:
            thread_result.handle_error((self, func), sys.exc_info())
            raise
        try:
            thread_result.set(func(*args, **kwargs))
        except BaseException:
            thread_result.handle_error((self, func), sys.exc_info())
        finally:
            self._after_run_task(func, args, kwargs, thread_result)

    def _before_run_task(
        self,
        func: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        thread_result: ThreadResult,
        _sys: Any = sys,
        _get_thread_profile: Callable[[], Any] = _get_thread_profile,
        _get_thread_trace: Callable[[], Any] = _get_thread_trace,
    ) -> None:
        """Installs the threading module's profile and trace hooks as they are now (setting none that is unset:
        each setter is an audited event)."""
        profile = _get_thread_profile()
        if profile is not None:
            _sys.setprofile(profile)
        trace = _get_thread_trace()
        if trace is not None:
            _sys.settrace(trace)

    def _after_run_task(
        self, func: Callable[..., Any], args: tuple, kwargs: dict, thread_result: ThreadResult, _sys: Any = sys
    ) -> None:
        """Removes any profile or trace hook the job ran with (installed by `_before_run_task` or by the job)."""
        if _sys.getprofile() is not None:
            _sys.setprofile(None)
        if _sys.gettrace() is not None:
            _sys.settrace(None)

    def __repr__(self) -> str:
        hub = self._hub
        hub_text = "<missing>" if hub is None else f"<{type(hub).__name__} at {hex(id(hub))}>"
        return f"<ThreadPoolWorker at {hex(id(self))} thread_ident={hex(self._thread_ident)} threadpool-hub={hub_text}>"


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


class _JobResult(AsyncResult):
    """The AsyncResult `ThreadPool.spawn` returns; unlike the base class it takes attributes (the mapping
    iterators of `ferrovent.pool` label each job with its place in the input)."""


class ThreadPool:
    """A pool of at most ``maxsize`` real OS threads that run blocking functions for the greenlets of one hub.

    Use it from the thread of its hub (the thread that created it). `spawn` waits while more than ``maxsize``
    jobs are outstanding. A job that raises is reported by the hub, as gevent does, and re-raised by ``get()``.
    ``len(pool)`` is the number of jobs not yet finished (so a pool is true while it has some). With
    ``idle_task_timeout`` >= 0, a thread that waited that many seconds for a job exits.
    """

    _WorkerGreenlet = _WorkerGreenlet

    def __init__(self, maxsize: int, hub: Hub | None = None, idle_task_timeout: float = -1) -> None:
        self.hub = get_hub() if hub is None else hub
        self._owner = _get_ident()
        self._idle_task_timeout = idle_task_timeout
        self._maxsize = 0
        self._threads = 0  # threads started and neither told to stop nor known to have left
        self._outstanding = 0  # jobs queued or running whose result has not come back
        self._tasks: SimpleQueue = SimpleQueue()
        self._slot_waiters = _SlotWaiters(self.hub.loop)
        self._join_waiters: list = []
        self.maxsize = maxsize
        _live_pools.add(self)

    # -- size ---------------------------------------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """The most threads this pool runs; one job more than this may be outstanding before `spawn` waits."""
        return self._maxsize

    @maxsize.setter
    def maxsize(self, maxsize: int) -> None:
        if not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be integer: {maxsize!r}")
        if maxsize < 0:
            raise ValueError(f"maxsize must not be negative: {maxsize!r}")
        self._maxsize = maxsize
        self._stop_threads(self._threads - maxsize)
        self.adjust()
        self._slot_waiters.wake_first()

    @property
    def idle_task_timeout(self) -> float:
        """Seconds a thread waits for a job before it exits; negative: it waits for ever."""
        return self._idle_task_timeout

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

    def adjust(self) -> None:
        """Starts threads while there are more outstanding jobs than threads, up to ``maxsize``."""
        while self._threads < min(self._outstanding, self._maxsize):
            self._start_thread()

    def _stop_threads(self, count: int) -> None:
        for _ in range(count):
            self._threads -= 1
            self._tasks.put(_STOP)

    def _start_thread(self) -> None:
        _signal_wakeup.install(self.hub)
        self._WorkerGreenlet(self)
        self._threads += 1

    def _worker_left(self) -> None:
        """In the hub: a worker exited without being told to (idle, or its job's set-up failed)."""
        self._threads -= 1
        self.adjust()

    def __len__(self) -> int:
        return self._outstanding

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} at {hex(id(self))} tasks={self._outstanding} size={self._threads} "
            f"maxsize={self._maxsize} hub=<{type(self.hub).__name__} at {hex(id(self.hub))}>>"
        )

    # -- jobs ---------------------------------------------------------------------------------------------

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult:
        """Runs ``func(*args, **kwargs)`` in a worker thread; returns at once the AsyncResult it will fill.

        Waits while more than ``maxsize`` jobs are outstanding; starts a thread if every thread is busy and there
        is room. Raises InvalidThreadUseError outside the pool's hub thread.
        """
        if _get_ident() != self._owner:
            raise InvalidThreadUseError(f"{self!r} belongs to another thread's hub")
        if self._slot_waiters or not self._has_room():
            self._slot_waiters.wait(self._has_room)
        result = _JobResult()
        self._outstanding += 1
        self.hub.loop.add_ref()
        self._tasks.put((func, args, kwargs, ThreadResult(result, self.hub, self._job_done)))
        self.adjust()
        return result

    def _has_room(self) -> bool:
        return self._outstanding <= self._maxsize

    def _job_done(self) -> None:
        """In the hub, as a job's outcome arrives (before its result is set)."""
        self._outstanding -= 1
        self.hub.loop.remove_ref()
        self._slot_waiters.wake_first()
        if not self._outstanding:
            joiners, self._join_waiters = self._join_waiters, []
            for joiner in joiners:
                self.hub.loop.wake(joiner)

    def apply(self, func: Callable[..., Any], args: Iterable | None = None, kwds: dict | None = None) -> Any:
        """Runs ``func(*args, **kwds)`` in a worker thread and returns its result (or raises its exception).

        Called from a thread other than the pool's hub thread (a worker, say), it just calls ``func``.
        """
        args = () if args is None else args
        kwds = {} if kwds is None else kwds
        if _get_ident() != self._owner:
            return func(*args, **kwds)
        return self.spawn(func, *args, **kwds).get()

    def apply_cb(
        self,
        func: Callable[..., Any],
        args: Iterable | None = None,
        kwds: dict | None = None,
        callback: Callable[[Any], Any] | None = None,
    ) -> Any:
        """`apply`, then ``callback(result)`` right here (if given, and if ``func`` did not raise)."""
        result = self.apply(func, args, kwds)
        if callback is not None:
            callback(result)
        return result

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable | None = None,
        kwds: dict | None = None,
        callback: Callable[[Any], Any] | None = None,
    ) -> Greenlet:
        """Returns at once a new greenlet (not part of the pool) that runs `apply_cb` with these arguments."""
        return Greenlet.spawn(self.apply_cb, func, () if args is None else args, kwds or {}, callback)

    def map(self, func: Callable[[Any], Any], iterable: Iterable) -> list:
        """``[func(item) for item in iterable]``, the calls in worker threads; results in input order."""
        return [result.get() for result in [self.spawn(func, item) for item in iterable]]

    def map_cb(
        self, func: Callable[[Any], Any], iterable: Iterable, callback: Callable[[list], Any] | None = None
    ) -> list:
        """`map`, then ``callback(results)`` (if given)."""
        results = self.map(func, iterable)
        if callback is not None:
            callback(results)
        return results

    def map_async(
        self, func: Callable[[Any], Any], iterable: Iterable, callback: Callable[[list], Any] | None = None
    ) -> Greenlet:
        """Returns at once a new greenlet that runs `map_cb`: join it, or ``get()`` the list."""
        return Greenlet.spawn(self.map_cb, func, iterable, callback)

    def imap(self, func: Callable[..., Any], *iterables: Iterable, maxsize: int | None = None) -> IMap:
        """A lazy iterator over ``func(*items)`` for the items of ``iterables`` taken in step, in input order,
        computed in worker threads. With ``maxsize``, at most that many finished results wait to be read."""
        return IMap.spawn(func, zip(*iterables), spawn=self.spawn, _zipped=True, maxsize=maxsize)

    def imap_unordered(
        self, func: Callable[..., Any], *iterables: Iterable, maxsize: int | None = None
    ) -> IMapUnordered:
        """Like `imap`, but yields each result as soon as it is ready."""
        return IMapUnordered.spawn(func, zip(*iterables), spawn=self.spawn, _zipped=True, maxsize=maxsize)

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


class _RelayTo:
    """A link on a job's AsyncResult that calls ``callback(future)``: links speak of the future, not the result.
    Equal to its callback, so that unlinking the callback finds it."""

    __slots__ = ("future", "callback")

    def __init__(self, future: _GreenFuture, callback: Callable[[Any], Any]) -> None:
        self.future = future
        self.callback = callback

    def __call__(self, _result: AsyncResult) -> None:
        self.callback(self.future)

    def __eq__(self, other: object) -> bool:
        return self.callback == getattr(other, "callback", other)

    def __hash__(self) -> int:
        return hash(self.callback)


class _GreenFuture:
    """The future `ThreadPoolExecutor.submit` returns: a ``concurrent.futures.Future`` in behaviour, over the
    job's AsyncResult, so waiting for it parks only the calling greenlet.

    It is ready and linkable as greenlets and AsyncResults are (``ferrovent.wait``, ``iwait``, ``rawlink``).
    ``concurrent.futures.wait`` and ``as_completed`` work on it once threading is monkey-patched (their
    conditions and events must then be cooperative); before that, on a future not yet done, they raise
    AttributeError rather than block the thread the result must arrive in. Other attributes are the AsyncResult's.
    """

    def __init__(self, result: AsyncResult) -> None:
        self._result = result

    def done(self) -> bool:
        return self._result.ready()

    ready = done

    def running(self) -> bool:
        return not self._result.ready()

    def cancel(self) -> bool:
        """A job handed to a thread cannot be cancelled: False."""
        return False

    def cancelled(self) -> bool:
        return False

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def _wait_done(self, timeout: Optional[float]) -> None:
        self._result.wait(timeout)
        if not self._result.ready():
            raise concurrent.futures.TimeoutError()

    def result(self, timeout: Optional[float] = None) -> Any:
        """The job's return value (or its exception, raised), waiting up to ``timeout`` seconds
        (``concurrent.futures.TimeoutError`` after that)."""
        self._wait_done(timeout)
        return self._result.get()

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The exception the job raised, or None; waits as `result` does."""
        self._wait_done(timeout)
        return self._result.exception

    def add_done_callback(self, fn: Callable[[Any], Any]) -> None:
        """Calls ``fn(future)`` once it is done (now, if it is), in the hub; an exception it raises is printed
        and ignored, as ``concurrent.futures.Future`` does."""
        if self.done():
            self._call_ignoring_errors(fn)
        else:
            self._result.rawlink(_RelayTo(self, self._call_ignoring_errors_later(fn)))

    def _call_ignoring_errors(self, fn: Callable[[Any], Any]) -> None:
        try:
            fn(self)
        except Exception:
            get_hub().print_exception((fn, self), *sys.exc_info())

    def _call_ignoring_errors_later(self, fn: Callable[[Any], Any]) -> Callable[[Any], None]:
        return lambda _future: self._call_ignoring_errors(fn)

    def rawlink(self, callback: Callable[[Any], Any]) -> None:
        """Calls ``callback(future)`` in the hub once the job is done."""
        self._result.rawlink(_RelayTo(self, callback))

    def unlink(self, callback: Callable[[Any], Any]) -> None:
        self._result.unlink(callback)

    # What concurrent.futures.wait and as_completed read on a future.

    @functools.cached_property
    def _condition(self) -> Any:
        if not (self.done() or is_module_patched("threading")):
            raise AttributeError("_condition: concurrent.futures.wait needs threading monkey-patched")
        import threading

        return threading.Condition()

    @functools.cached_property
    def _waiters(self) -> list:
        self._result.rawlink(self._tell_waiters)
        return []

    def _tell_waiters(self, _result: AsyncResult) -> None:
        for waiter in self._waiters:
            if self._result.successful():
                waiter.add_result(self)
            else:
                waiter.add_exception(self)

    @property
    def _state(self) -> str:
        return _futures_base.FINISHED if self.done() else _futures_base.RUNNING

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_result":
            raise AttributeError(name)
        return getattr(self._result, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))} {self._result!r}>"


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` whose jobs run in a `ThreadPool` of ``max_workers`` native
    threads (native even when threading is monkey-patched), and whose futures greenlets can wait on.

    ``submit`` returns a future with the usual API (``result``, ``exception``, ``add_done_callback``, ...) that
    ``ferrovent.wait`` and ``iwait`` accept too; see `_GreenFuture` for ``concurrent.futures.wait``. The other
    arguments of the stdlib's constructor are accepted and ignored. Use it from the thread that created it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._threadpool: Optional[ThreadPool] = ThreadPool(self._max_workers)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> _GreenFuture:
        """Runs ``fn(*args, **kwargs)`` in a pool thread; returns a future whose ``result()`` waits cooperatively
        (only the calling greenlet waits). Raises ``RuntimeError`` after ``shutdown``."""
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            return _GreenFuture(self._threadpool.spawn(fn, *args, **kwargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new jobs from now on; with ``wait``, waits for the submitted ones. Then the threads exit."""
        super().shutdown(wait, cancel_futures=cancel_futures)
        pool, self._threadpool = self._threadpool, None
        if pool is not None:
            if wait:
                pool.join()
            pool.kill()

    #: gevent's other name for `shutdown`.
    kill = shutdown

    def _adjust_thread_count(self) -> None:
        """The stdlib's own threads are never started: the ThreadPool has the threads."""
