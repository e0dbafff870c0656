"""The loop's watcher API on ferrovent: what stock gevent cannot be compared on (it aborts, or it is ours only).

The behaviours both share are in tests/compat/test_watchers_compat.py, run on both implementations.
"""

from __future__ import annotations

import gc
import io
import os
import socket
import subprocess
import sys
import textwrap
import threading

import ferrovent
import pytest
from ferrovent import core
from ferrovent.hub import get_hub
from greenlet import getcurrent

from tests.forking import gated_child


def turn_until(condition, limit: float = 5.0) -> bool:
    for _ in range(int(limit / 0.005)):
        if condition():
            return True
        ferrovent.sleep(0.005)
    return condition()


def test_closing_the_fd_of_an_active_io_watcher_calls_it_once_with_error_and_stops_it():
    loop = get_hub().loop
    r, w = socket.socketpair()
    events = []
    watcher = loop.io(r.fileno(), core.READ)
    watcher.start(events.append, pass_events=True)
    r.close()  # behind the watcher's back (gevent's libev aborts the process here)
    assert turn_until(lambda: events)
    ferrovent.sleep(0.02)
    assert events == [core.READ | core.WRITE | core.ERROR]
    assert not watcher.active
    # a new fd that takes the number over is registered afresh: a blocked poll wakes for it
    old_number = watcher.fd
    r2, w2 = socket.socketpair()
    assert old_number in (r2.fileno(), w2.fileno())
    readable = r2 if r2.fileno() == old_number else w2
    other = w2 if readable is r2 else r2
    threading.Timer(0.05, other.send, (b"x",)).start()
    assert loop.wait_read(readable.fileno(), timeout=5)
    seen = []
    again = loop.io(readable.fileno(), core.READ)
    again.start(seen.append, "ready")
    assert turn_until(lambda: seen)
    again.stop()
    for s in (w, r2, w2):
        s.close()


def test_greenlet_waits_on_a_watched_fd_do_not_end_its_registration():
    """A greenlet's wait_read ends its transient registration, unless an io watcher still watches the fd."""
    loop = get_hub().loop
    r, w = socket.socketpair()
    seen = []
    watcher = loop.io(r.fileno(), core.READ)
    w.send(b"1")
    ferrovent.spawn(loop.wait_read, r.fileno()).join(timeout=2)
    r.recv(10)
    watcher.start(lambda: (seen.append(r.recv(10)), watcher.stop()))
    ferrovent.sleep(0.02)
    assert seen == []
    threading.Timer(0.05, w.send, (b"2",)).start()  # arrives while the hub blocks in its poll
    assert turn_until(lambda: seen)
    assert seen == [b"2"]
    r.close()
    w.close()


def test_callbacks_run_in_the_hub_and_errors_name_the_watcher(monkeypatch):
    hub = get_hub()
    stream = io.StringIO()
    monkeypatch.setattr(hub, "exception_stream", stream)
    where = []
    t = hub.loop.timer(0)
    t.start(lambda: where.append(getcurrent() is hub))
    bad = hub.loop.timer(0)

    def fail():
        raise ValueError("from a watcher")

    bad.start(fail)
    ferrovent.sleep(0.02)
    assert where == [True]
    err = stream.getvalue()
    assert "ValueError: from a watcher" in err
    assert "<timer at 0x" in err and "failed with ValueError" in err


def test_run_callback_threadsafe_from_many_threads():
    loop = get_hub().loop
    got = []
    handles = []

    def send(i):
        handles.append(loop.run_callback_threadsafe(got.append, i))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert turn_until(lambda: len(got) == 20)
    assert sorted(got) == list(range(20))
    assert not any(handles)


def test_async_sends_coalesce_and_wake_a_blocked_loop():
    loop = get_hub().loop
    calls = []
    a = loop.async_()
    a.start(calls.append, 1)
    barrier = threading.Barrier(4)

    def send():
        barrier.wait()
        for _ in range(100):
            a.send()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert turn_until(lambda: calls)
    ferrovent.sleep(0.02)
    assert 1 <= len(calls) <= 400
    a.stop()


def test_a_loop_of_its_own():
    lp = core.loop(default=False)
    assert not lp.default and get_hub().loop.default
    log = []
    lp.run_callback(log.append, 1)
    lp.run()
    assert log == [1]
    t = lp.timer(0.02)
    t.start(log.append, 2)
    lp.run()  # returns once the timer has run: nothing referenced is left
    assert log == [1, 2]
    lp.destroy()


def test_run_from_a_greenlet_runs_the_hub_until_idle():
    loop = get_hub().loop
    count = []
    loop.run_callback(count.append, 1)
    loop.run()
    assert count == [1]
    loop.run_callback(count.append, 2)
    loop.run(once=True)
    assert count == [1, 2]


def test_loop_api_shape():
    loop = get_hub().loop
    assert loop.backend == "default" and core.supported_backends() == ["default"] and loop.backend_int == 0
    assert loop.fileno() is None
    assert 0 < loop.approx_timer_resolution <= 0.01
    assert getattr(loop, "async") == loop.async_
    loop.update_now()
    assert loop.now() >= 0
    with pytest.raises(ValueError):
        loop.timer(1, repeat=-1)
    with pytest.raises(ValueError):
        loop.io(-1, core.READ)
    with pytest.raises(ValueError):
        loop.io(0, 4)
    with pytest.raises(ValueError):
        loop.signal(0)
    with pytest.raises(TypeError):
        loop.timer(1).start(None)
    p = loop.prepare(priority=core.MAXPRI)
    assert p.priority == core.MAXPRI and p.ref and not p.pending


def test_interfaces_are_provided():
    pytest.importorskip("zope.interface")
    from ferrovent._interfaces import ICallback, ILoop, IWatcher
    from zope.interface.verify import verifyObject

    loop = get_hub().loop
    verifyObject(ILoop, loop)
    verifyObject(ILoop, core.loop(default=False))
    for w in (loop.io(0, core.READ), loop.timer(1), loop.idle(), loop.async_(), loop.stat(".")):
        verifyObject(IWatcher, w)
    cb = loop.run_callback(lambda: None)
    verifyObject(ICallback, cb)
    verifyObject(ICallback, loop.run_callback_threadsafe(lambda: None))
    ferrovent.sleep(0)


def test_stock_gevents_interfaces_are_met():
    """gevent's own ILoop/IWatcher/ICallback (the specification), checked by signature against ours."""
    pytest.importorskip("zope.interface")
    stock = pytest.importorskip("gevent._interfaces")
    from zope.interface.verify import verifyObject

    loop = get_hub().loop
    verifyObject(stock.ILoop, loop, tentative=True)
    for w in (loop.io(0, core.READ), loop.timer(1), loop.prepare(), loop.signal(2), loop.fork(), loop.child(1)):
        verifyObject(stock.IWatcher, w, tentative=True)
    verifyObject(stock.ICallback, loop.run_callback(lambda: None), tentative=True)
    ferrovent.sleep(0)


def test_fork_watcher_runs_in_the_child_only_and_is_pending_there_until_it_has_run():
    script = textwrap.dedent(
        """
        import os, ferrovent
        from ferrovent.hub import get_hub
        ran = []
        w = get_hub().loop.fork(ref=False)
        w.start(ran.append, "child")
        pid = os.fork()
        if pid == 0:
            before = (w.pending, list(ran))
            ferrovent.sleep(0.01)
            os._exit(0 if before == (True, []) and (w.pending, ran) == (False, ["child"]) else 1)
        ferrovent.sleep(0.01)
        _, status = os.waitpid(pid, 0)
        print(ran, os.waitstatus_to_exitcode(status))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[] 0", out.stderr


def test_gevent_core_and_interfaces_under_the_alias():
    script = textwrap.dedent(
        """
        import ferrovent
        ferrovent.install_as_gevent()
        import gevent, gevent.core, gevent._interfaces
        from gevent import core
        loop = gevent.get_hub().loop
        assert core.loop.__module__ == "ferrovent.core"
        log = []
        w = loop.io(0, core.READ | core.WRITE)
        t = loop.timer(0.01)
        t.start(log.append, "timer")
        gevent.sleep(0.05)
        print(log, gevent._interfaces.ILoop.providedBy(loop))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "['timer'] True", out.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_watcher_for_any_child():
    loop = get_hub().loop
    pid = os.fork()
    if pid == 0:
        os._exit(5)
    w = loop.child(0)
    seen = []
    w.start(lambda: seen.append((w.rpid, os.waitstatus_to_exitcode(w.rstatus))))
    assert turn_until(lambda: seen)
    w.stop()
    assert seen == [(pid, 5)]


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pending is known through a pidfd")
def test_child_watcher_is_pending_from_the_exit_to_its_callback():
    loop = get_hub().loop
    pid, release = gated_child(0)
    w = loop.child(pid)
    done = []
    w.start(done.append, "exited")
    observed = []
    check = loop.check()
    check.priority = core.MAXPRI  # runs before the callbacks of the iteration that sees the exit
    check.start(lambda: observed.append((w.pending, list(done))))
    release()
    assert turn_until(lambda: done)
    check.stop()
    assert (True, []) in observed and not w.pending


def test_a_finished_threads_hub_with_pending_callbacks_and_watchers_is_collected():
    """run_callback's handle is not tracked by the garbage collector: the loop's traversal must show what it holds."""
    import gc
    import weakref

    refs = []

    def body():
        hub = get_hub()

        class Holder:
            pass

        holder = Holder()
        holder.hub = hub
        hub.loop.run_callback(lambda: holder)  # pending, and its closure leads back to the hub
        hub.loop.timer(10).start(lambda: holder)  # an active watcher too
        refs.extend([weakref.ref(hub), weakref.ref(holder)])

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    for _ in range(3):
        gc.collect()
    assert [r() for r in refs] == [None, None]


def test_the_events_placeholder_is_replaced_by_the_ready_events():
    loop = get_hub().loop
    r, w = socket.socketpair()
    got = []
    watcher = loop.io(w.fileno(), core.WRITE)
    watcher.start(lambda events, tag: (got.append((events, tag)), watcher.stop()), core.EVENTS, "tag")
    assert turn_until(lambda: got)
    assert got == [(core.WRITE, "tag")]
    r.close()
    w.close()


def test_destroying_the_hubs_loop_stops_it_until_the_hub_is_replaced():
    """As with gevent: a destroyed loop runs nothing more and refuses to be used; destroying the hub then gives
    the thread a new hub with a new default loop."""
    hub = get_hub()
    loop = hub.loop
    assert loop.default and loop.ptr
    loop.destroy()
    assert not loop.default and loop.ptr is None and loop.destroyed
    with pytest.raises(ValueError, match="destroyed loop"):
        ferrovent.sleep(0.01)
    with pytest.raises(ValueError, match="destroyed loop"):
        loop.timer(0.01).start(lambda: None)
    with pytest.raises(ValueError, match="destroyed loop"):
        loop.run_callback(lambda: None)
    loop.destroy()  # harmless a second time
    hub.destroy()
    fresh = get_hub().loop
    assert fresh is not loop and fresh.default and fresh.ptr != loop.ptr
    g = ferrovent.spawn(ferrovent.sleep, 0.01)
    assert g.join(timeout=2) is None and g.dead


def test_core_flags_mean_the_platforms_backend_only():
    backend = "epoll" if sys.platform.startswith("linux") else "kqueue"
    assert core._flags_to_int(None) == 0 and core._flags_to_int(5) == 5
    assert core._flags_to_int(["kqueue", "SELECT"]) == core.BACKEND_KQUEUE | core.BACKEND_SELECT
    assert core._flags_to_int("epoll, forkcheck") == core.BACKEND_EPOLL | core.FORKCHECK
    assert core._flags_to_list(core.BACKEND_PORT | core.BACKEND_POLL) == ["port", "poll"]
    assert core._events_to_str(core.READ | core.WRITE) == "READ|WRITE"
    with pytest.raises(ValueError):
        core._flags_to_int(["epoll", "blabla"])
    with pytest.raises(TypeError):
        core.loop(object(), default=False)
    other = "select" if backend != "select" else "poll"
    with pytest.raises(ValueError, match="Unsupported backend"):
        core.loop(other, default=False)
    own = core.loop([backend, "noenv", "forkcheck"], default=False)  # the platform's poller, flags that change nothing
    assert own.backend == "default"
    own.destroy()


def test_config_lists_gevents_c_loops_as_unavailable():
    from ferrovent._config import Loop

    options = Loop().get_options()
    assert options["ferrovent"] is core.loop
    for name in ("libev-cext", "libev-cffi", "libuv-cffi"):
        assert isinstance(options[name], ImportError)


def test_destroying_a_loop_of_its_own_closes_its_poller():
    def open_fds():
        return set(os.listdir("/proc/self/fd"))

    gc.collect()  # earlier tests' sockets closed now, not while this one counts
    before = open_fds()
    lp = core.loop(default=False)
    its_own = open_fds() - before
    assert its_own  # the poller and its waker
    t = lp.timer(0.01)
    t.start(lambda: None)
    lp.run()
    lp.destroy()
    assert not its_own & open_fds() and lp.destroyed and lp.ptr is None
    with pytest.raises(ValueError, match="destroyed loop"):
        lp.run()


def test_an_unrefd_loop_lets_the_hub_run_out_with_a_watcher_active():
    loop = get_hub().loop
    t = loop.timer(30)
    t.start(lambda: None)
    loop.unref()
    try:
        assert get_hub().join(timeout=5) is True  # the active timer no longer keeps the hub's run() going
    finally:
        loop.ref()
        t.stop()


def test_io_and_check_watchers_run_by_priority():
    loop = get_hub().loop
    a, b = socket.socketpair()
    order = []
    watchers = [loop.io(a.fileno(), core.WRITE, priority=-1), loop.check(priority=2), loop.io(b.fileno(), core.WRITE)]
    for name, w in zip(("io low", "check high", "io zero"), watchers):
        w.start(order.append, name)
    try:
        assert turn_until(lambda: len(order) >= 3)
        assert order[:3] == ["check high", "io zero", "io low"]
    finally:
        for w in watchers:
            w.close()
        a.close()
        b.close()


def test_hub_loops_default_and_handover():
    from ferrovent import _hub_local
    from ferrovent.hub import Hub

    assert get_hub().loop.default and get_hub().thread_ident == threading.get_ident()
    other = Hub(default=False)
    assert not other.loop.default and get_hub().loop is not other.loop
    loop = other.loop
    other.destroy(destroy_loop=False)
    assert not loop.destroyed and _hub_local.get_loop() is loop  # kept for the thread's next hub
    with pytest.raises(TypeError):
        Hub(loop=get_hub().loop)
    successor = Hub()
    assert successor.loop is loop and _hub_local.get_loop() is None
    successor.destroy()  # not the default loop: destroyed with its hub by default
    assert loop.destroyed and _hub_local.get_loop() is None
    ferrovent.sleep(0.001)  # the thread's hub is untouched
