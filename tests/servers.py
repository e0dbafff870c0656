"""Real peers for the end-to-end tests: a slow HTTP(S) server in another process, a redis-server and a PostgreSQL.

The HTTP(S) server runs in its own process (``python -m tests.servers CERT KEY``), with a thread per
connection, so the patched client under test is the only ferrovent in play. ``GET /data?size=N&delay=S`` waits
S seconds and then answers N bytes of `body(N)`, so a client can check the bytes arrived intact.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
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


def free_port() -> int:
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
        port = free_port()
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


def _postgres_program(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or in Debian's versioned directory (the newest version)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda path: int(path.parts[-3]))
    return str(candidates[-1]) if candidates else None


def postgres_available() -> bool:
    return _postgres_program("initdb") is not None and _postgres_program("pg_ctl") is not None


def _postgres_account() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as Debian's ``postgres`` account (or ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no postgres or nobody account to run PostgreSQL as")


@contextlib.contextmanager
def postgres_server() -> Iterator[int]:
    """A throwaway PostgreSQL cluster in a temporary directory, on a free loopback port, trusting local
    connections (user ``postgres``, database ``postgres``); yields the port. Durability is off: it holds nothing."""
    account = _postgres_account()
    directory = Path(tempfile.mkdtemp(prefix="ferrovent-pg-"))  # not under pytest's 0700 tmp: the account reads it
    data = directory / "data"
    try:
        if account is not None:
            entry = pwd.getpwnam(account)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        as_account = {"user": account} if account is not None else {}
        subprocess.run(
            [_postgres_program("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
            check=True,
            capture_output=True,
            cwd=directory,
            **as_account,
        )
        for _ in range(3):  # the free port may be taken between the probe and the bind: try another
            port = free_port()
            options = (
                f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={directory} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            started = subprocess.run(
                [_postgres_program("pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w", "-t", "30"]
                + ["-o", options, "start"],
                capture_output=True,
                cwd=directory,
                **as_account,
            )
            if started.returncode == 0:
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start: {(directory / 'log').read_text(errors='replace')}")
        try:
            yield port
        finally:
            subprocess.run(
                [_postgres_program("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                cwd=directory,
                **as_account,
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    serve(*(sys.argv[1:3] if len(sys.argv) >= 3 else (None, None)))
