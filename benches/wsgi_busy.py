"""pywsgi with a connection that never has to wait: probe latency beside it, and an 8 MB body read line by line.

`fairness(impl)`: one client pipelines hello-world requests as fast as the server answers, another uploads a large
body that the app reads in 64 KiB pieces, and a probe sends one request every 10 ms on a third connection; the
figure is the probe's p99 latency in ms. `readline(impl)`: the milliseconds to serve one POST of 8 MB that the app
reads line by line (80-byte lines).

The server runs in this process (the caller's fresh one); the clients are forked processes of plain blocking
sockets, so that they compete with the server for the CPUs, not for its GIL.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import socket
import statistics
import tempfile
import time

PIECE = 64 * 1024
LINE = b"x" * 79 + b"\n"
HELLO = b"GET /hello HTTP/1.1\r\nHost: b\r\n\r\n"


def _app(environ: dict, start_response) -> list[bytes]:
    path = environ["PATH_INFO"]
    stream = environ["wsgi.input"]
    size = 0
    if path == "/upload":
        while piece := stream.read(PIECE):
            size += len(piece)
    elif path == "/lines":
        for line in stream:
            size += len(line)
    body = str(size).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_one(stream) -> bytes:
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return stream.read(length)


def _pipeliner(port: int, seconds: float) -> None:
    """Sends batches of 1,000 pipelined requests and reads their answers, until ``seconds`` have passed."""
    with _connect(port) as sock, sock.makefile("rb") as stream:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sock.sendall(HELLO * 1000)
            for _ in range(1000):
                stream.readline()
                _read_one(stream)


def _uploader(port: int, seconds: float) -> None:
    """Uploads bodies of 256 MiB, as fast as the server takes them, until ``seconds`` have passed."""
    piece = b"u" * (1 << 20)
    size = 256 * len(piece)
    with _connect(port) as sock, sock.makefile("rb") as stream:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // len(piece)):
                sock.sendall(piece)
            stream.readline()
            _read_one(stream)


def _probe(port: int, seconds: float, out: str) -> None:
    """One request every 10 ms on its own connection; writes the latencies (ms) to ``out``."""
    latencies = []
    with _connect(port) as sock, sock.makefile("rb") as stream:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            sock.sendall(HELLO)
            stream.readline()
            _read_one(stream)
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
    with open(out, "w") as file:
        json.dump(latencies, file)


def _poster(port: int, out: str) -> None:
    body = LINE * (8 * 1024 * 1024 // len(LINE))
    with _connect(port) as sock, sock.makefile("rb") as stream:
        started = time.perf_counter()
        sock.sendall(b"POST /lines HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body)
        stream.readline()
        assert int(_read_one(stream)) == len(body)
        elapsed = time.perf_counter() - started
    with open(out, "w") as file:
        json.dump(elapsed, file)


def _serve_until(impl: str, clients: list[tuple], result_of: int):
    """Serves `_app` with `impl` until the client ``clients[result_of]`` ends; returns what it wrote."""
    lib = importlib.import_module(impl)
    pywsgi = importlib.import_module(f"{impl}.pywsgi")
    server = pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=None, error_log=None)
    server.init_socket()
    lib.get_hub().exception_stream = None  # killing the clients at the end fails their requests: no report
    port = server.server_port
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        processes = []
        for i, (target, *args) in enumerate(clients):
            extra = (out,) if i == result_of else ()
            processes.append(context.Process(target=target, args=(port, *args, *extra), daemon=True))
        server.start()
        for process in processes:
            process.start()
        watched = processes[result_of]
        while watched.exitcode is None:
            lib.sleep(0.05)
        for process in processes:
            process.kill()
            process.join()
        server.stop(timeout=1)
        with open(out) as file:
            return json.load(file)


def fairness(impl: str, seconds: float) -> float:
    """The probe's p99 latency (ms) while one connection pipelines and another uploads."""
    clients = [(_pipeliner, seconds + 1), (_uploader, seconds + 1), (_probe, seconds)]
    latencies = _serve_until(impl, clients, result_of=2)
    return statistics.quantiles(latencies, n=100)[98]


def readline(impl: str) -> float:
    """Milliseconds to serve one 8 MB POST that the app reads line by line."""
    return 1000 * _serve_until(impl, [(_poster,)], result_of=0)
