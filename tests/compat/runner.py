"""Run one compat scenario, or a script, on a named implementation in this fresh process.

Child side (what the tests start)::

    python -m tests.compat.runner IMPL SCENARIO          # prints the scenario's trace as JSON on the last line
    python -m tests.compat.runner IMPL --script PATH ... # runs PATH with ``ferrovent`` aliased to IMPL

IMPL is ``gevent`` or ``ferrovent``. Each run gets its own interpreter because two hubs in one process is fragile.
The parent side (``run_scenario``, ``script_command``) is imported by the tests.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import runpy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPLS = ("gevent", "ferrovent")
TRACE_MARKER = "TRACE "
# The hub's error report ends with "<context> failed with ExcType" (gevent prefixes a timestamp).
_REPORT_LINE = re.compile(r"failed with (\w+)$", re.MULTILINE)


@dataclass(frozen=True)
class Result:
    trace: list
    stderr: str

    @property
    def reports(self) -> list[str]:
        """Exception type names of the errors the hub reported, in order."""
        return _REPORT_LINE.findall(self.stderr)


def _result(proc: subprocess.CompletedProcess, impl: str, name: str) -> Result:
    assert proc.returncode == 0, f"{impl} {name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    last = proc.stdout.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith(TRACE_MARKER), f"{impl} {name}: no trace printed\n{proc.stdout}\n{proc.stderr}"
    return Result(json.loads(last[len(TRACE_MARKER) :]), proc.stderr)


def run_scenario(impl: str, name: str, timeout: float = 30) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.compat.runner", impl, name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return _result(proc, impl, name)


@functools.cache
def gevent_result(name: str) -> Result:
    """The oracle: stock gevent's result for a scenario, computed once per test session."""
    return run_scenario("gevent", name)


def run_script_scenario(impl: str, path: Path, name: str, timeout: float = 60) -> Result:
    """Runs scenario ``name`` of a scenario script (a test module that runs one scenario and prints its trace with
    `print_trace` when run as a script) on ``impl`` in a fresh process."""
    return _result(run_script(impl, path, name, timeout=timeout), impl, name)


def print_trace(trace: list) -> None:
    """The child's side: the trace on the last line of stdout, where `run_script_scenario` looks for it."""
    print(TRACE_MARKER + json.dumps(trace), flush=True)


def check_agreement(result: Result, expected: list, reports, impl: str, oracle, quiet: bool = True) -> None:
    """Both halves must match the expected trace and reports (so a test cannot pass when both are broken alike);
    ferrovent must also match gevent's actual trace (``oracle()``). ``quiet``: nothing else on stderr."""
    assert result.trace == expected, result.stderr
    assert result.reports == list(reports), result.stderr
    if quiet and not reports:
        assert result.stderr == ""
    if impl != "gevent":
        assert result.trace == oracle().trace


def script_command(impl: str, path: Path, *args: str) -> list[str]:
    """The command that runs a ferrovent script on ``impl``: directly for ferrovent, through the alias for gevent."""
    if impl == "ferrovent":
        return [sys.executable, str(path), *args]
    return [sys.executable, "-m", "tests.compat.runner", impl, "--script", str(path), *args]


def run_script(impl: str, path: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(script_command(impl, path, *args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _run_script(impl: str, path: str, args: list[str]) -> None:
    # `import ferrovent as gevent` and `from ferrovent import monkey` then load the named implementation.
    sys.modules["ferrovent"] = importlib.import_module(impl)
    sys.modules["ferrovent.monkey"] = importlib.import_module(f"{impl}.monkey")
    sys.argv = [path, *args]
    sys.path[0] = str(Path(path).resolve().parent)
    runpy.run_path(path, run_name="__main__")


def main(argv: list[str]) -> None:
    impl, what, *rest = argv
    if impl not in IMPLS:
        raise SystemExit(f"unknown implementation {impl!r}; expected one of {IMPLS}")
    if what == "--script":
        _run_script(impl, rest[0], rest[1:])
        return
    from tests.compat.scenarios import SCENARIOS

    trace: list = []
    SCENARIOS[what].func(importlib.import_module(impl), trace)
    print_trace(trace)


if __name__ == "__main__":
    main(sys.argv[1:])
