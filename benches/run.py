"""Benchmark ferrovent against stock gevent, side by side in one run.

    python benches/run.py [--rounds N] [--impls ferrovent,gevent] [--only a,b] [--quick] [--markdown FILE]

Every measurement runs `benches/scenarios.py` in a fresh process. Rounds are interleaved: each round runs every
bench on every implementation, alternating which implementation goes first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import machine
import report
from scenarios import BENCHES, REFERENCE_IMPL, Bench

SCENARIOS = Path(__file__).with_name("scenarios.py")
TIMEOUT_SECONDS = 120


def _names(choices: list[str]) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated subset of `choices`, returned in `choices` order."""

    def parse(text: str) -> list[str]:
        picked = {name.strip() for name in text.split(",") if name.strip()}
        unknown = picked.difference(choices)
        if unknown or not picked:
            raise argparse.ArgumentTypeError(f"pick from {', '.join(choices)} (got {text!r})")
        return [name for name in choices if name in picked]

    return parse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark ferrovent against stock gevent.")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per bench and implementation")
    parser.add_argument("--impls", type=_names(list(report.COLUMNS)), default=list(report.COLUMNS))
    parser.add_argument("--only", type=_names(list(BENCHES)), default=list(BENCHES), help="benches to run")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the report as markdown")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def measure(impl: str, bench: Bench, quick: bool) -> dict[str, float]:
    """Run one measurement in a fresh interpreter: its figures by bench name. A failure is reported on stderr and
    gives no figures."""
    command = [sys.executable, str(SCENARIOS), impl, bench.name] + (["--quick"] if quick else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"  {bench.name} on {impl}: timed out after {TIMEOUT_SECONDS} s", file=sys.stderr)
        return {}
    if done.returncode != 0:
        print(f"  {bench.name} on {impl}: exit status {done.returncode}\n{done.stderr.rstrip()}", file=sys.stderr)
        return {}
    values = json.loads(done.stdout.strip().splitlines()[-1])["values"]
    for name, value in values.items():
        print(f"  {name} on {impl}: {value:,.2f} {BENCHES[name].unit}", file=sys.stderr)
    return values


def main() -> None:
    args = parse_args()
    probes = [machine.probe(module) for module in (REFERENCE_IMPL, *report.COLUMNS)]
    importable = {found.module for found in probes if found.version is not None}
    for found in probes:
        if found.module in args.impls and found.module not in importable:
            print(f"skipping {found.module}: it does not import ({found.error})", file=sys.stderr)
    impls = [impl for impl in args.impls if impl in importable]
    if not impls:
        sys.exit("nothing to run: none of the implementations imports")
    benches = [BENCHES[name] for name in args.only]
    for bench in benches:
        missing = [tool for tool in bench.tools if shutil.which(tool) is None]
        if missing:
            print(
                f"skipping {bench.name}: needs {', '.join(missing)} (e.g. apt-get install {' '.join(missing)})",
                file=sys.stderr,
            )
    benches = [bench for bench in benches if all(shutil.which(tool) for tool in bench.tools)]

    wanted = {bench.name for bench in benches}
    runners = [BENCHES[name] for name in dict.fromkeys(bench.runner for bench in benches)]  # one run per figure set
    samples: report.Samples = {}
    for round_index in range(args.rounds):
        print(f"round {round_index + 1} of {args.rounds}", file=sys.stderr)
        order = impls if round_index % 2 == 0 else impls[::-1]
        for runner in runners:
            for impl in [REFERENCE_IMPL] if runner.reference else order:
                for name, value in measure(impl, runner, args.quick).items():
                    if name in wanted:
                        samples.setdefault((name, impl), []).append(value)

    header = machine.describe(probes) + [("Sizes", "quick" if args.quick else "full")]
    table = report.rows(benches, samples, impls, REFERENCE_IMPL)
    footnotes = report.notes(benches)
    print(report.render_text(header, table, footnotes))
    if args.markdown:
        args.markdown.write_text(report.render_markdown(header, table, footnotes))


if __name__ == "__main__":
    main()
