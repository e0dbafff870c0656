"""Thread-style code after ``monkey.patch_all()``, on stock gevent and on ferrovent: both must print the same.

Each scenario is a script written against ``ferrovent`` (the runner aliases it to gevent for the oracle run), run in
a fresh interpreter per implementation. Both outputs must equal the expected one, so the test cannot pass when
both are broken the same way. Orderings come from sleeps far apart, never from racing clocks.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.compat.runner import run_script

PATCH = "from ferrovent import monkey\nmonkey.patch_all()\n"

SCENARIOS: dict[str, tuple[str, list[str]]] = {}


def scenario(name: str, expected: list[str], code: str) -> None:
    SCENARIOS[name] = (PATCH + textwrap.dedent(code), expected)


scenario(
    "threads_start_join_and_identity",
    [
        "[False, False, False]",
        "[True, True, True] 4",
        "still running after join(timeout) True",
        "[1, 2, 0] [False, False, False] 1",
        "main True MainThread True",
        "idents 3 True",
    ],
    """
    import _thread, threading, time
    order = []

    def worker(n, delay):
        time.sleep(delay)
        order.append(n)

    threads = [threading.Thread(target=worker, args=(n, d)) for n, d in ((0, 0.15), (1, 0.03), (2, 0.09))]
    print([t.is_alive() for t in threads])
    for t in threads:
        t.start()
    print([t.is_alive() for t in threads], threading.active_count())
    threads[0].join(0.01)
    print("still running after join(timeout)", threads[0].is_alive())
    for t in threads:
        t.join()
    print(order, [t.is_alive() for t in threads], threading.active_count())
    main = threading.main_thread()
    print("main", threading.current_thread() is main, main.name, main.ident == threading.get_ident())
    print("idents", len({t.ident for t in threads} - {main.ident}), threading.get_ident() == _thread.get_ident())
    """,
)

scenario(
    "condition_wakes_waiters_in_order",
    ["waiting 3", "woke a", "woke b", "woke c", "notify_all woke 3", "wait timeout False"],
    """
    import threading, time
    condition = threading.Condition()
    waiting = []

    def waiter(name, report):
        with condition:
            waiting.append(name)
            condition.wait()
            report(name)

    threads = [threading.Thread(target=waiter, args=(n, lambda n: print("woke", n))) for n in "abc"]
    for t in threads:
        t.start()
    time.sleep(0.02)
    print("waiting", len(waiting))
    for _ in threads:
        with condition:
            condition.notify()
        time.sleep(0.01)
    woken = []
    threads = [threading.Thread(target=waiter, args=(n, woken.append)) for n in "def"]
    for t in threads:
        t.start()
    time.sleep(0.02)
    with condition:
        condition.notify_all()
    for t in threads:
        t.join()
    print("notify_all woke", len(woken))
    with condition:
        print("wait timeout", condition.wait(0.02))
    """,
)

scenario(
    "locks_and_semaphores",
    [
        "lock order ['a', 'b', 'c']",
        "acquire(timeout) False",
        "rlock levels True False",
        "semaphore at most 2",
        "bounded ValueError",
        "non-blocking False",
    ],
    """
    import threading, time
    lock = threading.Lock()
    order = []

    def take(name):
        with lock:
            order.append(name)
            time.sleep(0.01)

    lock.acquire()
    threads = [threading.Thread(target=take, args=(n,)) for n in "abc"]
    for t in threads:
        t.start()
        time.sleep(0.005)
    lock.release()
    for t in threads:
        t.join()
    print("lock order", order)
    lock.acquire()
    print("acquire(timeout)", lock.acquire(timeout=0.02))
    lock.release()

    rlock = threading.RLock()
    rlock.acquire()
    rlock.acquire()
    rlock.release()
    other = []
    t = threading.Thread(target=lambda: other.append(rlock.acquire(timeout=0.01)))
    t.start()
    t.join()
    rlock.release()
    print("rlock levels", rlock.acquire(blocking=False), other[0])
    rlock.release()

    semaphore = threading.Semaphore(2)
    inside = []
    most = []

    def limited():
        with semaphore:
            inside.append(1)
            most.append(len(inside))
            time.sleep(0.01)
            inside.pop()

    threads = [threading.Thread(target=limited) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("semaphore at most", max(most))
    bounded = threading.BoundedSemaphore(1)
    try:
        bounded.release()
    except ValueError:
        print("bounded ValueError")
    bounded.acquire()
    print("non-blocking", bounded.acquire(False))
    """,
)

scenario(
    "stdlib_queues",
    [
        "fifo [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] blocked puts waited True",
        "lifo [3, 2, 1] priority [1, 2, 3]",
        "Empty Full",
        "get(timeout) Empty after others ran True",
        "join after task_done True",
    ],
    """
    import queue, threading, time
    q = queue.Queue(maxsize=2)
    got = []
    put_times = []

    def producer():
        for n in range(10):
            q.put(n)
            put_times.append(time.monotonic())

    def consumer():
        time.sleep(0.05)
        for _ in range(10):
            got.append(q.get())

    started = time.monotonic()
    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("fifo", got, "blocked puts waited", put_times[-1] - started >= 0.04)
    lifo, priority = queue.LifoQueue(), queue.PriorityQueue()
    for n in (1, 2, 3):
        lifo.put(n)
    for n in (3, 1, 2):
        priority.put(n)
    print("lifo", [lifo.get() for _ in range(3)], "priority", [priority.get() for _ in range(3)])
    names = []
    try:
        queue.Queue().get_nowait()
    except queue.Empty:
        names.append("Empty")
    full = queue.Queue(1)
    full.put(1)
    try:
        full.put_nowait(2)
    except queue.Full:
        names.append("Full")
    print(*names)
    ticks = []
    ticker = threading.Thread(target=lambda: [ticks.append(time.sleep(0.005)) for _ in range(3)])
    ticker.start()
    try:
        queue.Queue().get(timeout=0.05)
    except queue.Empty:
        print("get(timeout) Empty after others ran", len(ticks) == 3)
    jobs = queue.Queue()
    for n in range(3):
        jobs.put(n)

    def work():
        while True:
            jobs.get()
            time.sleep(0.005)
            jobs.task_done()

    threading.Thread(target=work, daemon=True).start()
    jobs.join()
    print("join after task_done", jobs.unfinished_tasks == 0)
    """,
)

scenario(
    "local_timer_and_futures",
    [
        "local isolated True main",
        "timer fired ['late'] cancelled not run",
        "futures [0, 1, 4, 9, 16, 25, 36, 49, 64, 81] concurrent True",
        "as_completed [0.01, 0.03, 0.05]",
    ],
    """
    import threading, time
    from concurrent.futures import ThreadPoolExecutor, as_completed
    data = threading.local()
    data.name = "main"
    ok = []

    def use_local(n):
        data.name = n
        time.sleep(0.01)
        ok.append(data.name == n)

    threads = [threading.Thread(target=use_local, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("local isolated", all(ok) and len(ok) == 5, data.name)
    fired = []
    late = threading.Timer(0.02, fired.append, args=("late",))
    cancelled = threading.Timer(0.01, fired.append, args=("cancelled",))
    late.start()
    cancelled.start()
    cancelled.cancel()
    late.join()
    cancelled.join()
    print("timer fired", fired, "cancelled not run")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        squares = list(pool.map(lambda n: (time.sleep(0.1), n * n)[1], range(10)))
    print("futures", squares, "concurrent", time.monotonic() - started < 0.6)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(lambda d: (time.sleep(d), d)[1], d) for d in (0.05, 0.01, 0.03)]
        print("as_completed", [f.result() for f in as_completed(futures)])
    """,
)

scenario(
    "subprocess_from_threads_and_exit_joins",
    ["codes [0, 0, 0] parallel True", "captured 'hi\\n'", "main ends", "non-daemon thread finished"],
    """
    import subprocess, threading, time
    codes = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: codes.append(subprocess.call(["sleep", "0.3"]))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("codes", codes, "parallel", time.monotonic() - started < 0.8)
    print("captured", repr(subprocess.run(["echo", "hi"], capture_output=True, text=True).stdout))

    def late():
        time.sleep(0.05)
        print("non-daemon thread finished")

    threading.Thread(target=late).start()
    print("main ends")
    """,
)

scenario(
    "lock_timeouts_beyond_timeout_max",
    ["Lock OverflowError ValueError True", "RLock OverflowError ValueError True"],
    """
    import threading

    for name, make in (("Lock", threading.Lock), ("RLock", threading.RLock)):
        lock, seen = make(), []
        for args in ((True, threading.TIMEOUT_MAX + 1), (False, 1)):
            try:
                lock.acquire(*args)
            except (OverflowError, ValueError) as error:
                seen.append(type(error).__name__)
        print(name, *seen, lock.acquire(timeout=threading.TIMEOUT_MAX))
    """,
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_patched_threading_scenario(name, impl_name, tmp_path):
    code, expected = SCENARIOS[name]
    script = tmp_path / f"{name}.py"
    script.write_text(code)
    proc = run_script(impl_name, script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected, proc.stderr
    assert proc.stderr == ""
