"""Libraries that import gevent by name, on ferrovent installed as gevent, against real local servers.

Every program runs in its own interpreter through tests/integrations/as_gevent.py, which installs the alias and
blocks stock gevent (installed as a test dependency); each reports `proof` from the process that did the work:
``gevent`` is ferrovent and no module of stock gevent is loaded. Concurrency shows in the timings: waits that
overlap take about one wait, waits that serialize take their sum.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.child import ROOT
from tests.integrations.processes import AS_GEVENT, ENV, listening, running
from tests.integrations.scenarios import (
    CONCURRENT_SLEEPS,
    LOCUST_REQUESTS_PER_USER,
    PIKA_MESSAGES,
    SLEEP,
    ZMQ_IDLE_WAIT,
    ZMQ_MESSAGES,
    ZMQ_PEERS,
)
from tests.servers import free_port

pytestmark = pytest.mark.timeout(90)

# 50 waits of 0.5 s overlapped: about 0.5 s; serialized: 25 s.
OVERLAPPED = 1.5


def run_scenario(name: str, *args, as_gevent: bool = True) -> dict:
    prefix = AS_GEVENT if as_gevent else [sys.executable, "-m"]
    done = subprocess.run(
        [*prefix, "tests.integrations.scenarios", name, *map(str, args)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return json.loads(done.stdout.splitlines()[-1])


def concurrent_gets(url: str, count: int) -> tuple[float, list[str]]:
    """``count`` GETs of ``url`` at once from threads of this (unpatched) process: elapsed time and bodies."""

    def get(_) -> str:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.read().decode()

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        bodies = list(pool.map(get, range(count)))
    return time.monotonic() - started, bodies


def test_geventhttpclient_100_concurrent_gets(slow_http_url):
    result = run_scenario("geventhttpclient", slow_http_url)
    assert result["proof"] == "ferrovent"
    assert result["intact"] == 100
    assert result["elapsed"] < 3 * SLEEP, result  # serialized: 50 s


def test_grequests_map(slow_http_url):
    result = run_scenario("grequests", slow_http_url)
    assert result["proof"] == "ferrovent"
    assert result["intact"] == CONCURRENT_SLEEPS
    assert result["elapsed"] < OVERLAPPED, result


def test_psycogreen_psycopg2_pg_sleep(postgres_port):
    result = run_scenario("psycopg2_psycogreen", postgres_port)
    assert result["proof"] == "ferrovent"
    assert result["elapsed"] < OVERLAPPED, result


def test_psycopg3_pg_sleep(postgres_port):
    result = run_scenario("psycopg3", postgres_port)
    assert result["proof"] == "ferrovent"
    assert result["implementation"] in ("c", "binary")  # the C extension is there, and not used to wait
    assert result["elapsed"] < OVERLAPPED, result


def test_psycopg3_after_plain_ferrovent_patch_all(postgres_port):
    # No alias: psycopg finds ferrovent's monkey under gevent.monkey and waits through the patched select.
    result = run_scenario("psycopg3_after_ferrovent_patch_all", postgres_port, as_gevent=False)
    assert result["gevent"] is False  # stock gevent was not imported
    assert result["wait"] != "wait_c"
    assert result["elapsed"] < OVERLAPPED, result


def test_sentry_sdk_detects_gevent():
    result = run_scenario("sentry_sdk")
    assert result == {"proof": "ferrovent", "is_gevent": True, "contextvars_broken": False}


def assert_serves_concurrently(port: int) -> None:
    concurrent_gets(f"http://127.0.0.1:{port}/sleep?0", 1)  # gunicorn accepts before its worker has booted
    elapsed, bodies = concurrent_gets(f"http://127.0.0.1:{port}/sleep?{SLEEP}", 20)
    assert bodies == ["ferrovent"] * 20
    assert elapsed < 3 * SLEEP, elapsed  # serialized: 10 s


def test_bottle_gevent_server():
    command = [*AS_GEVENT, "tests.integrations.apps", "bottle"]
    with listening(lambda port: [*command, str(port)]) as port:
        assert_serves_concurrently(port)


@pytest.mark.parametrize("worker", ["gevent", "gevent_pywsgi"])
def test_gunicorn_gevent_workers(worker):
    command = [*AS_GEVENT, "gunicorn", "-k", worker, "-w", "1", "--worker-connections", "100"]
    with listening(lambda port: [*command, "-b", f"127.0.0.1:{port}", "tests.integrations.apps:wsgi"]) as port:
        assert_serves_concurrently(port)


def test_locust_headless_against_flask():
    users, seconds = 20, 2
    with listening(lambda port: [sys.executable, "-m", "tests.integrations.apps", "flask", str(port)]) as port:
        locust = [*AS_GEVENT, "locust", "-f", "tests/integrations/locustfile.py", "--headless", "--only-summary"]
        options = ["-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", f"http://127.0.0.1:{port}"]
        done = subprocess.run(
            [*locust, *options, "--json", "--skip-log"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert "PROOF ferrovent" in done.stderr
    (stats,) = json.loads(done.stdout)
    assert stats["num_failures"] == 0, stats
    # Each user asks for a 0.2 s page without pause: serialized users would make about seconds / 0.2 requests.
    assert stats["num_requests"] > 5 * seconds / 0.2, stats


def test_locust_distributed_master_and_two_workers():
    # Locust's master and workers talk over ZeroMQ through zmq.green: the workers connect before the master binds.
    users, master_port = 20, free_port()
    locust = [*AS_GEVENT, "locust", "-f", "tests/integrations/locustfile_counted.py"]
    worker = [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)]
    master = [*locust, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
    master += ["--expect-workers", "2", "--headless", "--only-summary", "--json", "--skip-log"]
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(
            listening(lambda port: [sys.executable, "-m", "tests.integrations.apps", "flask", str(port)])
        )
        workers = [stack.enter_context(running(worker)) for _ in range(2)]
        options = ["-u", str(users), "-r", str(users), "-t", "4s", "--host", f"http://127.0.0.1:{port}"]
        done = subprocess.run([*master, *options], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
        worker_logs = [output() for _, output in workers]
    assert done.returncode == 0, done.stderr
    assert "PROOF ferrovent" in done.stderr
    (stats,) = json.loads(done.stdout)
    assert (stats["num_requests"], stats["num_failures"]) == (users * LOCUST_REQUESTS_PER_USER, 0), (stats, done.stderr)
    for log in worker_logs:
        assert "PROOF ferrovent" in log, log
    assert sorted(log.count("USER STARTED") for log in worker_logs) == [users // 2] * 2, worker_logs


def test_celery_gevent_pool(redis_url, monkeypatch):
    monkeypatch.setenv("CELERY_REDIS_URL", redis_url)  # this process is the client: same application, same broker
    from celery import group

    from tests.integrations import celery_app

    worker = [*AS_GEVENT, "celery", "-A", "tests.integrations.celery_app", "worker", "-P", "gevent", "-c", "100"]
    options = ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"]
    # Killed at the end: Celery's warm and cold shutdowns take 5 to 6 s here, on stock gevent too.
    with running([*worker, *options], {"CELERY_REDIS_URL": redis_url}, signal.SIGKILL) as (_, output):
        try:
            assert celery_app.nap.delay(0).get(timeout=30) == "ferrovent"  # the worker is up
            started = time.monotonic()
            results = group(celery_app.nap.s(SLEEP) for _ in range(CONCURRENT_SLEEPS)).apply_async()
            assert results.get(timeout=20) == ["ferrovent"] * CONCURRENT_SLEEPS
            elapsed = time.monotonic() - started
        except Exception:
            print(output())
            raise
    assert elapsed < OVERLAPPED, elapsed  # serialized: 25 s


def test_pika_gevent_adapter_against_rabbitmq(rabbitmq_port):
    result = run_scenario("pika_gevent", rabbitmq_port)
    assert result["proof"] == "ferrovent"
    assert result["failures"] == []
    assert (result["received"], result["in_order"]) == (PIKA_MESSAGES, True), result
    assert result["ticked"], result  # the adapter's loop is the hub's: other greenlets ran meanwhile


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_zmq_green_req_rep_and_pub_sub(transport, tmp_path):
    result = run_scenario("zmq_green", transport, tmp_path)
    assert result["proof"] == "ferrovent"
    assert result["answered"] == ZMQ_PEERS * ZMQ_MESSAGES, result  # every REQ greenlet got each of its answers
    assert result["intact"] == ZMQ_PEERS, result  # every subscriber got every message, in order
    # Every greenlet waits in recv() on the loop: the process spends next to no CPU over the wait.
    assert result["idle_wall"] >= ZMQ_IDLE_WAIT, result
    assert result["idle_cpu"] < 0.1 * ZMQ_IDLE_WAIT, result


def _uwsgi_program() -> str | None:
    """The uwsgi program pip built for this interpreter: found through its distribution's files, so also when it
    is installed in a base environment this one (a virtualenv) sees."""
    try:
        files = importlib.metadata.distribution("uwsgi").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    programs = [Path(file.locate()).resolve() for file in files if file.name == "uwsgi"]
    return next((str(program) for program in programs if program.is_file()), None)


UWSGI = _uwsgi_program()


@pytest.mark.skipif(UWSGI is None, reason="uwsgi is not installed in this environment (pip install uwsgi builds it)")
def test_uwsgi_gevent_loop_serves_flask_and_reloads_a_worker_once(tmp_path):
    log = tmp_path / "uwsgi.log"
    # --die-on-term: uWSGI 2.0's master reloads on SIGTERM, the signal the test stops it with.
    command = [UWSGI, "--home", sys.prefix, "--master", "--processes", "1", "--die-on-term", "--logto", str(log)]
    command += ["--gevent", "100", "--gevent-monkey-patch", "--module", "tests.integrations.uwsgi_app:app"]
    startup = {"PYTHONPATH": f"{ROOT / 'tests' / 'integrations' / 'uwsgi_startup'}:{ROOT}", "FERROVENT_AS_GEVENT": "1"}
    with listening(lambda port: [*command, "--http-socket", f"127.0.0.1:{port}"], startup) as port:
        url = f"http://127.0.0.1:{port}/sleep"
        try:
            proof, first_worker = proof_and_worker(f"{url}?0")
            assert proof == "ferrovent"
            elapsed, bodies = concurrent_gets(f"{url}?{SLEEP}", CONCURRENT_SLEEPS)
            assert bodies == [f"ferrovent {first_worker}"] * CONCURRENT_SLEEPS
            assert elapsed < OVERLAPPED, elapsed  # serialized: 25 s

            os.kill(int(first_worker), signal.SIGHUP)  # the worker reloads: it ends its hub and the master respawns it
            deadline = time.monotonic() + 20
            while (worker := proof_and_worker(f"{url}?0")[1]) == first_worker and time.monotonic() < deadline:
                time.sleep(0.05)
            assert worker != first_worker
            elapsed, bodies = concurrent_gets(f"{url}?{SLEEP}", CONCURRENT_SLEEPS)
            assert bodies == [f"ferrovent {worker}"] * CONCURRENT_SLEEPS  # the same new worker, still serving
            assert elapsed < OVERLAPPED, elapsed
            output = log.read_text(errors="replace")
            assert output.count("Respawned uWSGI worker") == 1 and "DAMN" not in output, output
        except Exception:
            print(log.read_text(errors="replace"))
            raise


def proof_and_worker(url: str) -> tuple[str, str]:
    """One GET of a uwsgi_app page: the serving process's proof and pid."""
    with urllib.request.urlopen(url, timeout=20) as response:
        proof, worker = response.read().decode().split()
    return proof, worker
