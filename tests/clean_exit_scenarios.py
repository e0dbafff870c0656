"""Programs that must exit quietly after ``monkey.patch_all()``: status 0 and nothing on stderr.

Run one with ``python tests/clean_exit_scenarios.py NAME`` (on gevent through ``tests/compat/runner.py``'s script
mode); ``tests/test_clean_exit.py`` does, and checks what it printed. Nothing is imported before ``patch_all()``
but ``sys``: each scenario imports what it uses, as a program patched at its top would.
"""

from __future__ import annotations

import sys
from typing import Callable

SCENARIOS: dict[str, Callable[[], None]] = {}


def scenario(func: Callable[[], None]) -> Callable[[], None]:
    SCENARIOS[func.__name__] = func
    return func


# Objects kept alive until the interpreter clears this module at exit, during its finalization.
KEPT: list = []


@scenario
def handler_collected_at_exit() -> None:
    # A logging handler no logger refers to is collected during finalization; its weak-reference callback takes
    # logging's lock (a patched RLock) when greenlet no longer answers getcurrent().
    import logging

    KEPT.append(logging.StreamHandler())
    logging.getLogger("app").addHandler(logging.StreamHandler(sys.stdout))
    logging.getLogger("app").warning("logged")


@scenario
def forked_child_exits_normally() -> None:
    import logging
    import os

    KEPT.append(logging.StreamHandler())
    pid = os.fork()
    if pid == 0:
        KEPT.append(logging.StreamHandler())
        sys.exit(0)
    print("child status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))


@scenario
def forked_child_falls_off_the_end() -> None:
    import logging
    import os
    import threading

    import ferrovent

    lock = threading.RLock()
    KEPT.append(logging.StreamHandler())
    with lock:
        pid = os.fork()
    if pid:
        print("child status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        return
    with lock:
        ferrovent.spawn(logging.getLogger("child").info, "in a greenlet").join()
    KEPT.append(logging.StreamHandler())


@scenario
def threads_used_locks() -> None:
    import logging
    import threading

    lock, rlock = threading.Lock(), threading.RLock()
    condition = threading.Condition(rlock)
    done = []

    def work() -> None:
        with lock, rlock, rlock:
            done.append(1)
        with condition:
            condition.notify_all()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    KEPT.append(logging.StreamHandler())
    print("threads done", len(done))


@scenario
def thread_pool_used_locks() -> None:
    import logging
    import threading

    import ferrovent

    lock, rlock = threading.Lock(), threading.RLock()

    def in_a_real_thread() -> int:
        with lock, rlock:
            logging.getLogger("pool").addHandler(logging.StreamHandler())
        return 1

    pool = ferrovent.get_hub().threadpool
    print("jobs done", sum(pool.spawn(in_a_real_thread).get() for _ in range(3)))
    KEPT.append(logging.StreamHandler())


@scenario
def logging_at_exit_with_a_thread_still_waiting() -> None:
    import atexit
    import logging
    import logging.handlers
    import queue
    import threading

    import ferrovent

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    log = logging.getLogger("exit")
    records: queue.Queue = queue.Queue()
    listener = logging.handlers.QueueListener(records, logging.NullHandler())
    listener.start()
    log.addHandler(logging.handlers.QueueHandler(records))
    atexit.register(log.info, "at exit")
    atexit.register(listener.stop)
    ferrovent.joinall([ferrovent.spawn(log.info, "greenlet %d", n) for n in range(2)])
    threading.Thread(target=threading.Event().wait, daemon=True).start()


@scenario
def real_thread_used_locks() -> None:
    # ferrovent only: gevent cannot join a real thread from a greenlet (LoopExit).
    import logging
    import threading

    from ferrovent import monkey

    rlock = threading.RLock()

    def work() -> None:
        with rlock:
            logging.getLogger("real").addHandler(logging.StreamHandler())

    real = monkey.get_original("threading", "Thread")(target=work)
    real.start()
    real.join()
    KEPT.append(logging.StreamHandler())
    print("real thread joined")


if __name__ == "__main__":
    from ferrovent import monkey

    monkey.patch_all()
    SCENARIOS[sys.argv[1]]()
