"""Servers under load from another process: a hello-world WSGI app under a load generator, and TCP echo round trips.

The server runs in its own process pinned to CPU 0, the load generator in another pinned to CPU 1 (with `taskset`,
when the machine has two CPUs or more), so neither steals the other's core.

    python benches/wsgi_wrk.py [--rounds 3] [--seconds 5] [--impls ferrovent,gevent,granian,meinheld] [--client wrk]

prints the table (medians over rounds, implementations interleaved): requests/s and p99 latency of the WSGI app
for ferrovent's and gevent's pywsgi, for granian and for meinheld, then echo round trips/s on each StreamServer.
The load generator is wrk (Debian's `wrk` package) when it is installed, else `http_load`, the one that ships
inside ferrovent's extension (`ferrovent._core.http_load`: the same shape of load, 50 keep-alive connections with
one request in flight each); `--client` picks one. granian comes with the bench extra, meinheld from
`pip install --no-deps meinheld`; either is skipped if it does not import. `benches/run.py --only
wsgi_hello,wsgi_p99,tcp_echo` runs the same measurements inside the main table (ferrovent and gevent only).
Internal entry points, used by the above:

    python benches/wsgi_wrk.py serve-wsgi IMPL PORT        # the hello-world server; prints READY when listening
    python benches/wsgi_wrk.py serve-echo IMPL PORT        # an echo StreamServer; prints READY when listening
    python benches/wsgi_wrk.py serve-websocket IMPL PORT   # gevent-websocket's echo on IMPL's pywsgi; READY
    python benches/wsgi_wrk.py echo-client PORT SECONDS N  # N connections ping-ponging 64 bytes; prints trips/s
    python benches/wsgi_wrk.py echo-client PORT SECONDS N websocket  # the same as WebSocket messages
    python benches/wsgi_wrk.py load-client PORT SECONDS N  # http_load with N connections; prints a JSON line

Every server is configured alike: no access log, TCP_NODELAY on the listener (gevent's pywsgi does not set it by
itself), keep-alive on (meinheld's is off unless asked for). granian runs as its CLI would start it for one worker
(its own defaults otherwise, among them 512 threads for the WSGI app), HTTP/1 only like the others.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
SERVER_CPU, LOAD_CPU = 0, 1
READY = "READY"
WSGI_IMPLS = ("ferrovent", "gevent", "granian", "meinheld")
ECHO_IMPLS = ("ferrovent", "gevent")
ECHO_MESSAGE = b"x" * 64
# ECHO_MESSAGE as a client's WebSocket frame: final binary, masked with a zero key (the payload goes as it is).
WEBSOCKET_FRAME = bytes((0x82, 0x80 | len(ECHO_MESSAGE))) + bytes(4) + ECHO_MESSAGE
LOAD_CLIENTS = ("wrk", "http_load")
WARM_UP_SECONDS, WARM_UP_CONNECTIONS = 1.0, 10


def default_load_client() -> str:
    """wrk when it is installed (the reference everyone knows), else the generator that ships with ferrovent."""
    return "wrk" if shutil.which("wrk") else "http_load"


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p99_ms: float
    client_cpu: float  # the share of its core the load generator used: near 1.0 it measured itself


# -- the server processes -------------------------------------------------------------------------------------


def _hello(environ: dict, start_response) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]


def _serve_granian(port: int) -> None:
    """Granian (Rust, one worker process, its default 512 blocking threads for WSGI, HTTP/1 only as ours) serving
    `_hello` on 127.0.0.1:port; READY once it accepts connections; it dies with this process."""
    argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--http", "1", "--no-ws", "--workers", "1"]
    argv += ["--log-level", "warning", "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(HERE.parent)]
    # its log goes to stderr: stdout is where our parent waits for READY
    granian = subprocess.Popen([*argv, f"{HERE.stem}:_hello"], stdout=sys.stderr, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 30
    while granian.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        print(READY, flush=True)
        break
    sys.exit(granian.wait())


def _die_with_parent() -> None:
    """In a child between fork and exec: the kernel sends it SIGTERM when the process that started it dies (the
    bench stops a server with SIGKILL, which nothing can forward)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def serve_wsgi(impl: str, port: int) -> None:
    """Serves `_hello` on 127.0.0.1:port with `impl`'s server until killed."""
    if impl == "granian":
        _serve_granian(port)
        return
    if impl == "meinheld":
        from meinheld import server

        server.listen(("127.0.0.1", port))
        server.set_keepalive(10)
        server.set_access_logger(None)
        print(READY, flush=True)
        server.run(_hello)
        return
    pywsgi = importlib.import_module(f"{impl}.pywsgi")
    server = pywsgi.WSGIServer(("127.0.0.1", port), _hello, log=None)
    server.init_socket()
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(READY, flush=True)
    server.serve_forever()


def _echo(sock, address) -> None:
    recv, sendall = sock.recv, sock.sendall
    while True:
        data = recv(65536)
        if not data:
            return
        sendall(data)


def serve_echo(impl: str, port: int) -> None:
    """An echo StreamServer of `impl` on 127.0.0.1:port until killed."""
    server = importlib.import_module(f"{impl}.server").StreamServer(("127.0.0.1", port), _echo)
    server.init_socket()
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(READY, flush=True)
    server.serve_forever()


def _websocket_echo_app(environ: dict, start_response) -> list[bytes]:
    websocket = environ["wsgi.websocket"]
    receive, send = websocket.receive, websocket.send
    while True:
        message = receive()
        if message is None:
            return []
        send(message)


def serve_websocket(impl: str, port: int) -> None:
    """gevent-websocket's echo on `impl`'s pywsgi (ferrovent installed as gevent for it) until killed."""
    if impl == "ferrovent":
        import ferrovent

        ferrovent.install_as_gevent()
    from gevent import pywsgi
    from geventwebsocket.handler import WebSocketHandler

    server = pywsgi.WSGIServer(("127.0.0.1", port), _websocket_echo_app, handler_class=WebSocketHandler, log=None)
    server.init_socket()
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(READY, flush=True)
    server.serve_forever()


def _open_websocket(sock: socket.socket) -> None:
    """The client's side of the WebSocket handshake on a blocking socket."""
    sock.sendall(
        b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise RuntimeError(f"the server closed the connection during the handshake: {head!r}")
        head += byte
    if not head.startswith(b"HTTP/1.1 101 "):
        raise RuntimeError(f"the WebSocket handshake was refused: {head!r}")


def echo_client(port: int, seconds: float, connections: int, websocket: bool = False) -> float:
    """Round trips per second of `connections` sockets each sending 64 bytes and waiting for them back: raw
    bytes, or (``websocket``) a masked binary WebSocket message answered by an unmasked one."""
    message, reply = (WEBSOCKET_FRAME, 2 + len(ECHO_MESSAGE)) if websocket else (ECHO_MESSAGE, len(ECHO_MESSAGE))
    selector = selectors.EpollSelector()
    pending = {}
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if websocket:
            _open_websocket(sock)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        pending[sock] = reply
        sock.send(message)
    trips = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for key, _ in selector.select(0.5):
            sock = key.fileobj
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the echo server closed a connection")
            pending[sock] -= len(data)
            if pending[sock] == 0:
                trips += 1
                pending[sock] = reply
                sock.send(message)
    for sock in pending:
        sock.close()
    return trips / seconds


# -- driving them ---------------------------------------------------------------------------------------------


def pinned(cpu: int, argv: list[str]) -> list[str]:
    """`argv` run on `cpu` alone, when taskset exists and there is more than one CPU to keep apart."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def hello_server(impl: str) -> ServerProcess:
    """`impl`'s pywsgi serving hello world in a process of its own on CPU 0 (use as a context manager)."""
    return ServerProcess("serve-wsgi", impl)


def echo_server(impl: str) -> ServerProcess:
    """`impl`'s echo StreamServer in a process of its own on CPU 0 (use as a context manager)."""
    return ServerProcess("serve-echo", impl)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A server process of ours (`script MODE IMPL PORT *extra`), started pinned, ready once it printed READY;
    stopped on exit."""

    def __init__(self, mode: str, impl: str, script: Path = HERE, extra: tuple[str, ...] = ()) -> None:
        self.port = _free_port()
        argv = [sys.executable, str(script), mode, impl, str(self.port), *extra]
        self.errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty server must never block on it
        self.process = subprocess.Popen(pinned(SERVER_CPU, argv), stdout=subprocess.PIPE, stderr=self.errors, text=True)

    def __enter__(self) -> ServerProcess:
        line = self.process.stdout.readline().strip()
        if line != READY:
            self.process.kill()
            self.errors.seek(0)
            raise RuntimeError(f"the server did not start: {line!r}\n{self.errors.read()}")
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        self.errors.close()

    def cpu_seconds(self) -> float:
        """The user plus system CPU time the server used so far (from /proc: taskset execs it, the pid is its)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _parse_wrk(output: str, client_cpu: float) -> LoadResult:
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", output)
    if rate is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    if errors is not None:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    return LoadResult(float(rate.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], client_cpu)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk(port: int, seconds: float, connections: int) -> LoadResult:
    """`wrk -t1 -c<connections> -d<seconds>s --latency` after a short warm-up; its CPU from the children's rusage."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk); --client http_load needs nothing")
    url = f"http://127.0.0.1:{port}/"
    warm_up = [wrk, "-t1", f"-c{WARM_UP_CONNECTIONS}", f"-d{WARM_UP_SECONDS:g}s", url]
    subprocess.run(pinned(LOAD_CPU, warm_up), capture_output=True, check=True)
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    cpu_before = _children_cpu_seconds()
    done = subprocess.run(pinned(LOAD_CPU, command), capture_output=True, text=True, check=True)
    return _parse_wrk(done.stdout, (_children_cpu_seconds() - cpu_before) / seconds)


def load_client(port: int, seconds: float, connections: int) -> dict[str, object]:
    """ferrovent's http_load against 127.0.0.1:port after a short warm-up, in this process: its report."""
    from ferrovent._core import http_load

    http_load("127.0.0.1", port, connections=WARM_UP_CONNECTIONS, duration=WARM_UP_SECONDS)
    report = http_load("127.0.0.1", port, connections=connections, duration=seconds)
    return {
        "requests_per_second": report.requests_per_second,
        "p99_ms": report.p99_ms,
        "cpu_use": report.cpu_use,
        "errors": report.errors,
        "first_error": report.first_error,
    }


def _http_load(port: int, seconds: float, connections: int) -> LoadResult:
    """`load_client` in a process of its own on the load CPU, as wrk would run."""
    argv = [sys.executable, str(HERE), "load-client", str(port), str(seconds), str(connections)]
    done = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["errors"] or report["p99_ms"] is None:
        raise RuntimeError(f"http_load saw {report['errors']} errors, the first: {report['first_error']}")
    return LoadResult(report["requests_per_second"], report["p99_ms"], report["cpu_use"])


def wsgi_hello(impl: str, client: str, seconds: float = 5.0, connections: int = 50) -> LoadResult:
    """`client` (wrk or http_load, one thread, `connections` keep-alive connections) against `impl` serving the
    hello-world app for `seconds`."""
    with ServerProcess("serve-wsgi", impl) as server:
        return load(client, server.port, seconds, connections)


def load(client: str, port: int, seconds: float, connections: int = 50) -> LoadResult:
    """`client` (wrk or http_load, one thread, `connections` keep-alive connections) against the HTTP server on
    127.0.0.1:port for `seconds`, after a short warm-up, from the load CPU."""
    return {"wrk": _wrk, "http_load": _http_load}[client](port, seconds, connections)


def tcp_echo(impl: str, seconds: float = 5.0, connections: int = 50) -> float:
    """Echo round trips/s on `impl`'s StreamServer, the client in another process."""
    return tcp_echo_with_cpu(impl, seconds, connections)[0]


def tcp_echo_with_cpu(impl: str, seconds: float = 5.0, connections: int = 50) -> tuple[float, float]:
    """Echo round trips/s on `impl`'s StreamServer, and the server's CPU microseconds per round trip."""
    return _echo_with_cpu("serve-echo", impl, seconds, connections)


def websocket_echo_with_cpu(impl: str, seconds: float = 5.0, connections: int = 50) -> tuple[float, float]:
    """WebSocket echo messages/s through gevent-websocket on `impl`'s pywsgi, and the server's CPU microseconds
    per message."""
    return _echo_with_cpu("serve-websocket", impl, seconds, connections, "websocket")


def _echo_with_cpu(mode: str, impl: str, seconds: float, connections: int, *client_args: str) -> tuple[float, float]:
    """`echo_client` against `impl`'s server `mode` from the load CPU: round trips/s, and the server's CPU
    microseconds per round trip (its CPU time over the client's run divided by the round trips)."""
    with ServerProcess(mode, impl) as server:
        argv = [sys.executable, str(HERE), "echo-client", str(server.port), str(seconds), str(connections)]
        argv += client_args
        cpu_before = server.cpu_seconds()
        done = subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, text=True, check=True)
        cpu_used = server.cpu_seconds() - cpu_before
    rate = float(done.stdout.strip().splitlines()[-1])
    return rate, cpu_used / (rate * seconds) * 1e6


# -- the standalone table -------------------------------------------------------------------------------------


def _importable(impl: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {impl}"], capture_output=True)
    return probe.returncode == 0


def _table(rounds: int, seconds: float, impls: list[str], client: str) -> str:
    rates: dict[str, list[float]] = {impl: [] for impl in impls}
    p99s: dict[str, list[float]] = {impl: [] for impl in impls}
    echoes: dict[str, list[float]] = {impl: [] for impl in impls if impl in ECHO_IMPLS}
    for round_index in range(rounds):
        order = impls if round_index % 2 == 0 else impls[::-1]
        for impl in order:
            result = wsgi_hello(impl, client, seconds)
            rates[impl].append(result.requests_per_second)
            p99s[impl].append(result.p99_ms)
            print(f"round {round_index + 1} {impl}: {result.requests_per_second:,.0f} req/s, p99 {result.p99_ms} ms")
            if impl in echoes:
                echoes[impl].append(tcp_echo(impl, seconds))
                print(f"round {round_index + 1} {impl}: {echoes[impl][-1]:,.0f} echo round trips/s")
    median = {impl: statistics.median(values) for impl, values in rates.items()}
    lines = [
        f"WSGI hello world, {client} with 1 thread, 50 connections, {seconds:g} s; server on CPU {SERVER_CPU}, "
        f"{client} on CPU {LOAD_CPU}; medians of {rounds} rounds",
        "",
        f"{'server':<12}{'requests/s':>14}{'p99 ms':>10}{'ferrovent is':>16}",
    ]
    for impl in impls:
        ratio = f"{median['ferrovent'] / median[impl]:.2f}x" if "ferrovent" in median and impl != "ferrovent" else ""
        lines.append(f"{impl:<12}{median[impl]:>14,.0f}{statistics.median(p99s[impl]):>10.2f}{ratio:>16}")
    if echoes:
        lines += ["", f"TCP echo, 50 connections x 64 B, StreamServer; medians of {rounds} rounds", ""]
        lines.append(f"{'server':<12}{'round trips/s':>14}")
        for impl, values in echoes.items():
            lines.append(f"{impl:<12}{statistics.median(values):>14,.0f}")
    return "\n".join(lines)


def main() -> None:
    servers = {"serve-wsgi": serve_wsgi, "serve-echo": serve_echo, "serve-websocket": serve_websocket}
    if len(sys.argv) > 1 and sys.argv[1] in servers:
        servers[sys.argv[1]](sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "echo-client":
        print(echo_client(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5:] == ["websocket"]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load-client":
        print(json.dumps(load_client(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description="WSGI and echo servers under load, side by side.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--impls", default=",".join(WSGI_IMPLS))
    parser.add_argument("--client", choices=LOAD_CLIENTS, default=default_load_client(), help="load generator")
    args = parser.parse_args()
    impls = []
    for impl in args.impls.split(","):
        if _importable(impl):
            impls.append(impl)
        else:
            print(f"skipping {impl}: it does not import", file=sys.stderr)
    print(_table(args.rounds, args.seconds, impls, args.client))


if __name__ == "__main__":
    main()
