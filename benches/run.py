"""Benchmark ferrovent against stock gevent, side by side in one run.

    python benches/run.py [--rounds N] [--impls ferrovent,gevent] [--only a,b] [--quick] [--markdown FILE]
                          [--client wrk|http_load] [--svg FILE] [--note TEXT]

Every measurement runs `benches/scenarios.py` in a fresh process. Rounds are interleaved: each round runs every
bench on every implementation, alternating which implementation goes first. The WSGI benches are loaded by wrk when
it is installed, else by the generator that ships inside ferrovent (`ferrovent._core.http_load`). At the end the
table is printed and the ratios are drawn as a bar chart (benches/results.svg unless --svg says otherwise).
Last comes the asyncio group (benches/asyncio_loops.py: ferrovent's asyncio loop vs uvloop vs the default loop,
its own table); `--only asyncio` runs it alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import asyncio_loops
import chart
import machine
import report
import rounds
import wsgi_wrk
from scenarios import BENCHES, CLIENT_CPU, REFERENCE_IMPL, Bench

SCENARIOS = Path(__file__).with_name("scenarios.py")
CHART = Path(__file__).with_name("results.svg")
SATURATED = 0.9  # a load client on the CPU more than this share of the time may be what limits the figure
CHART_TITLE = "ferrovent vs gevent: how many times better ferrovent does, per bench (log scale; > 1x: ferrovent)"


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
    groups = [*BENCHES, asyncio_loops.GROUP]  # the asyncio group: asyncio_loops.py's table, run last
    parser.add_argument("--only", type=_names(groups), default=groups, help="benches to run (asyncio: that group)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the report as markdown")
    parser.add_argument(
        "--client",
        choices=wsgi_wrk.LOAD_CLIENTS,
        default=wsgi_wrk.default_load_client(),
        help="load generator of the WSGI benches (default: wrk if installed, else ferrovent's http_load)",
    )
    parser.add_argument("--svg", type=Path, metavar="FILE", default=CHART, help=f"the chart's path ({CHART.name})")
    parser.add_argument("--note", default="", help="a line for the chart's header, e.g. where it ran")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


PEER_VERSIONS: dict[str, str] = {}  # the real-stack benches' peers (nginx, redis-server, ...), for the header
UNITS = {name: bench.unit for name, bench in BENCHES.items()}


def measure(impl: str, bench: Bench, quick: bool, client: str) -> dict[str, float]:
    """Run one measurement in a fresh interpreter: its figures by name. A failure or a skip is reported on stderr
    and gives no figures; the versions of the peers it ran against are kept in PEER_VERSIONS."""
    command = [sys.executable, str(SCENARIOS), impl, bench.name, "--client", client] + (["--quick"] if quick else [])
    line = rounds.run_measurement(command, f"{bench.name} on {impl}")
    if line is None:
        return {}
    if "skipped" in line:
        print(f"  {bench.name} on {impl}: skipped, {line['skipped']}", file=sys.stderr)
    PEER_VERSIONS.update(line.get("peers", {}))
    rounds.print_figures(line["values"], impl, UNITS)
    return line["values"]


def describe_client(client: str, cpu_shares: list[float]) -> tuple[tuple[str, str], list[str]]:
    """The header line naming the WSGI benches' load client and its busiest CPU share, and a warning if it was
    saturated."""
    if not cpu_shares:
        return ("Load client", f"{client} (WSGI benches)"), []
    busiest = max(cpu_shares)
    line = ("Load client", f"{client} (WSGI benches), at most {busiest:.0%} of its core busy")
    if busiest < SATURATED:
        return line, []
    return line, [
        f"The load client ({client}) kept its core {busiest:.0%} busy in one run: the WSGI figures may measure the "
        "client, not the server."
    ]


def run_asyncio_group(args: argparse.Namespace) -> None:
    """The asyncio group's table (asyncio_loops.py), printed and, with --markdown, added to the file as a block."""
    table = asyncio_loops.table(args.rounds, args.quick, args.client)
    print(table)
    if args.markdown:
        with args.markdown.open("a") as markdown:
            markdown.write(f"\n```\n{table.strip()}\n```\n")


def main() -> None:
    args = parse_args()
    if args.only == [asyncio_loops.GROUP]:
        if args.markdown:
            args.markdown.write_text("")
        run_asyncio_group(args)
        return
    probes = [machine.probe(module) for module in (REFERENCE_IMPL, *report.COLUMNS)]
    importable = {found.module for found in probes if found.version is not None}
    for found in probes:
        if found.module in args.impls and found.module not in importable:
            print(f"skipping {found.module}: it does not import ({found.error})", file=sys.stderr)
    impls = [impl for impl in args.impls if impl in importable]
    if not impls:
        sys.exit("nothing to run: none of the implementations imports")
    benches = [BENCHES[name] for name in args.only if name in BENCHES]
    if any(bench.uses_load_client for bench in benches):
        print(f"the WSGI benches' load client: {args.client}", file=sys.stderr)

    wanted = {bench.name for bench in benches}
    runners = [BENCHES[name] for name in dict.fromkeys(bench.runner for bench in benches)]  # one run per figure set
    samples: report.Samples = {}
    for order in rounds.interleaved(impls, args.rounds):
        for runner in runners:
            for impl in [REFERENCE_IMPL] if runner.reference else order:
                for name, value in measure(impl, runner, args.quick, args.client).items():
                    if name in wanted or name == CLIENT_CPU:
                        samples.setdefault((name, impl), []).append(value)

    header = machine.describe(probes) + sorted(PEER_VERSIONS.items()) + [("Sizes", "quick" if args.quick else "full")]
    footnotes = report.notes(benches)
    if any(bench.uses_load_client for bench in benches):
        cpu_shares = [share for (name, _), shares in samples.items() if name == CLIENT_CPU for share in shares]
        client_line, warnings = describe_client(args.client, cpu_shares)
        header.append(client_line)
        footnotes += warnings
    table = report.rows(benches, samples, impls, REFERENCE_IMPL, args.client)
    print(report.render_text(header, table, footnotes))
    if args.markdown:
        args.markdown.write_text(report.render_markdown(header, table, footnotes))
    chart_header = header + ([("Note", args.note)] if args.note else [])
    chart.write(args.svg, CHART_TITLE, chart_header, report.ratios(benches, samples), footnotes[:1])
    print(f"chart written to {args.svg}", file=sys.stderr)
    if asyncio_loops.GROUP in args.only:
        run_asyncio_group(args)


if __name__ == "__main__":
    main()
