"""benches/asyncio_loops.py: a measurement on ferrovent's asyncio loop runs in a fresh process and prints its figure
as a JSON line (the quick sizes, under a second each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ferrovent.asyncio", reason="ferrovent.asyncio does not import on this branch")

ASYNCIO_LOOPS = Path(__file__).resolve().parents[1] / "benches" / "asyncio_loops.py"


@pytest.mark.parametrize("bench", ["call_soon", "task_switch"])
def test_a_quick_measurement_on_ferrovents_loop(bench: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ASYNCIO_LOOPS), "measure", "ferrovent", bench, "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(values) == [bench]
    assert values[bench] > 0
