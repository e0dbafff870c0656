"""benches/asyncio_loops.py: a measurement on ferrovent's asyncio loop runs in a fresh process and prints its figures
as a JSON line (the quick sizes, a few seconds each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ferrovent.asyncio", reason="ferrovent.asyncio does not import on this branch")

ASYNCIO_LOOPS = Path(__file__).resolve().parents[1] / "benches" / "asyncio_loops.py"


def _measure(bench: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, str(ASYNCIO_LOOPS), "measure", "ferrovent", bench, "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("bench", ["call_soon", "task_switch"])
def test_a_quick_measurement_on_ferrovents_loop(bench: str) -> None:
    values = _measure(bench)
    assert list(values) == [bench]
    assert values[bench] > 0


def test_an_echo_gives_its_rate_and_the_servers_cpu_per_round_trip() -> None:
    values = _measure("echo_protocol")
    assert list(values) == ["echo_protocol", "echo_protocol_cpu"]
    assert values["echo_protocol"] > 0
    # a round trip is a recv and a send on the server at least: a few microseconds, far under a millisecond
    assert 0 < values["echo_protocol_cpu"] < 1000


ASYNCIO_INSTRUCTIONS = ASYNCIO_LOOPS.with_name("asyncio_instructions.py")


@pytest.mark.parametrize(
    ("server", "exchanges"),
    # one exchange per connection: the first connection's is the warm-up the others wait for
    [("echo_protocol", 3), ("echo_streams", 3), ("aiohttp_hello", 3), ("aiohttp_hello", 1)],
)
def test_a_counted_server_run_serves_its_client_and_ends_when_the_client_does(server: str, exchanges: int) -> None:
    # what callgrind runs for benches/asyncio_instructions.py, here without it
    done = subprocess.run(
        [sys.executable, str(ASYNCIO_INSTRUCTIONS), "serve", "ferrovent", server, str(exchanges)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ASYNCIO_LOOPS.parent,
    )
    assert done.returncode == 0, done.stderr
