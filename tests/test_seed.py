"""The seed tutorial (examples/seed_tutorial.py), run as a user runs it, on ferrovent and on stock gevent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat.runner import ROOT, run_script, script_command

SEED = ROOT / "examples" / "seed_tutorial.py"
LINE = re.compile(r"<Greenlet at (0x[0-9a-f]+): f\((\d+)\)> (\d+)")


def seed_shape(stdout: str) -> list[str]:
    """The output with each greenlet's address replaced by g1, g2, g3 in order of first appearance."""
    labels: dict[str, str] = {}
    shape = []
    for line in stdout.splitlines():
        match = LINE.fullmatch(line)
        assert match, f"unexpected line {line!r}"
        address, count, i = match.groups()
        label = labels.setdefault(address, f"g{len(labels) + 1}")
        shape.append(f"{label}: f({count}) {i}")
    return shape


def expected_shape(count: int, round_robin: bool) -> list[str]:
    if round_robin:
        turns = [(g, i) for i in range(count) for g in (1, 2, 3)]
    else:
        turns = [(g, i) for g in (1, 2, 3) for i in range(count)]
    return [f"g{g}: f({count}) {i}" for g, i in turns]


def seed_output(impl: str, *args: str) -> str:
    proc = run_script(impl, SEED, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, count, round_robin",
    [((), 5, False), (("--yield",), 5, True), (("2",), 2, False), (("4", "--yield"), 4, True)],
    ids=["default", "yield", "count", "count-yield"],
)
def test_seed_output(impl_name, args, count, round_robin):
    shape = seed_shape(seed_output(impl_name, *args))
    assert shape == expected_shape(count, round_robin)
    if impl_name != "gevent":
        assert shape == seed_shape(seed_output("gevent", *args))


def proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.mark.timeout(120)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Threads: from /proc/<pid>/status")
def test_seed_long_run_uses_one_os_thread(impl_name, tmp_path):
    count = 100_000  # 300,000 lines, about 13 MB: hundreds of samples as the pipe fills
    with open(tmp_path / "stderr", "w+") as stderr:
        proc = subprocess.Popen(
            script_command(impl_name, SEED, str(count)), cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr
        )
        lines, threads = 0, []
        try:
            # The child blocks once the pipe is full, so it is alive and mid-run whenever we sample after a read.
            while chunk := os.read(proc.stdout.fileno(), 1 << 16):
                lines += chunk.count(b"\n")
                status = proc_status(proc.pid)
                if not status["State"].startswith("Z"):
                    threads.append(int(status["Threads"]))
            assert proc.wait(timeout=30) == 0
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        assert stderr.read() == ""
    assert lines == 3 * count
    assert len(threads) >= 10, "too few samples while the seed ran"
    assert set(threads) == {1}, f"Threads: values seen while running: {sorted(set(threads))}"
