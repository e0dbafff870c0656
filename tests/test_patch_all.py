"""After ``monkey.patch_all()``: code written for OS threads, queues, subprocesses and signals runs on greenlets.

Each scenario runs in a fresh interpreter that patches first thing (patching is process-wide). Times are checked
against bounds with wide margins: what they tell apart is "concurrently" (about one job's time) from "one after
another" (the sum of them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.child import ROOT, run_child

pytestmark = pytest.mark.timeout(30)

PATCH = "from ferrovent import monkey\nmonkey.patch_all()\n"
# A daemon thread that counts ticks: a scenario compares counts to see that others ran while it waited.
TICKER = """
import threading, time
ticks = []

def ticker():
    while len(ticks) < 1000:
        time.sleep(0.002)
        ticks.append(1)

threading.Thread(target=ticker, daemon=True).start()
"""


def patched(code: str, prelude: str = "", **kwargs) -> str:
    """Runs ``prelude`` then ``code`` after patch_all() in a fresh interpreter; returns its stdout (stderr must be
    empty)."""
    proc = run_child(PATCH + prelude + textwrap.dedent(code), **kwargs)
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def test_hundred_threads_sleep_concurrently_on_one_os_thread():
    out = patched("""
        import threading, time
        started = time.monotonic()
        threads = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        with open("/proc/self/status") as status:
            os_threads = [line.split()[1] for line in status if line.startswith("Threads:")][0]
        print(0.2 <= elapsed < 1.0, os_threads, sum(t.is_alive() for t in threads))
    """)
    assert out == "True 1 0\n"


def test_locks_conditions_and_events_block_only_the_caller():
    out = patched(
        """
        import threading, time

        def progressed(wait):  # others ran while we waited
            before = len(ticks)
            result = wait()
            return result, len(ticks) > before

        lock = threading.Lock()
        lock.acquire()
        print("lock timeout", *progressed(lambda: lock.acquire(timeout=0.05)))
        threading.Timer(0.03, lock.release).start()
        print("lock released", *progressed(lock.acquire))
        lock.release()

        order = []

        def worker(name):
            with lock:
                order.append(name + " in")
                time.sleep(0.01)
                order.append(name + " out")

        workers = [threading.Thread(target=worker, args=(n,)) for n in "abc"]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        print(order)

        rlock = threading.RLock()
        with rlock:
            with rlock:
                holder = threading.Thread(target=lambda: print("other got rlock", rlock.acquire(timeout=0.02)))
                holder.start()
                holder.join()

        condition = threading.Condition()
        box = []

        def consumer():
            with condition:
                print("condition", bool(condition.wait_for(lambda: box, timeout=5)), box)

        c = threading.Thread(target=consumer)
        c.start()
        time.sleep(0.02)
        with condition:
            box.append("item")
            condition.notify()
        c.join()
        with condition:
            print("condition timeout", *progressed(lambda: condition.wait(0.05)))

        event = threading.Event()
        print("event timeout", *progressed(lambda: event.wait(0.05)))
        threading.Timer(0.03, event.set).start()
        print("event set", *progressed(lambda: event.wait(5)))
    """,
        TICKER,
    )
    assert out.splitlines() == [
        "lock timeout False True",
        "lock released True True",
        "['a in', 'a out', 'b in', 'b out', 'c in', 'c out']",
        "other got rlock False",
        "condition True ['item']",
        "condition timeout False True",
        "event timeout False True",
        "event set True True",
    ]


def test_queue_producer_consumer_in_order_and_get_timeout():
    out = patched("""
        import queue, threading, time
        q = queue.Queue(maxsize=5)
        got = []
        sizes = set()

        def producer():
            for i in range(1000):
                q.put(i)
                sizes.add(q.qsize())

        def consumer():
            for _ in range(1000):
                got.append(q.get())

        threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(got == list(range(1000)), max(sizes) <= 5)

        ticks = []
        ticker = threading.Thread(target=lambda: [ticks.append(time.sleep(0.005)) for _ in range(5)])
        ticker.start()
        started = time.monotonic()
        try:
            queue.Queue().get(timeout=0.1)
        except queue.Empty:
            print("Empty", 0.1 <= time.monotonic() - started < 1, len(ticks))
        print(queue.Empty is monkey.get_original("queue", "Empty"), queue.Full.__module__)
    """)
    assert out == "True True\nEmpty True 5\nTrue queue\n"


def test_threading_local_isolates_threads():
    out = patched("""
        import threading, time
        data = threading.local()
        data.value = "main"
        seen = []

        def worker(n):
            data.value = n
            time.sleep(0.01)  # everyone else writes meanwhile
            seen.append(data.value == n and not hasattr(data, "other"))
            data.other = True

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(all(seen), len(seen), data.value, hasattr(data, "other"))
    """)
    assert out == "True 20 main False\n"


def test_thread_pool_executor_runs_its_jobs_concurrently():
    out = patched("""
        import time
        from concurrent.futures import ThreadPoolExecutor
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(lambda n: (time.sleep(0.3), n * n)[1], range(10)))
        elapsed = time.monotonic() - started
        with open("/proc/self/status") as status:
            os_threads = [line.split()[1] for line in status if line.startswith("Threads:")][0]
        print(results == [n * n for n in range(10)], 0.3 <= elapsed < 1.0, os_threads)
    """)
    assert out == "True True 1\n"


def test_subprocess_runs_in_parallel_from_threads_with_pipes_and_timeouts():
    out = patched("""
        import os, subprocess, sys, threading, time
        codes = []
        started = time.monotonic()
        threads = [threading.Thread(target=lambda: codes.append(subprocess.run(["sleep", "0.4"]).returncode))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(codes, time.monotonic() - started < 1.2)

        done = subprocess.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
                              capture_output=True, text=True)
        print(repr(done.stdout), repr(done.stderr))
        payload = os.urandom(300 * 1024)
        print(subprocess.run(["cat"], input=payload, capture_output=True).stdout == payload)
        started = time.monotonic()
        try:
            subprocess.run(["sleep", "5"], timeout=0.2)
        except subprocess.TimeoutExpired:
            print("TimeoutExpired", time.monotonic() - started < 2)
        print(subprocess.check_output(["echo", "hi"]), subprocess.call(["true"]))
    """)
    assert out.splitlines() == [
        "[0, 0, 0, 0] True",
        "'out\\n' 'err\\n'",
        "True",
        "TimeoutExpired True",
        "b'hi\\n' 0",
    ]


def test_fork_child_runs_greenlets_and_sockets_on_its_own_loop():
    out = patched("""
        import os, socket, threading, time, ferrovent

        def echo_pair():
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            echo = ferrovent.spawn(lambda: server.sendall(server.recv(100).upper()))
            client.sendall(b"ping")
            reply = client.recv(100)
            echo.join()
            for s in (listener, client, server):
                s.close()
            return reply

        ticks = []
        ticker = threading.Thread(target=lambda: [ticks.append(time.sleep(0.01)) for _ in range(30)])
        ticker.start()
        time.sleep(0.02)
        loop = ferrovent.get_hub().loop
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                order = []
                greenlets = [ferrovent.spawn(lambda n=n: (time.sleep(0.01 * n), order.append(n))) for n in (2, 1)]
                ferrovent.joinall(greenlets)
                code = 0 if order == [1, 2] and echo_pair() == b"PING" else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        ticker.join()
        print(os.waitstatus_to_exitcode(status), len(ticks), ferrovent.get_hub().loop is loop, echo_pair())
    """)
    assert out == "0 30 True b'PING'\n"


def test_multiprocessing_process_with_the_fork_start_method():
    out = patched("""
        import multiprocessing, os, threading, time
        ctx = multiprocessing.get_context("fork")
        results = ctx.SimpleQueue()

        def target(n):
            threads = [threading.Thread(target=time.sleep, args=(0.05,)) for _ in range(5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            results.put((n, os.getpid()))

        procs = [ctx.Process(target=target, args=(n,)) for n in range(2)]
        for p in procs:
            p.start()
        procs[0].join()
        procs[1].join(10)
        got = sorted(results.get() for _ in procs)
        print([p.exitcode for p in procs], got == sorted((n, p.pid) for n, p in enumerate(procs)))
    """)
    assert out == "[0, 0] True\n"


def test_sigint_while_the_main_greenlet_waits_on_an_event():
    code = PATCH + textwrap.dedent("""
        import sys, threading, time
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()  # keeps the loop busy
        print("waiting", flush=True)
        started = time.monotonic()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("KeyboardInterrupt", time.monotonic() - started < 2, flush=True)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline() == "waiting\n"
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert out == "KeyboardInterrupt True\n"
    assert proc.returncode == 0


def test_signal_handlers_run_in_greenlets_without_interrupting_others():
    out = patched("""
        import os, signal, threading, time, ferrovent
        ticks = []
        seen = []

        def ticker():
            for _ in range(40):
                time.sleep(0.005)
                ticks.append(1)

        def handler(tag):
            seen.append((tag, len(ticks)))
            time.sleep(0.05)  # blocking in a handler: only this greenlet waits
            seen.append((tag, len(ticks)))

        registration = ferrovent.signal_handler(signal.SIGUSR1, handler, "usr1")
        signal.signal(signal.SIGUSR2, lambda signum, frame: handler("usr2"))
        t = threading.Thread(target=ticker)
        t.start()
        time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.06)
        os.kill(os.getpid(), signal.SIGUSR2)
        t.join()
        time.sleep(0.06)
        registration.cancel()
        print([tag for tag, _ in seen], all(after > before for (_, before), (_, after) in zip(seen[::2], seen[1::2])))
    """)
    assert out == "['usr1', 'usr1', 'usr2', 'usr2'] True\n"


def test_logging_from_many_threads():
    out = patched("""
        import io, logging, threading, time
        stream = io.StringIO()
        logging.basicConfig(stream=stream, level=logging.INFO, format="%(threadName)s|%(message)s")
        log = logging.getLogger("many")

        def worker():
            for n in range(20):
                log.info("record %d", n)
                time.sleep(0)

        threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lines = stream.getvalue().splitlines()
        by_thread = {}
        for line in lines:
            name, message = line.split("|")
            by_thread.setdefault(name, []).append(message)
        expected = [f"record {n}" for n in range(20)]
        print(len(lines), sorted(by_thread) == sorted(t.name for t in threads),
              all(messages == expected for messages in by_thread.values()))
    """)
    assert out == "1000 True True\n"


def test_waitpid_parks_only_the_caller():
    out = patched(
        """
        import os, subprocess
        child = subprocess.Popen(["sleep", "0.15"])
        before = len(ticks)
        pid, status = os.waitpid(child.pid, 0)
        by_pid = pid == child.pid and status == 0 and len(ticks) > before
        child = subprocess.Popen(["sh", "-c", "exit 3"])
        pid, status = os.waitpid(-1, 0)  # any child: polled
        any_child = pid == child.pid and os.waitstatus_to_exitcode(status) == 3
        sleeper = subprocess.Popen(["sleep", "0.2"])
        no_hang = os.waitpid(sleeper.pid, os.WNOHANG) == (0, 0)
        os.waitpid(sleeper.pid, 0)
        try:
            os.waitpid(1, 0)
        except ChildProcessError:
            print(by_pid, any_child, no_hang, "ChildProcessError")
    """,
        TICKER,
    )
    assert out == "True True True ChildProcessError\n"
