"""What a parked greenlet and an idle TCP connection cost, part by part, on ferrovent and gevent, beside an asyncio
task and connection (the default loop, ferrovent's asyncio loop, and uvloop's when it is installed).

    python benches/memory_parts.py [--count 10000] [--connections 2000]

prints a markdown table (KiB per parked greenlet or task, and per idle connection with its handler) and the
largest Python allocation sites. Every figure comes from a fresh process of its own (`measure` below), after a
warm-up batch that stays alive, so the hub, the loop and the allocator arenas are not counted:

- RSS: the growth of the resident set over the measured batch, divided by its size (everything: Python objects,
  the greenlet's saved C stack, the frame's data-stack chunk, the loop's Rust or C tables, allocator slack);
- traced: what tracemalloc saw allocated over the batch, in a separate run (tracing itself costs memory), which is
  everything allocated through Python's allocators: objects, their slots and dicts, greenlet's saved C stack copy;
  not the interpreter's data-stack chunks (mapped directly) nor the Rust side (the system malloc);
- the sizes of single objects (`sys.getsizeof`) and greenlet's `_stack_saved` (bytes of C stack copied aside).

A connection is accepted by a StreamServer (asyncio: start_server) whose handler waits to read one byte; the
clients hold their ends open from another process.

Internal entry point: ``python benches/memory_parts.py measure SUBJECT KIND COUNT rss|traced`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import linecache
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from parked_memory import park_greenlets, rss_bytes

HERE = Path(__file__).resolve()
SUBJECTS = ("greenlet", "ferrovent", "gevent", "asyncio", "ferrovent.asyncio", "uvloop")
# the subjects that are asyncio loops: each new_event_loop() of the module named (asyncio's own for "asyncio")
LOOP_SUBJECTS = ("asyncio", "ferrovent.asyncio", "uvloop")
KINDS = ("parked", "connection")
WARM_UP = 1_000
TOP_SITES = 6


class Batch:
    """Measures one batch: RSS growth or traced allocations, from `begin` to `end`."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def begin(self) -> None:
        gc.collect()
        if self.mode == "traced":
            tracemalloc.start(1)
        self.rss = rss_bytes()

    def end(self, count: int) -> dict:
        gc.collect()
        if self.mode == "rss":
            return {"kib": (rss_bytes() - self.rss) / count / 1024}
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = snapshot.statistics("lineno")
        sites = [(_site(stat.traceback[0]), stat.size / count) for stat in stats[:TOP_SITES] if stat.size >= count]
        return {"kib": sum(stat.size for stat in stats) / count / 1024, "sites": sites}


def _site(frame: tracemalloc.Frame) -> str:
    """Where an allocation was made: file, line and the line's code."""
    code = linecache.getline(frame.filename, frame.lineno).strip()
    return f"{Path(frame.filename).name}:{frame.lineno} `{code}`"


# -- parked greenlets and tasks -------------------------------------------------------------------------------


def _parked_raw_greenlets(count: int) -> list:
    """Plain greenlets (no library), each switched into a Python function that switched back to its parent."""
    import greenlet

    def park() -> None:
        greenlet.getcurrent().parent.switch()

    parked = [greenlet.greenlet(park) for _ in range(count)]
    for each in parked:
        each.switch()
    return parked


def _greenlet_sizes(parked: list) -> dict:
    return {
        "object bytes": sys.getsizeof(parked[0]),
        "saved C stack bytes": sum(each._stack_saved for each in parked) / len(parked),
    }


def _new_loop(subject: str) -> asyncio.AbstractEventLoop:
    return importlib.import_module(subject).new_event_loop()


def _parked_tasks(loop: asyncio.AbstractEventLoop, count: int) -> list:
    async def park() -> None:
        await asyncio.sleep(3600)

    async def spawn() -> list:
        tasks = [loop.create_task(park()) for _ in range(count)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return tasks

    return loop.run_until_complete(spawn())


def _task_sizes(tasks: list) -> dict:
    """The task object, and its coroutine object with the suspended frame inside it (CPython 3.11+)."""
    return {"object bytes": sys.getsizeof(tasks[0]), "coroutine bytes": sys.getsizeof(tasks[0].get_coro())}


def parked(subject: str, count: int, batch: Batch) -> dict:
    if subject == "greenlet":
        make, sizes = _parked_raw_greenlets, _greenlet_sizes
    elif subject in LOOP_SUBJECTS:
        loop = _new_loop(subject)
        make, sizes = (lambda size: _parked_tasks(loop, size)), _task_sizes
    else:
        lib = importlib.import_module(subject)
        make, sizes = (lambda size: park_greenlets(lib, size)), _greenlet_sizes
    warm_up = make(WARM_UP)
    batch.begin()
    measured = make(count)
    result = {**batch.end(count), **sizes(measured)}
    del warm_up  # alive until now: freed earlier, its memory would be reused by the batch and hide part of it
    return result


# -- idle connections -----------------------------------------------------------------------------------------


def hold_connections(port: int, count: int) -> None:
    """Opens `count` connections to 127.0.0.1:port and holds them until its stdin closes."""
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    sys.stdin.read()
    for sock in held:
        sock.close()


class Clients:
    """Another process holding idle connections to our server (so none of their memory is ours); the server
    knows they are all open when it has accepted them."""

    def __init__(self, port: int, count: int) -> None:
        argv = [sys.executable, str(HERE), "hold", str(port), str(count)]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, text=True)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


def _wait_for(condition: Callable[[], bool], pause: Callable[[], None]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not accept every connection in time")
        pause()


def _greenlet_connections(lib, count: int, batch: Batch) -> dict:
    import greenlet

    accepted = []  # (socket, the greenlet handling it)

    def handle(sock, address) -> None:
        accepted.append((sock, greenlet.getcurrent()))
        sock.recv(1)

    server = importlib.import_module(f"{lib.__name__}.server").StreamServer(("127.0.0.1", 0), handle, backlog=1024)
    server.start()
    port = server.server_port
    warm_up = Clients(port, WARM_UP // 5)
    _wait_for(lambda: len(accepted) == WARM_UP // 5, lambda: lib.sleep(0.01))
    batch.begin()
    measured = Clients(port, count)
    _wait_for(lambda: len(accepted) == WARM_UP // 5 + count, lambda: lib.sleep(0.01))
    handlers = [handler for _, handler in accepted[-count:]]
    result = {**batch.end(count), **_greenlet_sizes(handlers), "socket object bytes": sys.getsizeof(accepted[-1][0])}
    measured.close()
    warm_up.close()
    return result


def _task_connections(subject: str, count: int, batch: Batch) -> dict:
    loop = _new_loop(subject)
    accepted = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read(1)

    async def settle(total: int) -> None:
        while len(accepted) < total:
            await asyncio.sleep(0.01)

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024))
    port = server.sockets[0].getsockname()[1]
    warm_up = Clients(port, WARM_UP // 5)
    loop.run_until_complete(asyncio.wait_for(settle(WARM_UP // 5), 30))
    batch.begin()
    measured = Clients(port, count)
    loop.run_until_complete(asyncio.wait_for(settle(WARM_UP // 5 + count), 30))
    result = {**batch.end(count), "transport bytes": sys.getsizeof(accepted[-1].transport)}
    measured.close()
    warm_up.close()
    return result


def connection(subject: str, count: int, batch: Batch) -> dict:
    if subject in LOOP_SUBJECTS:
        return _task_connections(subject, count, batch)
    return _greenlet_connections(importlib.import_module(subject), count, batch)


def measure(subject: str, kind: str, count: int, mode: str) -> dict:
    return {"parked": parked, "connection": connection}[kind](subject, count, Batch(mode))


# -- the table ------------------------------------------------------------------------------------------------


def _importable(subject: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {subject}"], capture_output=True).returncode == 0


def _run(subject: str, kind: str, count: int, mode: str) -> dict:
    argv = [sys.executable, str(HERE), "measure", subject, kind, str(count), mode]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table(count: int, connections: int) -> str:
    subjects = [subject for subject in SUBJECTS if _importable(subject)]
    lines = [
        f"Per parked greenlet/task ({count:,} measured) and per idle connection ({connections:,}); KiB unless named.",
        "",
        "| subject | what | RSS KiB | traced KiB | untraced KiB | object sizes |",
        "|:---|:---|---:|---:|---:|:---|",
    ]
    sites = []
    for kind, size in (("parked", count), ("connection", connections)):
        for subject in subjects:
            if kind == "connection" and subject == "greenlet":
                continue
            rss = _run(subject, kind, size, "rss")
            traced = _run(subject, kind, size, "traced")
            sizes = ", ".join(f"{name} {_cell(value)}" for name, value in rss.items() if name != "kib")
            untraced = rss["kib"] - traced["kib"]
            lines.append(f"| {subject} | {kind} | {rss['kib']:.2f} | {traced['kib']:.2f} | {untraced:.2f} | {sizes} |")
            top = ", ".join(f"{where} {each:.0f} B" for where, each in traced["sites"])
            sites.append(f"- {subject} {kind}: {top}")
    return "\n".join([*lines, "", "Largest traced allocation sites (bytes per greenlet, task or connection):", *sites])


def main() -> None:
    if sys.argv[1:2] == ["measure"]:
        subject, kind, count, mode = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        print(json.dumps(measure(subject, kind, count, mode)))
        return
    if sys.argv[1:2] == ["hold"]:
        hold_connections(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description="Memory per parked greenlet and per idle connection, by part.")
    parser.add_argument("--count", type=int, default=10_000, help="parked greenlets or tasks measured")
    parser.add_argument("--connections", type=int, default=2_000, help="idle connections measured")
    args = parser.parse_args()
    print(table(args.count, args.connections))


if __name__ == "__main__":
    main()
