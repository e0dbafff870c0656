"""Run a snippet of Python in a fresh interpreter: for tests whose effects are process-wide (monkey-patching,
signals, fork, counting the process's OS threads)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str, *args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    """Runs ``code`` (dedented) as ``python -c`` from the repository root; fails the test if it exits non-zero."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"child exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc
