"""``python -m ferrovent info``: versions, poller, CPython-internals optimisations, monkey-patch state and the hub's
counters; and `ferrovent._info.info_lines` inside a running, patched program."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import ferrovent
import greenlet
import pytest

from tests.child import ROOT, run_child


def _info(*args: str, env: dict | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "ferrovent", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_info_prints_versions_poller_and_counters():
    out = _info("info")
    assert f"ferrovent {ferrovent.__version__}" in out
    assert f"greenlet {greenlet.__version__}" in out
    assert platform.python_version() in out
    expected_poller = {"linux": "epoll", "darwin": "kqueue"}.get(sys.platform)
    if expected_poller:
        assert f"poller: {expected_poller}" in out
    assert "monkey-patched: nothing patched" in out
    for counter in ("greenlets parked:", "fds registered:", "timers pending:", "loop iterations:"):
        assert counter in out
    assert "longest block seen: not watched" in out


@pytest.mark.skipif(not (3, 11) <= sys.version_info[:2] <= (3, 13), reason="the tricks' CPython allow-list")
def test_info_shows_the_cpython_optimisation_switches():
    on = _info("info", env={"FERROVENT_SMALL_STACKS": "1", "FERROVENT_ARENA_CACHE": "1"})
    assert "small frame stacks: on" in on and "arena cache:        on" in on
    off = _info("info", env={"FERROVENT_SMALL_STACKS": "0", "FERROVENT_ARENA_CACHE": "0"})
    assert "small frame stacks: off" in off and "arena cache:        off" in off


def test_info_without_a_command_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "ferrovent"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "info" in proc.stderr


def test_info_lines_in_a_patched_program_show_the_patches_and_live_counters():
    code = """
        from ferrovent import monkey
        monkey.patch_all()
        import socket
        import ferrovent
        from ferrovent import config
        from ferrovent._info import info_lines
        config.monitor_thread = True
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        accepting = ferrovent.spawn(listener.accept)
        sleeping = ferrovent.spawn(ferrovent.sleep, 30)
        ferrovent.sleep(0.01)
        print("\\n".join(info_lines()))
        accepting.kill(); sleeping.kill()
    """
    out = run_child(code).stdout
    patched = next(line for line in out.splitlines() if line.startswith("monkey-patched:"))
    assert "socket" in patched and "threading" in patched and "time" in patched
    counters = dict(line.strip().split(":", 1) for line in out.splitlines() if line.startswith("  ") and ":" in line)
    assert int(counters["greenlets parked"]) >= 2
    assert int(counters["fds registered"]) >= 1
    assert int(counters["timers pending"]) >= 1
    assert int(counters["loop iterations"]) >= 1
    assert counters["longest block seen"].strip().startswith("at least")
