"""How run.py (gevent vs ferrovent) and asyncio_loops.py (the asyncio loops) take their measurements: in rounds
that alternate which subject goes first, each measurement in a fresh interpreter that prints its figures as JSON.
A measurement that fails or hangs is reported on stderr and gives no figures; the run goes on without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping

TIMEOUT_SECONDS = 120  # per measurement


def interleaved(subjects: list[str], rounds: int, label: str = "round") -> Iterator[list[str]]:
    """Per round, the order to measure `subjects` in: as given, then reversed, and so on (announced on stderr)."""
    for round_index in range(rounds):
        print(f"{label} {round_index + 1} of {rounds}", file=sys.stderr)
        yield subjects if round_index % 2 == 0 else subjects[::-1]


def run_measurement(command: list[str], what: str) -> dict | None:
    """The JSON object on the last line of `command`'s output, or None once said on stderr that it timed out or
    failed; `what` names the measurement there ("sleep0 on gevent")."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"  {what}: timed out after {TIMEOUT_SECONDS} s", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"  {what}: exit status {done.returncode}\n{done.stderr.rstrip()}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_figures(values: Mapping[str, float], subject: str, units: Mapping[str, str]) -> None:
    """One stderr line per figure of a measurement on `subject`, with its unit."""
    for name, value in values.items():
        print(f"  {name} on {subject}: {value:,.2f} {units.get(name, '')}", file=sys.stderr)
