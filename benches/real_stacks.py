"""Benchmarks of real stacks: popular clients and servers on top of the library, against real peers.

- `requests_fanout`: 200 greenlets x 50 GETs, each greenlet through its own `requests.Session` (after patch_all),
  against nginx (Debian's nginx-light or nginx) with keep-alive: requests/s.
- `redis_clients`: 100 greenlets doing SET/GET through one redis-py client against a throwaway redis-server: ops/s.
- `flask_postgres`: a Flask view doing one indexed SELECT through a psycopg 3 pool (flask_postgres_app.py), served by
  gunicorn with ferrovent's worker or `-k gevent`, loaded by the WSGI benches' load client: requests/s and p99.
- `tls`: handshakes/s of a TLS 1.2 server (ECDHE P-256 with an ECDSA P-256 certificate), and 1 MiB transfers/s on
  kept connections, the server a StreamServer in a process of its own, the clients threads in another; and the
  server's CPU per handshake and per transfer.
- `fanout_latency`: p99 round trip of a probe connection to the echo StreamServer while the TCP echo client keeps
  50 connections busy.

The redis-server and PostgreSQL peers are started as the tests start them (tests/servers.py). Every bench records
the versions of its peers in `PEERS` and raises `PeerMissing` when its peer cannot be started. Internal entry
points (servers and clients in processes of their own, as in wsgi_wrk.py):

    python benches/real_stacks.py serve-tls IMPL PORT CERT_DIR     # the TLS StreamServer; prints READY
    python benches/real_stacks.py tls-client PORT SECONDS handshake|transfer THREADS   # prints operations/s
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import wsgi_wrk

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: tests.servers starts redis-server and PostgreSQL
from tests.servers import (  # noqa: E402
    REDIS_SERVER,
    accepts,
    free_port,
    postgres_available,
    postgres_server,
    redis_server,
)
from tests.tls_helpers import make_self_signed  # noqa: E402

NGINX = "/usr/sbin/nginx"  # Debian's, outside a user's PATH
PEERS: dict[str, str] = {}  # program -> version, of the peers this run started
START_SECONDS = 15
TLS_PAYLOAD = bytes(1024 * 1024)
TLS_CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"
TLS_CLIENT_THREADS = 8
TLS_READ_SIZE = 256 * 1024  # a TLS client's read buffer, one per thread
HANDSHAKE, TRANSFER = b"H", b"T"  # what a TLS client asks for: a one-byte answer, or TLS_PAYLOAD
PROBE_INTERVAL = 0.005


class PeerMissing(Exception):
    """The bench's peer (a server that is neither library) cannot be started here: the bench is skipped."""


def _first_line(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    return (done.stdout or done.stderr).strip().splitlines()[0]


def _wait_until(ready, process: subprocess.Popen, what: str) -> None:
    """Polls `ready()` until it holds; raises if `process` exits first or START_SECONDS pass."""
    deadline = time.monotonic() + START_SECONDS
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit status {process.poll()})")
        time.sleep(0.05)


def _patched(lib: ModuleType) -> None:
    importlib.import_module(f"{lib.__name__}.monkey").patch_all()


# -- requests_fanout ------------------------------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "Hello, World!"; }}
    }}
}}
"""


def _program(name: str, debian_path: str, package: str) -> str:
    """The peer's program: on PATH or where Debian's `package` puts it; PeerMissing if neither."""
    found = shutil.which(name) or (debian_path if os.access(debian_path, os.X_OK) else None)
    if found is None:
        raise PeerMissing(f"{name} is not installed (Debian: apt-get install {package})")
    return found


@contextlib.contextmanager
def nginx(program: str) -> Iterator[int]:
    """nginx, one worker process pinned to the server CPU, answering every GET with 13 bytes; yields its port."""
    PEERS["nginx"] = _first_line([program, "-v"])
    with tempfile.TemporaryDirectory(prefix="ferrovent-nginx-") as directory:
        port = free_port()
        conf = Path(directory, "nginx.conf")
        conf.write_text(NGINX_CONF.format(dir=directory, port=port))
        argv = [program, "-p", directory, "-c", str(conf), "-e", f"{directory}/error.log"]
        process = subprocess.Popen(wsgi_wrk.pinned(wsgi_wrk.SERVER_CPU, argv), stderr=subprocess.DEVNULL)
        try:
            try:
                _wait_until(lambda: accepts(port), process, "nginx")
            except RuntimeError as error:
                log = Path(directory, "error.log")
                raise PeerMissing(f"{error}: {log.read_text() if log.exists() else ''}")
            yield port
        finally:
            process.kill()
            process.wait(10)


def requests_fanout(lib: ModuleType, quick: bool) -> float:
    """GETs/s of greenlets each doing GETs in a row through its own keep-alive requests.Session, against nginx."""
    program = _program("nginx", NGINX, "nginx-light")
    _patched(lib)
    import requests

    clients, gets_each = (20, 10) if quick else (200, 50)
    with nginx(program) as port:
        url = f"http://127.0.0.1:{port}/"

        def client() -> None:
            with requests.Session() as session:
                for _ in range(gets_each):
                    session.get(url, timeout=30).raise_for_status()

        start = time.perf_counter()
        greenlets = [lib.spawn(client) for _ in range(clients)]
        lib.joinall(greenlets, raise_error=True)
        elapsed = time.perf_counter() - start
    return clients * gets_each / elapsed


# -- redis_clients --------------------------------------------------------------------------------------------


def redis_clients(lib: ModuleType, quick: bool) -> float:
    """SET and GET commands/s of 100 greenlets sharing one redis-py client (its pool: a connection each)."""
    program = _program("redis-server", REDIS_SERVER, "redis-server")
    _patched(lib)
    import redis

    PEERS["redis-server"] = _first_line([program, "--version"])
    clients, pairs_each = (100, 10) if quick else (100, 250)
    with tempfile.TemporaryDirectory(prefix="ferrovent-redis-") as directory, redis_server(Path(directory)) as port:
        client = redis.Redis(host="127.0.0.1", port=port)

        def worker(index: int) -> None:
            key = f"key:{index}"
            for value in range(pairs_each):
                client.set(key, value)
                if int(client.get(key)) != value:
                    raise RuntimeError(f"{key} did not read back {value}")

        start = time.perf_counter()
        lib.joinall([lib.spawn(worker, index) for index in range(clients)], raise_error=True)
        elapsed = time.perf_counter() - start
        client.close()
    return clients * pairs_each * 2 / elapsed


# -- flask_postgres -------------------------------------------------------------------------------------------

GUNICORN_WORKERS = {"ferrovent": "ferrovent.gunicorn.Worker", "gevent": "gevent"}
ITEMS = 10_000  # rows of the table the app reads


def _fill_items(port: int) -> None:
    """The table the app reads: ITEMS rows with an integer primary key."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        PEERS["postgres"] = "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0]
        conn.execute("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO items SELECT n, 'item ' || n FROM generate_series(0, %s) AS n", (ITEMS - 1,))
        conn.execute("ANALYZE items")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def gunicorn(impl: str, database_port: int) -> Iterator[int]:
    """flask_postgres_app on gunicorn with `impl`'s worker (one process, pinned to the server CPU); yields its port
    once it answered a request."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-k", GUNICORN_WORKERS[impl], "-w", "1", "--worker-connections", "1000"]
    argv += ["-b", f"127.0.0.1:{port}", "--chdir", str(HERE.parent), "--log-level", "warning", "flask_postgres_app:app"]
    env = {**os.environ, "FLASK_POSTGRES_PORT": str(database_port), "FLASK_POSTGRES_ROWS": str(ITEMS)}
    errors = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(wsgi_wrk.pinned(wsgi_wrk.SERVER_CPU, argv), env=env, stderr=errors, text=True)
    try:
        try:
            _wait_until(lambda: _answers(f"http://127.0.0.1:{port}/"), process, f"gunicorn -k {GUNICORN_WORKERS[impl]}")
        except RuntimeError as error:
            errors.seek(0)
            raise RuntimeError(f"{error}\n{errors.read()}")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        errors.close()


def flask_postgres(impl: str, client: str, seconds: float) -> wsgi_wrk.LoadResult:
    """`client` with 50 connections against the Flask app on gunicorn with `impl`'s worker, PostgreSQL behind."""
    if not postgres_available():
        raise PeerMissing("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    try:
        import psycopg_pool  # noqa: F401  (the app's pool; checked here so a missing one skips instead of failing)
    except ImportError:
        raise PeerMissing("psycopg_pool is not installed (pip install psycopg-pool)")
    with postgres_server() as database_port:
        _fill_items(database_port)
        with gunicorn(impl, database_port) as port:
            return wsgi_wrk.load(client, port, seconds, 50)


# -- tls ------------------------------------------------------------------------------------------------------


def _server_context(ssl_module: ModuleType, cert_dir: Path) -> ssl.SSLContext:
    context = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_dir / "cert.pem", cert_dir / "key.pem")
    context.maximum_version = ssl_module.TLSVersion.TLSv1_2  # the ECDHE curve and cipher below, not TLS 1.3's
    context.set_ecdh_curve("prime256v1")
    context.set_ciphers(TLS_CIPHER)
    return context


def _answer_tls(sock, address) -> None:
    while True:
        asked = sock.recv(1)
        if not asked:
            return
        sock.sendall(TLS_PAYLOAD if asked == TRANSFER else asked)


def serve_tls(impl: str, port: int, cert_dir: Path) -> None:
    """`impl`'s StreamServer with TLS on 127.0.0.1:port until killed; answers each byte a client sends."""
    ssl_module = importlib.import_module(f"{impl}.ssl")
    server_module = importlib.import_module(f"{impl}.server")
    context = _server_context(ssl_module, cert_dir)
    server = server_module.StreamServer(("127.0.0.1", port), _answer_tls, ssl_context=context)
    server.init_socket()
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print(wsgi_wrk.READY, flush=True)
    server.serve_forever()


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's work is measured, not the client's
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS_CIPHER)
    return context


def _recv_exactly(sock: ssl.SSLSocket, size: int, buffer: bytearray) -> None:
    """Reads `size` bytes into the thread's `buffer`, over and over: a read returns at most one 16 KiB TLS record,
    and a fresh bytes object of the asked size for each (as `recv` makes) cost the client an mmap, page faults and
    a munmap per record, more than the server's whole work for it."""
    while size:
        received = sock.recv_into(buffer, min(size, len(buffer)))
        if not received:
            raise RuntimeError("the TLS server closed the connection")
        size -= received


def tls_client(port: int, seconds: float, mode: str, threads: int) -> float:
    """Full handshakes/s (a new connection each, one byte echoed so the server finished its side), or 1 MiB
    transfers/s on one kept connection per thread; `threads` blocking clients (OpenSSL's work releases the GIL)."""
    context = _client_context()
    done = [0] * threads
    deadline = time.perf_counter() + seconds

    def connect() -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return context.wrap_socket(sock)

    def handshakes(index: int) -> None:
        buffer = bytearray(1)
        while time.perf_counter() < deadline:
            with connect() as sock:
                sock.sendall(HANDSHAKE)
                _recv_exactly(sock, 1, buffer)
            done[index] += 1

    def transfers(index: int) -> None:
        buffer = bytearray(TLS_READ_SIZE)
        with connect() as sock:
            while time.perf_counter() < deadline:
                sock.sendall(TRANSFER)
                _recv_exactly(sock, len(TLS_PAYLOAD), buffer)
                done[index] += 1

    target = handshakes if mode == "handshake" else transfers
    workers = [threading.Thread(target=target, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / seconds


def _run_tls_client(port: int, seconds: float, mode: str) -> float:
    argv = [sys.executable, str(HERE), "tls-client", str(port), str(seconds), mode, str(TLS_CLIENT_THREADS)]
    done = subprocess.run(wsgi_wrk.pinned(wsgi_wrk.LOAD_CPU, argv), capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class TLSResult:
    handshakes_per_second: float
    transfers_per_second: float
    handshake_cpu_us: float  # the server process's CPU (user + system) per handshake: steadier than rates on a
    transfer_cpu_us: float  # busy machine, where the rates swing with what else runs


def tls(impl: str, seconds: float) -> TLSResult:
    """Handshakes/s and 1 MiB transfers/s of `impl`'s TLS StreamServer, and its CPU per operation."""
    PEERS["openssl"] = ssl.OPENSSL_VERSION
    with tempfile.TemporaryDirectory(prefix="ferrovent-tls-") as directory:
        make_self_signed(Path(directory))  # an ECDSA P-256 key
        with wsgi_wrk.ServerProcess("serve-tls", impl, HERE, (directory,)) as server:
            figures = []
            for mode in ("handshake", "transfer"):
                cpu_before = server.cpu_seconds()
                rate = _run_tls_client(server.port, seconds, mode)
                figures += [rate, (server.cpu_seconds() - cpu_before) / (rate * seconds) * 1e6]
    return TLSResult(figures[0], figures[2], figures[1], figures[3])


# -- fanout_latency -------------------------------------------------------------------------------------------


def _probe(port: int, seconds: float) -> list[float]:
    """Round trips (ms) of 64 bytes on a connection of its own, one every PROBE_INTERVAL, for `seconds`."""
    latencies = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            sock.sendall(wsgi_wrk.ECHO_MESSAGE)
            pending = len(wsgi_wrk.ECHO_MESSAGE)
            while pending:
                piece = sock.recv(pending)
                if not piece:
                    raise RuntimeError("the echo server closed the probe's connection")
                pending -= len(piece)
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(PROBE_INTERVAL)
    return latencies


def fanout_latency(impl: str, seconds: float) -> float:
    """p99 ms of the probe while the TCP echo client (50 connections, its own process) loads `impl`'s server."""
    with wsgi_wrk.echo_server(impl) as server:
        load_seconds = seconds + 2  # the load starts before the probe and outlasts it
        argv = [sys.executable, str(wsgi_wrk.HERE), "echo-client", str(server.port), str(load_seconds), "50"]
        load = subprocess.Popen(wsgi_wrk.pinned(wsgi_wrk.LOAD_CPU, argv), stdout=subprocess.DEVNULL)
        try:
            time.sleep(1)
            if load.poll() is not None:
                raise RuntimeError(f"the echo client exited early (status {load.returncode})")
            latencies = _probe(server.port, seconds)
            if load.wait(load_seconds + 10) != 0:
                raise RuntimeError(f"the echo client failed (status {load.returncode})")
        finally:
            if load.poll() is None:
                load.kill()
                load.wait(10)
    return statistics.quantiles(latencies, n=100)[98]


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "serve-tls":
        serve_tls(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    elif command == "tls-client":
        print(tls_client(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])))
    else:
        sys.exit(f"usage: see {HERE.name}'s docstring; run the benches through scenarios.py or run.py")


if __name__ == "__main__":
    main()
