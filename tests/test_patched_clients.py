"""End to end: unmodified clients (urllib, requests, redis-py, http.client) after ``monkey.patch_all()``.

Each client runs in its own interpreter (patching is process-wide) against a real peer: the slow HTTP(S) server of
tests/servers.py in another process, or a real redis-server. Concurrency is shown by timing against the server's
delays and by the server's own view (redis' blocked clients), never by sleeping and hoping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.child import ROOT, run_child
from tests.servers import redis_server, slow_server
from tests.tls_helpers import make_self_signed

pytestmark = pytest.mark.timeout(60)

EXAMPLE = ROOT / "examples" / "concurrent_downloads.py"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_url(certificate):
    with slow_server(certificate) as url:
        yield url


@pytest.fixture(scope="module")
def cafile(certificate) -> str:
    return str(certificate.cert)


def os_threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_concurrent_downloads_example(https_url, cafile):
    sizes = [1000, 20000, 300000]
    urls = [f"{https_url}/data?size={size}&delay=1" for size in sizes]
    child = subprocess.Popen(
        [sys.executable, str(EXAMPLE), *urls],
        cwd=ROOT,
        env={**os.environ, "SSL_CERT_FILE": cafile, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        gets = [child.stdout.readline() for _ in urls]
        started = time.monotonic()
        threads_while_waiting = os_threads_of(child.pid)  # the replies are a second away: it is waiting now
        replies = [child.stdout.readline() for _ in urls]
        elapsed = time.monotonic() - started
        assert child.wait(10) == 0, child.stderr.read()
    finally:
        child.kill()
        child.communicate()
    assert gets == [f"GET: {url}\n" for url in urls]  # every request went out before any reply came
    assert sorted(replies) == sorted(f"{size} bytes received from {url}.\n" for size, url in zip(sizes, urls))
    assert 0.9 < elapsed < 1.8  # about one delay, not three
    assert threads_while_waiting == 1  # 127.0.0.1 is numeric: no resolver thread either


REQUESTS = """
import json, sys, time
from ferrovent import monkey; monkey.patch_all()
import requests
import ferrovent
from tests.servers import body

base, cafile = sys.argv[1:3]

def fetch(i):
    size = 1000 * i + 7
    response = requests.get(f"{base}/data?size={size}&delay=0.5", verify=cafile)
    return response.status_code == 200 and response.content == body(size)

start = time.monotonic()
greenlets = [ferrovent.spawn(fetch, i) for i in range(20)]
ferrovent.joinall(greenlets, raise_error=True)
many = {"all intact": all(g.value for g in greenlets), "elapsed": time.monotonic() - start}

def timed(url, **kwargs):
    begin = time.monotonic()
    try:
        outcome = requests.get(url, verify=cafile, **kwargs).status_code
    except requests.exceptions.ReadTimeout:
        outcome = "ReadTimeout"
    return outcome, time.monotonic() - begin, time.monotonic() - start2

start2 = time.monotonic()
slow = ferrovent.spawn(timed, f"{base}/data?size=10&delay=5", timeout=(2, 0.3))
normal = ferrovent.spawn(timed, f"{base}/data?size=10&delay=0.5")
ferrovent.joinall([slow, normal], raise_error=True)
print(json.dumps({**many, "slow": slow.value, "normal": normal.value}))
"""


def test_requests_after_patch_all(https_url, cafile):
    report = json.loads(run_child(REQUESTS, https_url, cafile, timeout=30).stdout)
    assert report["all intact"]
    assert report["elapsed"] < 2.0  # 20 requests of 0.5 s each, at once
    outcome, took, _ = report["slow"]
    assert outcome == "ReadTimeout" and 0.3 <= took < 1.5
    outcome, took, finished = report["normal"]
    assert outcome == 200 and 0.5 <= took < 1.5  # the other greenlet's read timeout did not hold it up


HTTP_CLIENT = """
import http.client, json, ssl, sys, time
from ferrovent import monkey; monkey.patch_all()
import ferrovent, ferrovent.ssl
from tests.servers import body

port, cafile = int(sys.argv[1]), sys.argv[2]

def fetch(size):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=cafile))
    conn.request("GET", f"/data?size={size}&delay=0.5")
    response = conn.getresponse()
    data = response.read()
    cooperative = isinstance(conn.sock, ferrovent.ssl.SSLSocket)
    conn.close()
    return response.status == 200 and data == body(size) and cooperative

start = time.monotonic()
greenlets = [ferrovent.spawn(fetch, size) for size in (10, 100000, 1000000)]
ferrovent.joinall(greenlets, raise_error=True)
print(json.dumps({"ok": [g.value for g in greenlets], "elapsed": time.monotonic() - start}))
"""


def test_http_client_https_after_patch_all(https_url, cafile):
    port = https_url.rsplit(":", 1)[1]
    report = json.loads(run_child(HTTP_CLIENT, port, cafile).stdout)
    assert report["ok"] == [True, True, True]
    assert report["elapsed"] < 1.4  # three 0.5 s requests overlapped


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


REDIS = """
import json, sys, time
from ferrovent import monkey; monkey.patch_all()
import redis
import ferrovent

r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=10)
r.flushall()

# 50 greenlets: INCR, then wait at a gate (BLPOP) until all 50 are blocked in redis at once.
def through_the_gate(i):
    r.incr("count")
    r.blpop("gate", timeout=10)
    return int(r.get("count"))

gated = [ferrovent.spawn(through_the_gate, i) for i in range(50)]
deadline = time.monotonic() + 10
blocked = 0
while blocked < 50 and time.monotonic() < deadline:
    ferrovent.sleep(0.01)
    blocked = r.info("clients")["blocked_clients"]  # asked while 50 other commands are in flight
connections = r.info("clients")["connected_clients"]
r.rpush("gate", *range(50))
ferrovent.joinall(gated, raise_error=True)

# One greenlet blocked in BLPOP for 3 s; the other 50 do 20 INCR/GET each meanwhile.
blpop = ferrovent.spawn(r.blpop, "never", timeout=3)
ferrovent.sleep(0.05)

def work(i):
    for _ in range(20):
        r.incr("work")
        r.get("work")

start = time.monotonic()
workers = [ferrovent.spawn(work, i) for i in range(50)]
ferrovent.joinall(workers, raise_error=True)
work_time = time.monotonic() - start
blpop_waiting = not blpop.ready()
r.rpush("never", "x")
print(json.dumps({
    "blocked at once": blocked,
    "connections": connections,
    "seen after the gate": sorted(set(g.value for g in gated)),
    "work": int(r.get("work")),
    "work time": work_time,
    "blpop still waiting": blpop_waiting,
    "blpop": [item.decode() for item in blpop.get(timeout=5)],
}))
"""


def test_redis_after_patch_all(redis_port):
    report = json.loads(run_child(REDIS, str(redis_port), timeout=30).stdout)
    assert report["blocked at once"] == 50  # 50 commands in flight at the same moment
    assert report["connections"] >= 51
    assert report["seen after the gate"] == [50]  # every INCR landed before anyone passed the gate
    assert report["work"] == 1000
    assert report["blpop still waiting"] and report["work time"] < 2.5
    assert report["blpop"] == ["never", "x"]
