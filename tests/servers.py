"""Real peers for the end-to-end tests: a slow HTTP(S) server in another process, a redis-server, a PostgreSQL and a
RabbitMQ broker.

The HTTP(S) server runs in its own process (``python -m tests.servers CERT KEY``), with a thread per
connection, so the patched client under test is the only ferrovent in play. ``GET /data?size=N&delay=S`` waits
S seconds and then answers N bytes of `body(N)`, so a client can check the bytes arrived intact.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
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
# Debian's rabbitmq-server package: the program itself (/usr/sbin/rabbitmq-server would switch to the rabbitmq user).
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


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


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


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


def rabbitmq_available() -> bool:
    return os.access(RABBITMQ_SERVER, os.X_OK) and shutil.which("epmd") is not None


def stop_group(proc: subprocess.Popen, how: signal.Signals = signal.SIGTERM) -> None:
    """``how`` to the process's whole group (a started session: its children too), SIGKILL if it is still there
    after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, how)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.contextmanager
def rabbitmq_server(directory: Path) -> Iterator[int]:
    """A throwaway RabbitMQ broker on a free loopback port, its data, logs and Erlang cookie in ``directory``; yields
    the AMQP port (user and password ``guest``). It gets its own epmd on a free port, started and stopped here, so
    nothing stays running and no system-wide epmd is touched. Starting takes about 6 s."""
    epmd_port, amqp_port, dist_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "HOME": str(directory),  # the Erlang cookie
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": "ferrovent-test@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_LOGS": str(directory / "rabbit.log"),
        # none of the system's configuration: these files do not exist
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
    }
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    epmd = subprocess.Popen([shutil.which("epmd"), "-port", str(epmd_port)], **quiet)
    try:
        broker = subprocess.Popen([RABBITMQ_SERVER], env=env, cwd=directory, **quiet)
        try:
            deadline = time.monotonic() + 60
            while broker.poll() is None and time.monotonic() < deadline and not accepts(amqp_port):
                time.sleep(0.1)
            if broker.poll() is not None or not accepts(amqp_port):
                log = directory / "rabbit.log"
                raise RuntimeError(f"RabbitMQ did not start: {log.read_text(errors='replace') if log.exists() else ''}")
            yield amqp_port
        finally:
            stop_group(broker)
    finally:
        stop_group(epmd)


if __name__ == "__main__":
    serve(*(sys.argv[1:3] if len(sys.argv) >= 3 else (None, None)))
