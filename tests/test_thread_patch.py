"""ferrovent.thread (``_thread`` on greenlets), ferrovent.threading and ``monkey.patch_thread``.

The module-level functions are tested here, in this process, without patching anything. What patching does to the
stdlib (process-wide) is tested in fresh interpreters.
"""

from __future__ import annotations

import _thread as native_thread
import json
import sys

import ferrovent
import pytest
from ferrovent import thread as green_thread
from ferrovent.event import Event
from greenlet import getcurrent

from tests.child import run_child

pytestmark = pytest.mark.timeout(30)


# -- ferrovent.thread, unpatched ------------------------------------------------------------------------------


def test_get_ident_is_the_greenlet_identity():
    seen = []
    greenlets = [ferrovent.spawn(lambda: seen.append(green_thread.get_ident())) for _ in range(3)]
    ferrovent.joinall(greenlets)
    assert seen == [id(g) for g in greenlets]
    assert green_thread.get_ident() == id(getcurrent())
    assert green_thread.get_ident(greenlets[0]) == id(greenlets[0])


def test_start_new_thread_runs_in_a_greenlet_with_args_and_kwargs():
    ran = []
    ident = green_thread.start_new_thread(
        lambda a, b=None: ran.append((a, b, green_thread.get_ident())), (1,), {"b": 2}
    )
    assert ran == []  # started, not run inline
    ferrovent.sleep(0)
    assert ran == [(1, 2, ident)]


@pytest.mark.parametrize(
    "args, message",
    [
        (("not callable", ()), "first arg must be callable"),
        ((print, [1]), "2nd arg must be a tuple"),
        ((print, (), [1]), "optional 3rd arg must be a dictionary"),
    ],
)
def test_start_new_thread_checks_its_arguments_as_the_stdlib_does(args, message):
    with pytest.raises(TypeError, match=message):
        green_thread.start_new_thread(*args)
    with pytest.raises(TypeError):
        native_thread.start_new_thread(*args)


def test_systemexit_and_exit_end_only_the_thread_and_count_tracks_running_threads():
    before = green_thread._count()
    release = Event()
    green_thread.start_new_thread(release.wait, ())
    green_thread.start_new_thread(sys.exit, (3,))
    green_thread.start_new_thread(green_thread.exit, ())
    ferrovent.sleep(0)
    assert green_thread._count() == before + 1  # the other two ended quietly; this process is still here
    release.set()
    ferrovent.sleep(0)
    assert green_thread._count() == before


def test_lock_type_behaves_as_the_native_lock():
    lock = green_thread.allocate_lock()
    assert isinstance(lock, green_thread.LockType)
    assert lock.acquire() and lock.locked()
    assert lock.acquire(timeout=0.01) is False
    assert lock.acquire(False) is False
    with pytest.raises(ValueError):
        lock.acquire(False, 1)
    with pytest.raises(OverflowError):
        lock.acquire(True, green_thread.TIMEOUT_MAX * 2)
    lock.release()
    with pytest.raises(green_thread.error):
        lock.release()
    with lock:
        assert lock._is_owned()
    assert not lock._is_owned()


def test_failed_non_blocking_acquire_lets_the_holder_run():
    lock = green_thread.allocate_lock()

    def holder():
        with lock:
            ferrovent.sleep(0)

    ferrovent.spawn(holder)
    ferrovent.sleep(0)
    spins = 0
    while not lock.acquire(False):  # a spin lock: it would never end if a failed try did not yield
        spins += 1
        assert spins < 100
    lock.release()


def test_set_sentinel_is_released_when_its_greenlet_finishes():
    sentinels = []
    resume = Event()

    def thread_body():
        sentinel = green_thread._set_sentinel()
        sentinel.acquire()
        sentinels.append(sentinel)
        resume.wait()

    g = ferrovent.spawn(thread_body)
    ferrovent.sleep(0)
    assert sentinels[0].locked()
    resume.set()
    assert sentinels[0].acquire(timeout=5)  # what Thread.join() does
    assert g.dead
    main_sentinel = green_thread._set_sentinel()
    main_sentinel.acquire()
    ferrovent.sleep(0.01)
    assert main_sentinel.locked()  # the main greenlet never finishes


def test_stack_size_is_checked_and_recorded_but_real_threads_keep_theirs():
    native_before = native_thread.stack_size()
    previous = green_thread.stack_size(1 << 20)
    try:
        assert green_thread.stack_size() == 1 << 20
        with pytest.raises(ValueError):
            green_thread.stack_size(1000)
        assert native_thread.stack_size() == native_before
    finally:
        green_thread.stack_size(previous)


def test_joinable_thread_handles():
    release = Event()
    handle = green_thread.start_joinable_thread(release.wait, daemon=False)
    assert handle.ident is not None and not handle.is_done()
    handle.join(0.01)
    assert not handle.is_done()
    with pytest.raises(RuntimeError):
        green_thread.start_joinable_thread(print, handle=handle)
    with pytest.raises(RuntimeError, match="not started"):
        green_thread._ThreadHandle().join()
    ferrovent.spawn_later(0.01, release.set)
    green_thread._shutdown()  # waits for the non-daemon thread
    assert handle.is_done()
    handle.join()
    own = green_thread._make_thread_handle(green_thread.get_ident())
    assert own.ident == green_thread.get_ident()
    with pytest.raises(RuntimeError, match="current thread"):
        own.join()
    assert green_thread._get_main_thread_ident() == id(getcurrent())


# -- patch_thread, in fresh interpreters ----------------------------------------------------------------------


def quiet_child(code: str, **kwargs) -> str:
    """Runs ``code`` in a fresh interpreter; returns its stdout. Nothing may be written to stderr."""
    proc = run_child(code, **kwargs)
    assert proc.stderr == "", proc.stderr
    return proc.stdout


PATCHED_NAMES = """
import _thread, json, threading, _threading_local
from ferrovent import monkey
import ferrovent.event, ferrovent.local, ferrovent.lock, ferrovent.thread
native_lock = threading.Lock()
monkey.patch_thread()
first = {
    "_thread": _thread.start_new_thread is ferrovent.thread.start_new_thread
    and _thread.allocate_lock is ferrovent.thread.LockType and _thread.get_ident is ferrovent.thread.get_ident,
    "Lock": threading.Lock is ferrovent.thread.LockType and type(threading.Lock()) is ferrovent.thread.LockType,
    "RLock": type(threading.RLock()) is ferrovent.lock.RLock,
    "Event": threading.Event is ferrovent.event.Event,
    "local": threading.local is ferrovent.local.local and _threading_local.local is ferrovent.local.local
    and _thread._local is ferrovent.local.local,
    "get_ident": threading.get_ident() == id(__import__("greenlet").getcurrent()),
    "main": threading.current_thread() is threading.main_thread()
    and threading.main_thread().ident == threading.get_ident(),
    "queries": monkey.is_module_patched("threading") and monkey.is_module_patched("_thread"),
    "originals": monkey.get_original("_thread", "start_new_thread") is not _thread.start_new_thread
    and monkey.get_original("threading", "Event").__module__ == "threading",
}
native_lock.acquire(); native_lock.release()
monkey.patch_thread()  # again: changes nothing
print(json.dumps({**first, "again": threading.current_thread() is threading.main_thread()
    and threading.Lock is ferrovent.thread.LockType, "enumerate": len(threading.enumerate())}))
"""


def test_patch_thread_replaces_the_names_and_keeps_the_main_thread():
    report = json.loads(quiet_child(PATCHED_NAMES))
    assert report == {**{name: True for name in report}, "enumerate": 1}, report


def test_event_false_keeps_the_stdlib_event_which_still_cooperates():
    out = quiet_child("""
        from ferrovent import monkey
        monkey.patch_thread(Event=False)
        import threading, time
        monkey.patch_time()
        assert threading.Event.__module__ == "threading"
        event = threading.Event()
        threading.Timer(0.05, event.set).start()
        print(event.wait(5), threading.Event().wait(0.01))
    """)
    assert out == "True False\n"


def test_greenlets_join_the_main_thread_and_exit_waits_for_non_daemon_threads():
    out = quiet_child("""
        from ferrovent import monkey
        monkey.patch_thread(); monkey.patch_time()
        import threading, time

        def joiner():
            threading.main_thread().join()
            print("main joined")

        def late():
            time.sleep(0.05)
            print("non-daemon done")

        threading.Thread(target=joiner, daemon=True).start()
        threading.Thread(target=late).start()
        print("main ends")
    """)
    assert out == "main ends\nmain joined\nnon-daemon done\n"


def test_exit_does_not_hang_on_a_thread_that_can_never_finish():
    out = quiet_child(
        """
        from ferrovent import monkey
        monkey.patch_thread()
        import threading
        threading.Thread(target=threading.Event().wait).start()  # non-daemon, never woken
        print("main ends")
    """,
        timeout=10,
    )
    assert out == "main ends\n"


def test_dummy_threads_are_forgotten_when_their_greenlets_end():
    out = quiet_child("""
        from ferrovent import monkey
        monkey.patch_thread()
        import gc, threading, ferrovent
        names = set()
        ferrovent.joinall([ferrovent.spawn(lambda: names.add(threading.current_thread().name)) for _ in range(200)])
        ferrovent.sleep(0)
        raw = [ferrovent.spawn_raw(lambda: names.add(threading.current_thread().name)) for _ in range(10)]
        ferrovent.sleep(0)
        del raw
        gc.collect()
        print(len(names), len(threading._active), threading.active_count())
    """)
    assert out == "210 1 1\n"


def test_existing_locks_module_import_lock_logging_and_futures():
    out = quiet_child("""
        import logging, sys, os, tempfile
        handler = logging.StreamHandler(sys.stdout)
        logging.getLogger().addHandler(handler)
        native_type = type(handler.lock)
        folder = tempfile.mkdtemp()
        with open(os.path.join(folder, "patching_module.py"), "w") as f:
            f.write("from ferrovent import monkey\\nmonkey.patch_thread()\\n")
        sys.path.insert(0, folder)
        import patching_module  # patches while its own import lock is held: the release must still work
        import concurrent.futures.thread as futures_thread, threading, ferrovent.lock, ferrovent.thread
        print(type(logging._lock) is ferrovent.lock.RLock, type(handler.lock) is ferrovent.lock.RLock,
              native_type is not ferrovent.lock.RLock,
              type(futures_thread._global_shutdown_lock) is ferrovent.thread.LockType)
        import json  # the import machinery still works after the hand-over
    """)
    assert out == "True True True True\n"


def test_patching_outside_the_main_thread_warns_and_exits_cleanly():
    out = quiet_child(
        """
        import threading, warnings
        from ferrovent import monkey
        caught = []

        def patch():
            with warnings.catch_warnings(record=True) as found:
                warnings.simplefilter("always")
                monkey.patch_thread()
            caught.extend(str(w.message) for w in found)

        worker = threading.Thread(target=patch)
        worker.start()
        worker.join()
        print(any("outside the main thread" in message for message in caught))
    """,
        timeout=10,
    )
    assert out == "True\n"


def test_threads_running_before_patching_stay_real_and_greenlets_join_them_without_blocking():
    out = quiet_child("""
        import threading, time
        release = threading.Event()
        released = []
        # a real OS thread, started before patching; it ends when released, or gives up after 10 s
        real = threading.Thread(target=lambda: released.append(release.wait(10)))
        real.start()
        from ferrovent import monkey
        monkey.patch_all()
        ticks = []

        def ticker():  # a greenlet: it can only tick, and release the thread, while the join below lets the loop run
            while real.is_alive():
                ticks.append(time.sleep(0.005))
                if len(ticks) == 6:
                    release.set()

        threading.Thread(target=ticker).start()
        real.join(0.01)
        print(real.is_alive())
        real.join()
        print(real.is_alive(), released == [True], real in threading.enumerate())
    """)
    assert out == "True\nFalse True False\n"


def test_fork_from_a_dummy_thread_gives_the_child_a_real_main_thread():
    out = quiet_child("""
        from ferrovent import monkey
        monkey.patch_all()
        import os, threading, time, ferrovent

        def other():
            time.sleep(0.05)

        def fork_here():
            threading.current_thread()  # this greenlet now has a dummy thread
            worker = threading.Thread(target=other)
            worker.start()
            pid = os.fork()
            if pid == 0:
                main = threading.main_thread()
                good = type(main).__name__ == "_MainThread" and main is threading.current_thread()
                time.sleep(0.1)  # the copied "other" greenlet finishes here, in the child, quietly
                threading._shutdown()
                os._exit(0 if good else 1)
            worker.join()
            return os.waitpid(pid, 0)[1]

        status = ferrovent.spawn(fork_here).get()
        print(os.waitstatus_to_exitcode(status))
    """)
    assert out == "0\n"
