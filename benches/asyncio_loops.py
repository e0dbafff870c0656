"""asyncio on three event loops, side by side in one run: ferrovent's (``ferrovent.asyncio``), uvloop's and the
default one (the stdlib's selector loop).

    python benches/run.py --only asyncio [--rounds N] [--quick] [--client wrk|http_load]   # this group alone
    python benches/asyncio_loops.py [--rounds N] [--quick] [--client wrk|http_load]         # the same table
    python benches/asyncio_loops.py measure LOOP BENCH [--quick] [--client ...]             # one measurement

`benches/run.py` runs this group last. Every measurement runs in a fresh process, the loops interleaved round by
round as in run.py; a loop that does not import is skipped with a message. The servers run on the loop in the
measuring process, pinned to CPU 0; their load (wsgi_wrk.py's echo client, or the WSGI benches' load client) runs
in another process on CPU 1. The ratios say how many times better ferrovent's loop did than uvloop's and than the
default loop (> 1: ferrovent better).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rounds
import wsgi_wrk

GROUP = "asyncio"  # the name run.py's --only knows this group by
LOOPS = ("ferrovent", "uvloop", "asyncio")
LOOP_MODULES = {"ferrovent": "ferrovent.asyncio", "uvloop": "uvloop", "asyncio": "asyncio"}
HERE = Path(__file__).resolve()
CLIENTS = 50  # connections of the echo and HTTP loads
HELLO = b"Hello, World!"


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    return importlib.import_module(LOOP_MODULES[name]).new_event_loop()


# -- the benches, each a coroutine run on the loop under test ----------------------------------------------------


async def call_soon(quick: bool, client: str) -> float:
    """Callbacks/s: `count` call_soon's of a callback that counts down, run to the last."""
    count = 100_000 if quick else 1_000_000
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    remaining = count

    def tick() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            finished.set_result(None)

    started = time.perf_counter()
    for _ in range(count):
        loop.call_soon(tick)
    await finished
    return count / (time.perf_counter() - started)


async def task_switch(quick: bool, client: str) -> float:
    """Switches/s: 10 tasks each ``await asyncio.sleep(0)`` `rounds` times."""
    tasks, rounds = 10, 10_000 if quick else 100_000

    async def worker() -> None:
        for _ in range(rounds):
            await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return tasks * rounds / (time.perf_counter() - started)


class _EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionResetError:
        pass  # the client's end of the run: it closes its sockets with data still in flight
    writer.close()


async def _echo_round_trips(name: str, server: asyncio.AbstractServer, seconds: float) -> dict[str, float]:
    """Round trips/s of wsgi_wrk.py's echo client (CLIENTS connections, 64 B each way) against `server`, as `name`,
    and the server's CPU per round trip (this process's), as `name`_cpu."""
    port = server.sockets[0].getsockname()[1]
    argv = [sys.executable, str(wsgi_wrk.HERE), "echo-client", str(port), str(seconds), str(CLIENTS)]
    async with server:
        client = subprocess.Popen(_on_load_cpu(argv), stdout=subprocess.PIPE, text=True)
        started = time.process_time()
        while client.poll() is None:  # the loop keeps serving; no thread or child watcher needed
            await asyncio.sleep(0.05)
        cpu = time.process_time() - started
    output = client.stdout.read()
    client.stdout.close()
    if client.returncode != 0:
        raise RuntimeError(f"the echo client failed with status {client.returncode}")
    rate = float(output.strip().splitlines()[-1])
    return {name: rate, f"{name}_cpu": cpu / (rate * seconds) * 1e6}


async def echo_protocol(quick: bool, client: str) -> dict[str, float]:
    server = await asyncio.get_running_loop().create_server(_EchoProtocol, "127.0.0.1", 0)
    return await _echo_round_trips("echo_protocol", server, 2 if quick else 5)


async def echo_streams(quick: bool, client: str) -> dict[str, float]:
    server = await asyncio.start_server(_echo_stream, "127.0.0.1", 0)
    return await _echo_round_trips("echo_streams", server, 2 if quick else 5)


async def start_hello_app() -> tuple[Any, int]:
    """The aiohttp hello-world app, serving on 127.0.0.1 with no access log: its runner (to clean up) and port."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=HELLO, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


async def aiohttp_hello(quick: bool, client: str) -> dict[str, float]:
    """Requests/s, p99 ms and the server's CPU per request (this process's) of an aiohttp hello-world server under
    `client` (wrk or http_load, CLIENTS keep-alive connections), which runs in a thread of this process that waits
    for the client's process."""
    runner, port = await start_hello_app()
    try:
        loop = asyncio.get_running_loop()
        seconds = 2 if quick else 5
        started = time.process_time()
        result = await loop.run_in_executor(None, wsgi_wrk.load, client, port, seconds, CLIENTS)
        cpu = time.process_time() - started
    finally:
        await runner.cleanup()
    return {
        "aiohttp_hello": result.requests_per_second,
        "aiohttp_p99": result.p99_ms,
        "aiohttp_cpu": cpu / (result.requests_per_second * seconds) * 1e6,
    }


@dataclass(frozen=True)
class Bench:
    name: str
    unit: str
    higher_is_better: bool
    # None: the figure comes from another bench's run (aiohttp_p99 and aiohttp_cpu from aiohttp_hello's, an echo's
    # _cpu from the echo's)
    measure: Callable[[bool, str], Awaitable[float | dict[str, float]]] | None


BENCHES = {
    bench.name: bench
    for bench in (
        Bench("call_soon", "callbacks/s", True, call_soon),
        Bench("task_switch", "sleep(0)s/s", True, task_switch),
        Bench("echo_protocol", "round trips/s", True, echo_protocol),
        Bench("echo_protocol_cpu", "us of server CPU per round trip", False, None),
        Bench("echo_streams", "round trips/s", True, echo_streams),
        Bench("echo_streams_cpu", "us of server CPU per round trip", False, None),
        Bench("aiohttp_hello", "requests/s", True, aiohttp_hello),
        Bench("aiohttp_p99", "ms p99 latency", False, None),
        Bench("aiohttp_cpu", "us of server CPU per request", False, None),
    )
}


def _on_load_cpu(argv: list[str]) -> list[str]:
    """`argv` pinned to the load generator's CPU, as wsgi_wrk.py pins its clients."""
    if (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", str(wsgi_wrk.LOAD_CPU), *argv]


def measure_here(loop_name: str, bench: Bench, quick: bool, client: str) -> dict[str, float]:
    """One measurement of `bench` on a new `loop_name` loop in this process, pinned to the servers' CPU."""
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {wsgi_wrk.SERVER_CPU})
    loop = new_event_loop(loop_name)
    try:
        measured = loop.run_until_complete(bench.measure(quick, client))
    finally:
        loop.close()
    return measured if isinstance(measured, dict) else {bench.name: measured}


# -- driving them: a fresh process per measurement ----------------------------------------------------------------


def measure(loop_name: str, bench: Bench, quick: bool, client: str) -> dict[str, float]:
    """`measure_here` in a fresh interpreter; a failure is reported on stderr and gives no figures."""
    command = [sys.executable, str(HERE), "measure", loop_name, bench.name, "--client", client]
    command += ["--quick"] if quick else []
    values = rounds.run_measurement(command, f"{bench.name} on {loop_name}")
    if values is None:
        return {}
    rounds.print_figures(values, loop_name, {name: bench.unit for name, bench in BENCHES.items()})
    return values


def importable_loops() -> list[str]:
    """The loops whose module imports in a fresh interpreter; the others are named on stderr."""
    found = []
    for name in LOOPS:
        probe = subprocess.run([sys.executable, "-c", f"import {LOOP_MODULES[name]}"], capture_output=True, text=True)
        if probe.returncode == 0:
            found.append(name)
        else:
            print(f"skipping the {name} loop: {LOOP_MODULES[name]} does not import", file=sys.stderr)
    return found


def _better(bench: Bench, ours: float | None, theirs: float | None) -> str:
    """How many times better ferrovent's figure is than `theirs`, as a table cell."""
    if ours is None or theirs is None or min(ours, theirs) <= 0:
        return "n/a"
    return f"{(ours / theirs if bench.higher_is_better else theirs / ours):.2f}x"


def _cell(value: float | None) -> str:
    """A median as a table cell: two decimals for the small figures (CPU per item, latency), else one."""
    if value is None:
        return "n/a"
    return f"{value:,.2f}" if value < 100 else f"{value:,.1f}"


def table(round_count: int, quick: bool, client: str) -> str:
    """Runs every bench on every loop `round_count` times, interleaved; the medians and ratios as a text table."""
    loops = importable_loops()
    samples: dict[tuple[str, str], list[float]] = {}
    for order in rounds.interleaved(loops, round_count, label="asyncio round"):
        for bench in (bench for bench in BENCHES.values() if bench.measure is not None):
            for loop_name in order:
                for name, value in measure(loop_name, bench, quick, client).items():
                    samples.setdefault((name, loop_name), []).append(value)
    headings = ("bench", "metric", *LOOPS, "vs uvloop", "vs asyncio")
    rows = [headings]
    for bench in BENCHES.values():
        medians = {
            loop: statistics.median(samples[(bench.name, loop)]) if (bench.name, loop) in samples else None
            for loop in LOOPS
        }
        metric = f"{bench.unit} ({'higher' if bench.higher_is_better else 'lower'} is better)"
        if bench.name.startswith("aiohttp"):
            metric += f", load by {client}"
        cells = [_cell(value) for value in medians.values()]
        ratios = [_better(bench, medians["ferrovent"], medians[other]) for other in ("uvloop", "asyncio")]
        rows.append((bench.name, metric, *cells, *ratios))
    widths = [max(len(row[column]) for row in rows) for column in range(len(headings))]
    lines = [
        "  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    note = (
        f"asyncio loops, {'quick' if quick else 'full'} sizes, medians of {round_count} rounds, every measurement in a "
        "fresh process. The ratios are ferrovent's loop against the others: > 1 means ferrovent's loop did better."
    )
    return "\n".join(["", *lines, "", textwrap.fill(note, width=100)]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="asyncio on ferrovent's loop, uvloop and the default loop.")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per bench and loop")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--client", choices=wsgi_wrk.LOAD_CLIENTS, default=wsgi_wrk.default_load_client())
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        parser.add_argument("measure", choices=["measure"])
        parser.add_argument("loop", choices=LOOPS)
        parser.add_argument("bench", choices=[name for name, bench in BENCHES.items() if bench.measure is not None])
        args = parser.parse_args()
        print(json.dumps(measure_here(args.loop, BENCHES[args.bench], args.quick, args.client)))
        return
    args = parser.parse_args()
    print(table(args.rounds, args.quick, args.client))


if __name__ == "__main__":
    main()
