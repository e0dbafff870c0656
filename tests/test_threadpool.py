"""ThreadPool: real OS threads whose results greenlets wait on; bounded, started on need; Ctrl-C stays prompt."""

from __future__ import annotations

import io
import os
import sys
import threading
import time

import ferrovent
import pytest
from ferrovent.event import AsyncResult
from ferrovent.exceptions import InvalidThreadUseError
from ferrovent.threadpool import DEFAULT_SIZE, ThreadPool, hub_threadpool, is_worker_thread

from tests.child import run_child

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def pool():
    pool = ThreadPool(3)
    yield pool
    pool.kill()


@pytest.fixture
def reported():
    """What the hub reports while the test runs (a failing job is reported, as gevent does)."""
    hub = ferrovent.get_hub()
    saved, hub.exception_stream = hub.exception_stream, io.StringIO()
    yield hub.exception_stream
    hub.exception_stream = saved


def thread_alive(native_id: int) -> bool:
    """Whether this process has the OS thread ``native_id``, by name: a listing of /proc/self/task is no proof,
    since Linux ends the listing early when the thread it has reached exits meanwhile (threads of earlier tests'
    pools may still be exiting), leaving out live threads listed after it."""
    return os.path.exists(f"/proc/self/task/{native_id}")


def test_spawn_runs_the_job_in_another_os_thread(pool):
    result = pool.spawn(lambda a, b=0: (threading.get_native_id(), is_worker_thread(), a + b), 2, b=3)
    assert isinstance(result, AsyncResult)
    native_id, in_worker, total = result.get()  # parks the main greenlet: the pool's loop reference keeps it up
    assert native_id != threading.get_native_id()
    assert in_worker and not is_worker_thread()
    assert total == 5
    assert result.ready() and result.successful() and result.value == (native_id, True, 5)


def worker_fails():
    raise ValueError("in the thread")


def test_a_failing_job_reraises_in_get_and_is_reported(pool, reported):
    result = pool.spawn(worker_fails)
    with pytest.raises(ValueError, match="in the thread") as info:
        result.get()
    assert info.traceback[-1].name == "worker_fails"  # the traceback from the worker thread is kept
    assert not result.successful() and isinstance(result.exception, ValueError)
    assert "failed with ValueError" in reported.getvalue()


def test_greenlets_run_while_a_job_blocks(pool):
    released = threading.Event()  # a real (unpatched) Event: the job blocks its OS thread on it
    result = pool.spawn(released.wait, 10)
    ticks = []

    def ticker():
        for i in range(5):
            ticks.append(i)
            ferrovent.sleep(0.01)
        released.set()  # only a greenlet that got to run can release the job

    ferrovent.spawn(ticker)
    assert result.get() is True
    assert ticks == [0, 1, 2, 3, 4]


def test_get_times_out_while_the_job_runs_and_works_after(pool):
    released = threading.Event()
    result = pool.spawn(lambda: released.wait(10) and "done")
    with pytest.raises(ferrovent.Timeout):
        result.get(block=False)
    start = time.monotonic()
    with pytest.raises(ferrovent.Timeout):
        result.get(timeout=0.05)
    assert time.monotonic() - start >= 0.05
    assert result.wait(0.01) is None
    released.set()
    assert result.get(timeout=5) == "done"


def test_threads_start_on_need_and_stay_bounded(pool):
    assert pool.size == 0  # nothing started before the first job
    lock = threading.Lock()
    running = [0, 0]  # now, most at once
    threads = set()  # the OS threads the jobs ran in
    released = threading.Event()

    def job(i):
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
            threads.add(threading.get_native_id())
        released.wait(10)
        with lock:
            running[0] -= 1
        return i * i

    results = [ferrovent.spawn(pool.spawn, job, i) for i in range(10)]  # spawn() itself waits for room
    ferrovent.sleep(0.05)
    # As gevent's: one job more than maxsize is accepted (it waits in the queue for the first free thread).
    assert len(pool) == 4 and pool.size == 3
    assert sum(not g.ready() for g in results) == 6  # the other six spawns wait for room
    deadline = time.monotonic() + 10
    while len(threads) < 3 and time.monotonic() < deadline:
        ferrovent.sleep(0.01)
    assert len(threads) == 3 and all(map(thread_alive, threads))
    released.set()
    assert [g.get().get() for g in results] == [i * i for i in range(10)]
    assert running[1] == 3
    assert pool.size == 3 and len(threads) == 3 and all(map(thread_alive, threads))  # the same three threads


def test_map_and_imap_keep_order(pool):
    def slow_square(x):
        time.sleep(0.002 * (10 - x))  # later items finish first
        return x * x

    assert pool.map(slow_square, range(10)) == [x * x for x in range(10)]
    assert list(pool.imap(pow, [2, 3, 4], [3, 2, 1])) == [8, 9, 4]
    assert list(pool.imap(slow_square, range(6), maxsize=1)) == [x * x for x in range(6)]


def test_apply_waits_for_the_result_and_runs_inline_in_a_worker(pool):
    assert pool.apply(divmod, (7, 2)) == (3, 1)
    assert pool.apply(dict, kwds={"a": 1}) == {"a": 1}
    # From inside a worker, apply() cannot wait on the pool: it calls the function right there.
    assert pool.apply(lambda: pool.apply(threading.get_native_id)) != threading.get_native_id()


def test_join_waits_for_every_job(pool):
    done = []
    for i in range(5):
        pool.spawn(lambda i=i: (time.sleep(0.01), done.append(i)))
    pool.join()
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert len(pool) == 0
    pool.join()  # nothing outstanding: returns at once


def test_size_and_maxsize(pool):
    pool.size = 2
    assert pool.size == 2
    # Both threads, by their own word: two jobs that can only finish together run on two different threads.
    both = threading.Barrier(2)

    def thread_id():
        both.wait(10)
        return threading.get_native_id()

    started = {result.get() for result in [pool.spawn(thread_id) for _ in range(2)]}
    assert len(started) == 2 and all(map(thread_alive, started))  # no worker leaves untold after its job
    with pytest.raises(ValueError):
        pool.size = 4
    with pytest.raises(ValueError):
        pool.size = -1
    with pytest.raises(TypeError):
        pool.maxsize = 1.5
    with pytest.raises(ValueError):
        pool.maxsize = -1
    pool.kill()
    assert pool.size == 0
    deadline = time.monotonic() + 10
    while any(map(thread_alive, started)) and time.monotonic() < deadline:  # the threads end on their own
        ferrovent.sleep(0.01)
    assert not any(map(thread_alive, started))
    assert pool.apply(lambda: "after kill") == "after kill"  # a killed pool starts threads again on need
    pool.maxsize = 5
    assert pool.maxsize == 5


class CountedWorkers(ThreadPool):
    """A pool that knows its live workers: each counts from its creation (when the pool counts it) until its loop
    has returned, and names its thread once running."""

    def __init__(self, *args, **kwargs):
        self.workers: dict = {}  # worker -> its native thread id, None until it runs
        self.workers_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    class _WorkerGreenlet(ThreadPool._WorkerGreenlet):
        def __init__(self, pool):
            with pool.workers_lock:
                pool.workers[self] = None
            super().__init__(pool)

        def run(self):
            pool = self._pool()
            with pool.workers_lock:
                pool.workers[self] = threading.get_native_id()
            try:
                super().run()
            finally:
                with pool.workers_lock:
                    del pool.workers[self]

    def running_threads(self) -> set:
        """The native ids of the workers whose loop runs, once every worker counted has started (bounded wait)."""
        deadline = time.monotonic() + 10
        while None in self.workers.values() and time.monotonic() < deadline:
            ferrovent.sleep(0.001)
        with self.workers_lock:
            return set(self.workers.values())

    def settled_threads(self) -> set:
        """`running_threads` once the workers told to stop have left (bounded wait)."""
        deadline = time.monotonic() + 10
        while len(self.workers) != self.size and time.monotonic() < deadline:
            ferrovent.sleep(0.001)
        return self.running_threads()


def test_a_worker_leaves_only_when_told_through_resizes_and_kills():
    pool = CountedWorkers(4)
    try:
        for size, maxsize, kill in [(2, 4, False), (4, 4, False), (1, 4, False), (3, 3, False), (0, 2, True)]:
            pool.maxsize = maxsize
            if kill:
                pool.kill()
            else:
                pool.size = size
            assert pool.size == size and len(pool.settled_threads()) == size
            for burst in range(1, maxsize + 2):  # up to maxsize + 1 jobs at once: no spawn waits for room
                before = pool.size
                results = [pool.spawn(threading.get_native_id) for _ in range(burst)]
                ran_in = {result.get(timeout=10) for result in results}
                threads = pool.running_threads()  # right after the results: no worker has left untold
                assert ran_in <= threads and pool.size == len(threads) == max(before, min(burst, maxsize))
    finally:
        pool.kill()


def test_wait_and_iwait_accept_results(pool):
    released = threading.Event()
    slow = pool.spawn(released.wait, 10)
    fast = pool.spawn(lambda: "fast")
    assert ferrovent.wait([slow, fast], count=1) == [fast]
    released.set()
    assert list(ferrovent.iwait([slow])) == [slow]
    seen = []
    done = pool.spawn(lambda: 1)
    done.rawlink(seen.append)
    unlinked = pool.spawn(lambda: 2)
    unlinked.rawlink(seen.append)
    unlinked.unlink(seen.append)
    pool.join()
    ferrovent.sleep(0)  # rawlink callbacks run in the hub
    assert seen == [done]


def test_spawn_from_another_thread_is_refused(pool):
    raised = []

    def other_thread():
        try:
            pool.spawn(int)
        except InvalidThreadUseError as error:
            raised.append(error)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(5)
    assert len(raised) == 1


def test_the_hub_has_one_pool_of_the_default_size():
    hub = ferrovent.get_hub()
    assert hub_threadpool(hub) is hub_threadpool(hub)
    assert hub_threadpool(hub).maxsize == DEFAULT_SIZE == 10
    assert hub_threadpool(hub).hub is hub


# -- process-wide behaviour, each in a fresh interpreter ------------------------------------------------------

SIGNAL_CHILD = """
import signal, sys, time, _thread
import ferrovent
from ferrovent.threadpool import hub_threadpool

pool = hub_threadpool(ferrovent.get_hub())
sent = []

def signal_this_worker_then_block():
    time.sleep(0.1)  # the main greenlet is asleep in the loop's poll by now
    sent.append(time.monotonic())
    signal.pthread_kill(_thread.get_ident(), signal.SIGINT)  # caught in THIS thread, not the main one
    time.sleep(3)

pool.spawn(signal_this_worker_then_block)
try:
    ferrovent.sleep(5)
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {time.monotonic() - sent[0]:.3f}")
"""


def test_sigint_caught_in_a_worker_wakes_the_main_loop_at_once():
    # The signal's C handler runs in the worker; only the wakeup fd tells the main thread's poll about it.
    proc = run_child(SIGNAL_CHILD)
    delay = float(proc.stdout.split("KeyboardInterrupt after ")[1])
    assert delay < 0.5, proc.stdout


def test_someone_elses_wakeup_fd_is_left_in_place():
    proc = run_child(
        """
        import signal, socket
        import ferrovent
        from ferrovent.threadpool import ThreadPool
        theirs, _ = socket.socketpair()
        theirs.setblocking(False)
        signal.set_wakeup_fd(theirs.fileno())
        assert ThreadPool(2).apply(lambda: 7) == 7
        print(signal.set_wakeup_fd(-1) == theirs.fileno())
        """
    )
    assert proc.stdout == "True\n"


def test_a_forked_child_starts_its_own_threads():
    proc = run_child(
        """
        import os, threading
        import ferrovent
        from ferrovent.threadpool import ThreadPool
        pool = ThreadPool(2)
        parent = pool.apply(threading.get_native_id)
        pid = os.fork()
        if pid == 0:
            child = pool.apply(threading.get_native_id)  # the parent's threads did not survive the fork
            os._exit(0 if child != parent and pool.size == 1 else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert proc.stdout == "0\n"


def test_the_hub_exposes_its_pool_as_gevent_does():
    hub = ferrovent.get_hub()
    assert hub.threadpool is hub_threadpool(hub)


def test_a_job_runs_with_threadings_hooks_and_in_a_worker_greenlet(pool):
    from greenlet import getcurrent

    def hooks_in_job():
        return sys.getprofile(), type(getcurrent()).__name__

    profile = lambda *args: None  # noqa: E731
    threading.setprofile(profile)
    try:
        assert pool.apply(hooks_in_job) == (profile, "_WorkerGreenlet")
    finally:
        threading.setprofile(None)
    assert pool.apply(hooks_in_job) == (None, "_WorkerGreenlet")  # removed after the job, not kept by the thread
    assert "ThreadPoolWorker" in repr(pool.apply(getcurrent))


def test_idle_threads_exit_after_idle_task_timeout():
    pool = ThreadPool(2, idle_task_timeout=0.05)
    try:
        assert pool.idle_task_timeout == 0.05
        assert pool.map(abs, [-1, -2]) == [1, 2]
        deadline = time.monotonic() + 5
        while pool.size and time.monotonic() < deadline:
            ferrovent.sleep(0.01)
        assert pool.size == 0
        assert pool.apply(abs, (-3,)) == 3  # a thread starts again on need
    finally:
        pool.kill()


def test_a_failing_job_setup_reaches_the_caller_and_the_thread_is_replaced(reported):
    class FailingWorker(ThreadPool._WorkerGreenlet):
        fail = True

        def _before_run_task(self, *args):
            if FailingWorker.fail:
                raise LookupError("set-up")
            super()._before_run_task(*args)

    class Pool(ThreadPool):
        _WorkerGreenlet = FailingWorker

    pool = Pool(1)
    try:
        for _ in range(3):  # more than maxsize + 1: a lost slot would make spawn() wait for ever
            with pytest.raises(LookupError):
                pool.apply(abs, (-1,))
        FailingWorker.fail = False
        assert pool.apply(abs, (-1,)) == 1
    finally:
        pool.kill()


def test_executor_future_exception_is_returned_as_concurrent_futures_does():
    from ferrovent.threadpool import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as executor:
        future = executor.submit(worker_fails)
        assert isinstance(future.exception(timeout=5), ValueError)
        with pytest.raises(ValueError):
            future.result()


def test_a_hub_a_job_started_in_a_worker_thread_ends_with_the_thread():
    pool = ThreadPool(1)

    def job_using_ferrovent():
        ferrovent.sleep(0.001)  # makes a hub in the worker thread
        return ferrovent.get_hub()

    worker_hub = pool.apply(job_using_ferrovent)
    assert worker_hub is not ferrovent.get_hub()
    pool.kill()
    deadline = time.monotonic() + 5
    while not worker_hub.dead and time.monotonic() < deadline:
        ferrovent.sleep(0.01)
    assert worker_hub.dead and worker_hub.loop is None
