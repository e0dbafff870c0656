"""Real peers for the end-to-end tests: a slow HTTP(S) server in another process, and a redis-server.

The HTTP(S) server runs in its own process (``python -m tests.servers CERT KEY``), with a thread per
connection, so the patched client under test is the only ferrovent in play. ``GET /data?size=N&delay=S`` waits
S seconds and then answers N bytes of `body(N)`, so a client can check the bytes arrived intact.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.tls_helpers import CertFiles, server_context

ROOT = Path(__file__).resolve().parents[1]
REDIS_SERVER = "/usr/bin/redis-server"


def body(size: int) -> bytes:
    """The ``size`` bytes the server sends for ``/data?size=size``: a pattern that shows a dropped or moved byte."""
    pattern = bytes(range(251))  # a prime length, so the pattern does not line up with buffer sizes
    return (pattern * (size // len(pattern) + 1))[:size]


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path != "/data":
            self.send_error(404)
            return
        time.sleep(float(query.get("delay", ["0"])[0]))
        payload = body(int(query.get("size", ["0"])[0]))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        pass  # keep the test output clean


class _TLSServer(ThreadingHTTPServer):
    """Handshakes in the connection's own thread, so a slow client never holds up accept()."""

    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops SYNs when 20 clients connect at once (1 s retry)

    def __init__(self, address, context: ssl.SSLContext | None):
        super().__init__(address, _SlowHandler)
        self.context = context

    def finish_request(self, request, client_address) -> None:
        if self.context is not None:
            request = self.context.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)


def serve(cert: str | None, key: str | None) -> None:
    """Serves on a free loopback port until killed; prints ``PORT <n>`` once listening. No cert: plain HTTP."""
    context = server_context(CertFiles(Path(cert), Path(key))) if cert else None
    server = _TLSServer(("127.0.0.1", 0), context)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


@contextlib.contextmanager
def slow_server(files: CertFiles | None = None) -> Iterator[str]:
    """Runs the server in a child process; yields its base URL (https with ``files``' certificate if given)."""
    args = [str(files.cert), str(files.key)] if files else []
    proc = subprocess.Popen([sys.executable, "-m", "tests.servers", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"server did not start: {line!r}"
        yield f"{'https' if files else 'http'}://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[int]:
    """A throwaway redis-server on a free loopback port, persisting nothing; yields the port."""
    executable = shutil.which("redis-server") or REDIS_SERVER
    for _ in range(3):  # the free port may be taken between the probe and the bind: try another
        port = _free_port()
        proc = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline and not _answers_ping(port):
            time.sleep(0.02)
        if proc.poll() is None and _answers_ping(port):
            break
        proc.kill()
        proc.wait(10)
    else:
        raise RuntimeError("redis-server did not start")
    try:
        yield port
    finally:
        proc.kill()
        proc.wait(10)


if __name__ == "__main__":
    serve(*(sys.argv[1:3] if len(sys.argv) >= 3 else (None, None)))
