"""Instructions per exchange of asyncio_loops.py's servers on each loop, counted by valgrind's callgrind: a figure
that a noisy machine does not move, for differences too small for the timed benches to tell apart.

    python benches/asyncio_instructions.py [--quick]
    python benches/asyncio_instructions.py serve LOOP SERVER EXCHANGES     # one server run (what callgrind runs)

Each server (the protocol and streams echo servers and the aiohttp hello-world app) serves CLIENTS connections
of a client process that makes EXCHANGES exchanges on each (a 64-byte echo, or a keep-alive GET), one at a time,
then closes them; the server stops once the client has exited. Only the server's process runs under callgrind.
Its instructions at two sizes, differenced and divided by the extra exchanges, are the figure, so start-up and
shut-down cancel out. They are user-space instructions: the kernel's work, and what a cache miss or a
mispredicted branch costs, are not in them. Needs valgrind (Debian's package); without it, says so and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import asyncio_loops

HERE = os.path.abspath(__file__)
ECHO = b"x" * 64
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
LOOPS_COMPARED = ("uvloop", "asyncio")  # the ratio columns: their count over ferrovent's


async def _protocol_echo() -> tuple[Any, int]:
    server = await asyncio.get_running_loop().create_server(asyncio_loops._EchoProtocol, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _streams_echo() -> tuple[Any, int]:
    server = await asyncio.start_server(asyncio_loops._echo_stream, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _close_server(server: Any) -> None:
    server.close()
    await server.wait_closed()


async def _cleanup_runner(runner: Any) -> None:
    await runner.cleanup()


# name: (start it -> (handle, port), stop it, what the client sends, exchanges per connection at the two sizes
# (full; --quick halves them))
SERVERS: dict[str, tuple[Callable[[], Awaitable[tuple[Any, int]]], Callable[[Any], Awaitable[None]], bytes, int, int]]
SERVERS = {
    "echo_protocol": (_protocol_echo, _close_server, ECHO, 200, 1200),
    "echo_streams": (_streams_echo, _close_server, ECHO, 200, 1200),
    "aiohttp_hello": (asyncio_loops.start_hello_app, _cleanup_runner, REQUEST, 20, 220),
}


def _answered(received: bytearray, message: bytes) -> bool:
    """Whether `received` holds the whole answer to `message` (then taken out of it): the echo, or a response
    head and its Content-Length body."""
    if message == ECHO:
        if len(received) < len(ECHO):
            return False
        del received[: len(ECHO)]
        return True
    head_end = received.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    length = next(
        int(line.split(b":", 1)[1])
        for line in received[:head_end].split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    if len(received) < head_end + 4 + length:
        return False
    del received[: head_end + 4 + length]
    return True


def _warm_up(sock: socket.socket, message: bytes) -> None:
    """One whole exchange on `sock` alone. Without it, the server's first exchanges all start before any ends,
    and on Python 3.11 a class whose instances are made that way can lose its shared attribute keys for good
    (30 instances made before the first sets its later attributes): every later instance then gets a dict of its
    own, which costs the rest of the run thousands of instructions per exchange (aiohttp's StreamWriter did,
    under callgrind, on the loops that keep asyncio's callback order). A server that has served once does not."""
    sock.sendall(message)
    received = bytearray()
    while not _answered(received, message):
        _receive(sock, received)


def _receive(sock: socket.socket, into: bytearray) -> None:
    """What one recv gives, appended to `into`; ConnectionError if the server closed the connection."""
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed a connection")
    into += data


def client(port: int, server: str, exchanges: int) -> None:
    """CLIENTS connections to `port`, each making `exchanges` exchanges of `server`'s kind, one at a time (the
    first connection's first alone, before the others connect)."""
    message = SERVERS[server][2]
    selector = selectors.DefaultSelector()
    left: dict[socket.socket, list] = {}
    for index in range(asyncio_loops.CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if index == 0:
            _warm_up(sock, message)
            if exchanges == 1:
                sock.close()
                continue
        left[sock] = [exchanges - (index == 0), bytearray()]
        selector.register(sock, selectors.EVENT_READ)
        sock.sendall(message)
    while left:
        for key, _ in selector.select(timeout=30) or [(None, None)]:
            if key is None:
                raise TimeoutError("the server answered nothing for 30 s")
            sock = key.fileobj
            state = left[sock]
            _receive(sock, state[1])
            while _answered(state[1], message):
                state[0] -= 1
                if state[0] == 0:
                    selector.unregister(sock)
                    sock.close()
                    del left[sock]
                    break
                sock.sendall(message)


async def serve(server: str, exchanges: int) -> None:
    """Runs `server` on the running loop until a client process making `exchanges` exchanges per connection ends."""
    start, stop, _, _, _ = SERVERS[server]
    handle, port = await start()
    try:
        command = [sys.executable, HERE, "client", str(port), server, str(exchanges)]
        with subprocess.Popen(command, stdout=subprocess.PIPE) as child:
            loop = asyncio.get_running_loop()
            ended = loop.create_future()
            # the pipe reads as ready (end of file) when the child has exited: no thread to wait for it
            loop.add_reader(child.stdout.fileno(), lambda: ended.done() or ended.set_result(None))
            await ended
            loop.remove_reader(child.stdout.fileno())
        if child.returncode != 0:
            raise RuntimeError(f"the client failed with status {child.returncode}")
    finally:
        await stop(handle)


def instructions(loop_name: str, server: str, exchanges: int) -> int:
    """The instructions callgrind counts in one `serve` run of `server` on `loop_name`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, HERE]
        run = subprocess.run([*command, "serve", loop_name, server, str(exchanges)], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{server} on {loop_name} failed under callgrind:\n{run.stderr[-2000:]}")
        with open(out) as counts:
            return next(int(line.split()[1]) for line in counts if line.startswith("summary:"))


def per_exchange(loop_name: str, server: str, quick: bool) -> float:
    """Instructions per exchange: the difference between runs at the two sizes over the extra exchanges."""
    small, large = SERVERS[server][3:]
    if quick:
        small, large = small // 2, large // 2
    extra = instructions(loop_name, server, large) - instructions(loop_name, server, small)
    return extra / (asyncio_loops.CLIENTS * (large - small))


def table(quick: bool) -> str:
    loops = asyncio_loops.importable_loops()
    rows = [("server", "per", *loops, "vs uvloop", "vs asyncio")]
    for server in SERVERS:
        counts = {}
        for loop_name in loops:
            counts[loop_name] = per_exchange(loop_name, server, quick)
            print(f"  {server} on {loop_name}: {counts[loop_name]:,.0f} instructions", file=sys.stderr)
        ours = counts.get("ferrovent")
        ratios = [f"{counts[other] / ours:.3f}x" if ours and other in counts else "n/a" for other in LOOPS_COMPARED]
        per = "request" if server.startswith("aiohttp") else "round trip"
        rows.append((server, per, *(f"{counts[name]:,.0f}" for name in loops), *ratios))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = (
        "User-space instructions per exchange of each server, counted by callgrind (the kernel's work is not in "
        "them). The ratios are the other loop's count over ferrovent's: > 1 means ferrovent's loop ran fewer."
    )
    return "\n".join(["", *lines, "", textwrap.fill(note, width=100)]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Instructions per exchange of the asyncio servers, per loop.")
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "client"):
        parser.add_argument("role", choices=["serve", "client"])
        if sys.argv[1] == "serve":
            parser.add_argument("loop", choices=asyncio_loops.LOOPS)
        else:
            parser.add_argument("port", type=int)
        parser.add_argument("server", choices=list(SERVERS))
        parser.add_argument("exchanges", type=int)
        args = parser.parse_args()
        if args.role == "client":
            client(args.port, args.server, args.exchanges)
            return
        loop = asyncio_loops.new_event_loop(args.loop)
        try:
            loop.run_until_complete(serve(args.server, args.exchanges))
        finally:
            loop.close()
        return
    parser.add_argument("--quick", action="store_true", help="half the exchanges, for a smoke run")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian's package valgrind): nothing to count with")
    print(table(args.quick))


if __name__ == "__main__":
    main()
