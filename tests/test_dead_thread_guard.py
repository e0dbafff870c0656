"""A thread's hub collected in another thread while greenlet tidies that thread's state (ferrovent/_dead_threads.py).

The child makes the race certain: a thread leaves its hub (never started) to the collector and ends while the main
thread's collection runs a weakref callback, so greenlet's pending clean-up of the dead thread runs inside that
collection. With greenlet's optional clean-up on, the dead thread's main greenlet is freed while the collected hub
still holds it, and the process crashes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.child import ROOT, run_child

THREADS = 10

SCENARIO = f"""
import gc, threading, time, weakref
from greenlet import _greenlet
from ferrovent.hub import get_hub, set_hub

def spin_until_ended(thread):
    # Python code inside the collection: the pending clean-up of the ended thread runs here
    deadline = time.monotonic() + 5
    while thread.is_alive() and time.monotonic() < deadline:
        pass
    deadline = time.monotonic() + 0.1  # and the clean-up, queued by the thread's last C++ destructor
    while time.monotonic() < deadline:
        pass
    raced.append(not thread.is_alive())

raced, refs = [], []
for _ in range({THREADS}):
    made = threading.Event()

    def leave_hub_to_collector():
        hub = get_hub()
        refs.append(weakref.ref(hub, lambda ref, thread=threading.current_thread(): spin_until_ended(thread)))
        set_hub(None)  # the hub and its loop refer to each other: only a collection frees them
        del hub
        made.set()
        time.sleep(0.005)  # ends while the main thread collects

    thread = threading.Thread(target=leave_hub_to_collector)
    thread.start()
    made.wait()
    gc.collect()
    thread.join()
    refs.clear()
print("collected while ending:", sum(raced), "of", len(raced))
print("optional clean-up:", _greenlet.get_clocks_used_doing_optional_cleanup())
"""


def test_a_hub_collected_while_its_thread_is_tidied_does_not_crash():
    out = run_child(SCENARIO, timeout=60).stdout
    assert f"collected while ending: {THREADS} of {THREADS}" in out, out
    assert "optional clean-up: None" in out, out


def test_without_the_guard_the_same_race_crashes():
    """The scenario does reach the hazard: with greenlet's default kept, the child dies of it. (If a greenlet
    release stops freeing a referenced main greenlet, this fails, and the guard can be reconsidered.)"""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCENARIO)],
        cwd=ROOT,
        env={**os.environ, "FERROVENT_DEAD_THREAD_GUARD": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode < 0, f"child exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
