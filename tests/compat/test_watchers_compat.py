"""The loop's watcher API (``hub.loop.io``, ``timer``, ``async_``, ...) run on stock gevent and on ferrovent.

Each scenario runs in a fresh process on one implementation, through ``tests.compat.runner``'s script mode (this
file is the script). Both implementations must produce the expected trace, and ferrovent's must equal gevent's.
The calls are the ones integrations make: uWSGI's plugin (``hub.loop.io(fd, 1).start(cb, arg)``), zmq.green
(level-triggered io watchers, ``loop.timer``), pika's adapter (``loop.io``/``timer``, ``run_callback``).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

if __name__ == "__main__":  # run as a script: make the ``tests`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest

from tests.compat.runner import Result, check_agreement, print_trace, run_script_scenario
from tests.compat.scenarios import Scenario
from tests.forking import gated_child

WATCHER_SCENARIOS: dict[str, Scenario] = {}


def watcher_scenario(expected: list, reports: tuple[str, ...] = ()) -> Callable:
    def register(func: Callable[[Any, list], None]) -> Callable[[Any, list], None]:
        WATCHER_SCENARIOS[func.__name__] = Scenario(func, json.loads(json.dumps(expected)), tuple(reports))
        return func

    return register


def wait_until(lib, condition, limit: float = 5.0) -> bool:
    """Lets the loop turn until ``condition()`` holds or ``limit`` seconds pass."""
    step = 0.005
    for _ in range(int(limit / step)):
        if condition():
            return True
        lib.sleep(step)
    return condition()


# --- scenarios ------------------------------------------------------------------------------------------------------


@watcher_scenario(
    [
        ["one-shot", [1], False, True],
        ["after", False, None, None],
        ["repeat", [1, 2, 2]],
        ["after repeat", False, None],
    ]
)
def timer_one_shot_repeat_restart_stop(lib, trace):
    loop = lib.get_hub().loop
    once = loop.timer(0.01)
    once.start(lambda *a: trace.append(["one-shot", list(a), once.active, once.callback is not None]), 1)
    wait_until(lib, lambda: trace)
    trace.append(["after", once.active, once.callback, once.args])

    seen = []
    rep = loop.timer(0.01, 0.01)

    def tick(arg):
        seen.append(arg)
        if len(seen) == 1:
            rep.start(tick, 2)  # restart while active: only the arguments change
        elif len(seen) == 3:
            rep.stop()  # stop from inside the callback

    rep.start(tick, 1)
    wait_until(lib, lambda: not rep.active)
    lib.sleep(0.05)  # a stopped repeating timer fires no more
    trace.append(["repeat", seen])
    trace.append(["after repeat", rep.active, rep.callback])


@watcher_scenario([["level-triggered", True], ["read", "ping"], ["stopped", False, None], ["writable", [2]]])
def io_watchers_are_level_triggered(lib, trace):
    loop = lib.get_hub().loop
    r, w = socket.socketpair()
    calls = []
    reader = loop.io(r.fileno(), 1)

    def on_readable(tag):
        calls.append(tag)
        if len(calls) == 3:  # left unread twice: called again each iteration
            trace.append(["level-triggered", True])
            trace.append(["read", r.recv(10).decode()])
            reader.stop()

    reader.start(on_readable, "r")
    w.send(b"ping")
    wait_until(lib, lambda: not reader.active)
    trace.append(["stopped", reader.active, reader.callback])

    writer = loop.io(w.fileno(), 2)
    events = []
    writer.start(lambda ev: (events.append(ev), writer.stop()), pass_events=True)
    wait_until(lib, lambda: events)
    trace.append(["writable", events])
    r.close()
    w.close()


@watcher_scenario([["echo", "b'hello'"], ["watchers left active", False]])
def c_like_call_patterns(lib, trace):
    """uWSGI's plugin makes watchers from C: ``loop.io(fd, 1).start(cb, watcher)``, ``loop.timer(t, 0)``,
    ``loop.signal(n)``; the callback gets the watcher it passed, and reads until the socket would block."""
    hub = lib.get_hub()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    got = []
    watchers = []

    def on_client(client_watcher, conn):
        got.append(conn.recv(100))
        client_watcher.stop()
        conn.close()

    def on_accept(listen_watcher):
        conn, _ = server.accept()
        conn.setblocking(False)
        w = hub.loop.io(conn.fileno(), 1)
        watchers.append(w)
        w.start(on_client, w, conn)

    accept_watcher = hub.loop.io(server.fileno(), 1)
    watchers.append(accept_watcher)
    accept_watcher.start(on_accept, accept_watcher)

    client = socket.create_connection(server.getsockname())
    client.send(b"hello")
    wait_until(lib, lambda: got)
    trace.append(["echo", repr(got[0])])
    accept_watcher.stop()
    client.close()
    server.close()
    trace.append(["watchers left active", any(w.active for w in watchers)])


@watcher_scenario([["ready", [True, True, True]], ["timed out", [True, True, True]], ["slept", True]])
def c_like_wait_hooks(lib, trace):
    """uWSGI's wait hooks, called from request greenlets: an io watcher and a timer both started with the current
    greenlet's ``switch`` (and themselves as argument), then ``hub.switch()``; what comes back says which fired."""
    from greenlet import getcurrent

    hub = lib.get_hub()

    def wait_fd(fd, events, timeout):
        watcher = hub.loop.io(fd, events)
        timer = hub.loop.timer(timeout)
        current = getcurrent()
        watcher.start(current.switch, watcher)
        timer.start(current.switch, timer)
        fired = hub.switch()
        timer.stop()
        watcher.stop()
        return fired is watcher

    def sleep_ms(ms):
        timer = hub.loop.timer(ms / 1000.0)
        timer.start(getcurrent().switch, timer)
        fired = hub.switch()
        timer.stop()
        return fired is timer

    pairs = [socket.socketpair() for _ in range(3)]
    readers = [lib.spawn(wait_fd, r.fileno(), 1, 5.0) for r, _ in pairs]
    lib.sleep(0.02)
    for _, w in pairs:
        w.send(b"x")
    trace.append(["ready", [g.get() for g in readers]])
    for r, _ in pairs:
        r.recv(1)
    waiting = [lib.spawn(wait_fd, r.fileno(), 1, 0.05) for r, _ in pairs]
    trace.append(["timed out", [g.get() is False for g in waiting]])
    trace.append(["slept", lib.spawn(sleep_ms, 20).get()])
    for pair in pairs:
        for s in pair:
            s.close()


@watcher_scenario([["signal", "SIGUSR1", True], ["stopped", False]])
def signal_watcher_runs_in_hub(lib, trace):
    hub = lib.get_hub()
    from greenlet import getcurrent

    sig = hub.loop.signal(signal.SIGUSR1)
    sig.start(lambda: trace.append(["signal", "SIGUSR1", getcurrent() is hub]))
    os.kill(os.getpid(), signal.SIGUSR1)
    wait_until(lib, lambda: trace)
    sig.stop()
    trace.append(["stopped", sig.active])


@watcher_scenario([["unref timer", True], ["ref attribute", True], ["unref io", True], ["ref'd async", "sent"]])
def unreferenced_watchers_do_not_keep_the_loop_running(lib, trace):
    loop = lib.get_hub().loop
    loop.timer(10, ref=False).start(lambda: None)
    trace.append(["unref timer", lib.wait(timeout=5)])

    t = loop.timer(10)
    t.start(lambda: None)
    t.ref = False
    trace.append(["ref attribute", lib.wait(timeout=5)])
    t.stop()

    r, w = socket.socketpair()
    watcher = loop.io(r.fileno(), 1, ref=False)
    watcher.start(lambda: None)
    trace.append(["unref io", lib.wait(timeout=5)])
    watcher.stop()

    # a referenced async watcher keeps a plain wait() going until another thread sends
    a = loop.async_()
    a.start(lambda: (trace.append(["ref'd async", "sent"]), a.stop()))
    threading.Timer(0.05, a.send).start()
    lib.wait(timeout=5)
    r.close()
    w.close()


@watcher_scenario([["phases", ["prepare", "check", "idle"]], ["all stopped", [False, False, False]]])
def prepare_check_idle(lib, trace):
    loop = lib.get_hub().loop
    seen = set()
    made = [loop.prepare(), loop.check(), loop.idle()]
    for name, w in zip(["prepare", "check", "idle"], made):
        w.start(seen.add, name)
    wait_until(lib, lambda: len(seen) == 3)
    for w in made:
        w.stop()
    trace.append(["phases", sorted(seen, key=["prepare", "check", "idle"].index)])
    trace.append(["all stopped", [w.active for w in made]])


@watcher_scenario([["callback", True, True, False, [1]], ["stopped callback", False, [1]]])
def run_callback_handles(lib, trace):
    loop = lib.get_hub().loop
    calls = []
    cb = loop.run_callback(calls.append, 1)
    pending_before = bool(cb)
    pending_attr = cb.pending
    lib.sleep(0)
    trace.append(["callback", pending_before, pending_attr, bool(cb), calls])
    cancelled = loop.run_callback(calls.append, 2)
    cancelled.stop()
    lib.sleep(0)
    trace.append(["stopped callback", bool(cancelled), calls])


@watcher_scenario([["after error", "still running", False]], reports=("ZeroDivisionError",))
def raising_callback_is_reported_and_loop_goes_on(lib, trace):
    loop = lib.get_hub().loop
    bad = loop.timer(0)
    bad.start(lambda: 1 / 0)
    lib.sleep(0.02)
    ok = loop.timer(0.01)
    ok.start(lambda: trace.append(["after error", "still running", bad.active]))
    wait_until(lib, lambda: trace)


@watcher_scenario([["async from thread", 1, False], ["hub.wait", None]])
def async_send_from_threads(lib, trace):
    hub = lib.get_hub()
    a = hub.loop.async_()
    count = []
    a.start(lambda: count.append(1))
    threads = [threading.Thread(target=a.send) for _ in range(1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lib, lambda: count)
    trace.append(["async from thread", len(count), a.pending])
    a.stop()
    b = hub.loop.async_()
    threading.Timer(0.05, b.send).start()
    trace.append(["hub.wait", hub.wait(b)])


@watcher_scenario([["child", True, 3]])
def child_watcher_reports_exit_status(lib, trace):
    loop = lib.get_hub().loop
    pid, release = gated_child(3)
    w = loop.child(pid)
    done = []
    w.start(lambda: done.append(w.rstatus))
    release()
    wait_until(lib, lambda: done)
    w.stop()
    trace.append(["child", w.rpid == pid, os.waitstatus_to_exitcode(done[0])])


@watcher_scenario([["stat", True, True]])
def stat_watcher_sees_a_write(lib, trace, tmp=None):
    import tempfile

    loop = lib.get_hub().loop
    fd, path = tempfile.mkstemp()
    os.close(fd)
    try:
        w = loop.stat(path, 0.01)
        seen = []
        w.start(lambda: seen.append(1))
        lib.sleep(0.05)
        with open(path, "ab") as f:
            f.write(b"x")
        wait_until(lib, lambda: seen)
        trace.append(["stat", w.attr.st_size == 1, w.prev.st_size == 0])
        w.stop()
    finally:
        os.unlink(path)


@watcher_scenario([["context manager", True, False]])
def watcher_as_context_manager(lib, trace):
    loop = lib.get_hub().loop
    with loop.timer(10) as t:
        t.start(lambda: None)
        active = t.active
    trace.append(["context manager", active, t.active])


@watcher_scenario(
    [
        ["activecnt", 0, 1, 0],
        ["unref'd run returns at once", []],
        ["ref'd run fires", [1]],
        ["ref=False timer", 0, [1]],
        ["pending callback counts", 1, [1, 3]],
    ]
)
def loop_ref_unref_and_activecnt(lib, trace):
    loop = lib.config.loop(default=False)
    fired = []
    counts = [loop.activecnt]
    t = loop.timer(0.05)
    t.start(fired.append, 1)
    counts.append(loop.activecnt)
    loop.unref()  # the timer is still active, but no longer keeps run() going
    counts.append(loop.activecnt)
    trace.append(["activecnt", *counts])
    loop.run()
    trace.append(["unref'd run returns at once", list(fired)])
    loop.ref()
    loop.run()
    trace.append(["ref'd run fires", list(fired)])
    idle = loop.timer(10, ref=False)
    idle.start(fired.append, 2)
    trace.append(["ref=False timer", loop.activecnt, list(fired)])
    loop.run()  # returns: an unreferenced timer keeps nothing going
    idle.stop()
    loop.run_callback(fired.append, 3)
    count = loop.activecnt
    loop.run()
    trace.append(["pending callback counts", count, fired])
    loop.destroy()


@watcher_scenario([["priority", ["high", "middle", "low"]], ["pending", [True, False]]])
def priority_and_pending_within_one_iteration(lib, trace):
    loop = lib.config.loop(default=False)
    # Each run first holds the loop (a blocking callback) until all its timers are due, so that they expire in one
    # iteration on both libraries: ferrovent's deadlines come from a fresh clock reading at each start (a few
    # microseconds apart), and a wake-up that falls between them would expire them one by one.
    order = []
    timers = []
    for name, priority in (("low", -2), ("middle", 0), ("high", 2)):
        t = loop.timer(0.02)
        t.priority = priority
        t.start(order.append, name)
        timers.append(t)
    loop.run_callback(time.sleep, 0.05)
    loop.run()
    trace.append(["priority", order])
    seen = []
    first, second = loop.timer(0.01), loop.timer(0.01)
    first.start(lambda: seen.append(second.pending))  # expired too, its callback still to run
    second.start(lambda: seen.append(first.pending))  # its own callback has run
    loop.run_callback(time.sleep, 0.05)
    loop.run()
    trace.append(["pending", seen])
    loop.destroy()


@watcher_scenario([["idle by priority", ["idle 2", "timer", "idle 0"]]])
def idle_watcher_runs_when_nothing_of_its_priority_is_pending(lib, trace):
    """libev's rule: an idle watcher runs while the events pending are all of lower priority than its own."""
    loop = lib.config.loop(default=False)
    order = []
    timer = loop.timer(0.0)  # due in the first iteration, at priority 0
    timer.start(order.append, "timer")

    def once(watcher, name):
        order.append(name)
        watcher.stop()

    high, low = loop.idle(), loop.idle()
    high.priority = 2
    high.start(once, high, "idle 2")  # in the first iteration, ahead of the timer
    low.start(once, low, "idle 0")  # only in the next, when nothing is pending
    loop.run()
    trace.append(["idle by priority", order])
    loop.destroy()


@watcher_scenario([["io pending", True, False, 1]])
def io_watcher_pending_and_stopped_before_its_callback(lib, trace):
    loop = lib.config.loop(default=False)
    a, b = socket.socketpair()
    calls = []
    watchers = [loop.io(a.fileno(), 2), loop.io(b.fileno(), 2)]  # WRITE: both ready in the same iteration

    def on_ready(me, other):  # whichever runs first (libev's order among equal priorities is its own)
        calls.append(me)
        pending = other.pending  # collected in the same iteration, not yet run
        other.stop()  # so it is not called
        me.stop()
        trace.append(["io pending", pending, other.pending, len(calls)])

    watchers[0].start(on_ready, watchers[0], watchers[1])
    watchers[1].start(on_ready, watchers[1], watchers[0])
    loop.run()
    a.close()
    b.close()
    loop.destroy()


@watcher_scenario(
    [
        ["defaults", True, False, True],
        ["destroyed", False, True, "ValueError"],
        ["thread", False, True],
    ]
)
def default_and_destroyed_loops(lib, trace):
    hub_loop = lib.get_hub().loop
    own = lib.config.loop(default=False)
    trace.append(["defaults", hub_loop.default, own.default, lib.config.loop(default=True).default])
    own.destroy()
    try:
        own.run_callback(lambda: None)
        outcome = "no error"
    except ValueError:
        outcome = "ValueError"
    trace.append(["destroyed", own.default, not own.ptr, outcome])
    seen = []

    def in_thread():
        hub = lib.get_hub()
        seen.extend([hub.loop.default, hub.thread_ident == threading.get_ident()])
        hub.destroy()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    trace.append(["thread", *seen])


# --- running --------------------------------------------------------------------------------------------------------


@functools.cache
def gevent_watcher_result(name: str) -> Result:
    return run_script_scenario("gevent", Path(__file__), name)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", list(WATCHER_SCENARIOS))
def test_watcher_scenario(name, impl_name):
    expected = WATCHER_SCENARIOS[name]
    result = run_script_scenario(impl_name, Path(__file__), name)
    check_agreement(result, expected.expected, expected.reports, impl_name, lambda: gevent_watcher_result(name))


def main(name: str) -> None:
    import ferrovent as lib  # the implementation under test: the runner aliases gevent under this name

    trace: list = []
    WATCHER_SCENARIOS[name].func(lib, trace)
    print_trace(trace)


if __name__ == "__main__":
    main(sys.argv[1])
