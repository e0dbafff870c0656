"""The real gunicorn, in a subprocess, running ferrovent's worker class (``-k ferrovent.gunicorn.Worker``)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import gunicorn as gunicorn_release
import pytest
import requests

from tests.serving import read_full_response

pytestmark = pytest.mark.timeout(60)

APP = textwrap.dedent(
    """
    import os
    import time  # patched by the worker: time.sleep parks only the request's greenlet

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/sleep":
            time.sleep(float(environ["QUERY_STRING"]))
        body = environ["wsgi.input"].read() if path == "/echo" else f"pid {os.getpid()} {path}".encode()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# gunicorn 24 added a control socket in the working directory; older releases (the last for Python 3.9) lack the flag.
CONTROL_SOCKET_OFF = ("--no-control-socket",) if gunicorn_release.version_info >= (24,) else ()


@contextlib.contextmanager
def gunicorn(tmp_path: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """Starts gunicorn with the ferrovent worker on a free port; yields (base url, master process, log path)."""
    (tmp_path / "app.py").write_text(APP)
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    command = [
        shutil.which("gunicorn") or "gunicorn",
        "-k",
        "ferrovent.gunicorn.Worker",
        "-b",
        f"127.0.0.1:{port}",
        *CONTROL_SOCKET_OFF,
        "--chdir",
        str(tmp_path),
        *options,
        "app:app",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(log, "w") as log_file:
        master = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(base + "/ready", timeout=1)
                break
            except (requests.ConnectionError, requests.Timeout):  # not bound yet, or bound with no worker booted
                if master.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield base, master, log
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(10)


def test_requests_and_a_megabyte_echo(tmp_path):
    with gunicorn(tmp_path, "-w", "2") as (base, _, _):
        response = requests.get(base + "/hello", timeout=5)
        assert response.status_code == 200 and response.content.endswith(b" /hello")
        body = os.urandom(1024 * 1024)
        assert requests.post(base + "/echo", data=body, timeout=10).content == body


def test_thirty_slow_requests_overlap_on_one_worker(tmp_path):
    with gunicorn(tmp_path, "-w", "1") as (base, _, _):
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(lambda _: requests.get(base + "/sleep?1", timeout=10), range(30)))
        elapsed = time.monotonic() - started
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content.split()[1] for answer in answers}) == 1  # one worker pid served them all
    assert elapsed < 4.0


def test_sigterm_finishes_the_request_in_flight(tmp_path):
    with gunicorn(tmp_path, "-w", "1", "--graceful-timeout", "10") as (base, master, log):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(requests.get, base + "/sleep?1.5", timeout=10)
            time.sleep(0.5)
            master.send_signal(signal.SIGTERM)
            response = in_flight.result()
        assert master.wait(15) == 0
    assert response.status_code == 200 and response.content.startswith(b"pid ")
    text = log.read_text()
    assert "Worker exiting" in text
    assert "exited with code" not in text and "SIGKILL" not in text and "Traceback" not in text, text


def test_max_requests_restarts_the_worker(tmp_path):
    with gunicorn(tmp_path, "-w", "1", "--max-requests", "3") as (base, _, log):
        pids = set()
        for _ in range(8):
            pids.add(requests.get(base + "/pid", timeout=5).content.split()[1])
        assert len(pids) >= 2, log.read_text()


# -- no unannounced closes: a response after which the worker closes says "Connection: close" --


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


class _KeepAliveClient:
    """One raw keep-alive connection: each request's response is read whole, with its headers."""

    def __init__(self, base: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", _port(base)), timeout=10)
        self.stream = self.sock.makefile("rb")

    def get(self, path: str) -> tuple[int, dict[str, str]]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, _ = read_full_response(self.stream)
        return status, headers

    def assert_closed(self) -> None:
        assert self.stream.read() == b""

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def _until_close_announced(client: _KeepAliveClient, bound: float) -> int:
    """Sends requests until a response says ``Connection: close`` (each must be answered); returns how many."""
    deadline = time.monotonic() + bound
    count = 0
    while time.monotonic() < deadline:
        status, headers = client.get("/hello")
        count += 1
        assert status == 200
        if headers.get("connection") == "close":
            client.assert_closed()
            return count
        time.sleep(0.05)
    raise AssertionError("no response said Connection: close")


def test_max_requests_announces_the_close(tmp_path):
    with gunicorn(tmp_path, "-w", "1", "--max-requests", "4", "--keep-alive", "10") as (base, _, _):
        # The readiness probe was request 1; "other" is a keep-alive connection idle across the worker's stop.
        first, other = _KeepAliveClient(base), _KeepAliveClient(base)
        try:
            assert other.get("/hello")[1].get("connection") is None  # request 2
            assert _until_close_announced(first, 5) == 2  # requests 3 and 4: the 4th is the last, and says so
            status, headers = other.get("/hello")  # the stopping worker still answers, and says it closes
            assert status == 200 and headers["connection"] == "close"
            other.assert_closed()
        finally:
            first.close()
            other.close()


def test_sighup_announces_the_close(tmp_path):
    with gunicorn(tmp_path, "-w", "1", "--keep-alive", "10") as (base, master, _):
        client = _KeepAliveClient(base)
        try:
            assert client.get("/hello")[1].get("connection") is None
            master.send_signal(signal.SIGHUP)  # new workers, the old ones stopped gracefully
            _until_close_announced(client, 10)
        finally:
            client.close()


def test_keep_alive_zero_closes_every_connection_and_says_so(tmp_path):
    with gunicorn(tmp_path, "-w", "1", "--keep-alive", "0") as (base, _, _):
        for _ in range(3):
            client = _KeepAliveClient(base)
            try:
                status, headers = client.get("/hello")
                assert status == 200 and headers["connection"] == "close"
                client.assert_closed()
            finally:
                client.close()
