"""The command-line plumbing the suite runners share (tests/gevent_suite and tests/asyncio_suite): the report
options, the commands that read saved reports and stop, writing a run's report, and the per-file progress line.

Each runner keeps its own options and what its reports hold; both write the same JSON report shape, read back by
``--failing-list`` and ``--write-expectations`` (the ratchet each runner's ``--check`` or pytest file holds to).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from tests.gevent_suite.outcomes import FileRun


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """--json, --failing-list and --write-expectations, as both runners take them."""
    parser.add_argument("--json", type=Path, help="write the full report (every outcome) to this file")
    parser.add_argument(
        "--failing-list",
        type=Path,
        help="print every test of this --json report lost on ferrovent, with its cause, and stop",
    )
    parser.add_argument(
        "--write-expectations",
        nargs="+",
        type=Path,
        metavar="REPORT",
        help="write the ratchet (expectations.json beside the runner) from these --json reports, and stop",
    )


def read_report(path: Path) -> dict:
    return json.loads(path.read_text())


def run_report_command(
    args: argparse.Namespace,
    print_failing_list: Callable[[dict], None],
    write_expectations: Callable[[list[dict]], None],
) -> bool:
    """Does what --failing-list or --write-expectations asks, if either was given; whether one was."""
    if args.failing_list:
        print_failing_list(read_report(args.failing_list))
        return True
    if args.write_expectations:
        write_expectations([read_report(path) for path in args.write_expectations])
        return True
    return False


def save_report(data: dict, path: Path | None) -> None:
    """Writes a run's report to ``path`` (the --json option), if one was given."""
    if path:
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"report written to {path}")


def progress_printer(file_width: int) -> Callable[[FileRun], None]:
    """A progress callback: one line per file run, its side, name, pass/fail/error/skip counts, time and status."""

    def print_progress(run: FileRun) -> None:
        counts = "/".join(str(run.count(kind)) for kind in ("pass", "fail", "error", "skip"))
        print(f"{run.side:9} {run.file:{file_width}} {counts:>14} {run.seconds:7.1f}s  {run.status()}", flush=True)

    return print_progress
