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
            except requests.ConnectionError:
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
