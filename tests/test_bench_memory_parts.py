"""benches/memory_parts.py: each measurement runs in a small size and gives a per-item figure with its parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benches" / "memory_parts.py"


def _measure(subject: str, kind: str, count: int, mode: str) -> dict:
    argv = [sys.executable, str(SCRIPT), "measure", subject, kind, str(count), mode]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["parked", "connection"])
def test_ferrovent_parts(kind: str) -> None:
    rss = _measure("ferrovent", kind, 300, "rss")
    traced = _measure("ferrovent", kind, 300, "traced")
    assert rss["kib"] > 0 and traced["kib"] > 0
    assert rss["saved C stack bytes"] > 0 and rss["object bytes"] > 0
    assert traced["sites"], "the largest allocation sites are listed"


@pytest.mark.parametrize("loop", ["asyncio", "ferrovent.asyncio"])
def test_asyncio_task(loop: str) -> None:
    measured = _measure(loop, "parked", 300, "traced")
    assert measured["kib"] > 0 and measured["coroutine bytes"] > 0


def test_ferrovent_asyncio_connection() -> None:
    measured = _measure("ferrovent.asyncio", "connection", 100, "rss")
    assert measured["kib"] > 0 and measured["transport bytes"] > 0
