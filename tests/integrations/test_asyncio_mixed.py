"""Greenlet code calling async-only libraries through ``ferrovent.asyncio.await_``: a Flask app on ferrovent's
WSGIServer whose view awaits an ``httpx.AsyncClient`` GET and an ``asyncpg`` query, 100 requests at once.

Each request's GET waits ``WAIT`` s at the slow server. The greenlet serving it and the asyncio tasks doing its
I/O share one loop on one thread, so the 100 waits overlap: about ``WAIT`` s in all, where a view that blocked the
loop would take 100 times as long. The test takes about a second; the README's example (examples/mixed_asyncio.py)
is run as a user runs it, another second.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request

import asyncpg
import ferrovent
import httpx
import pytest
from ferrovent import socket as green_socket
from ferrovent.pywsgi import WSGIServer
from flask import Flask

from tests.child import ROOT
from tests.integrations.processes import listening
from tests.servers import body

bridge = pytest.importorskip("ferrovent.asyncio", reason="ferrovent.asyncio (await_) does not import on this branch")

pytestmark = pytest.mark.timeout(60)

REQUESTS = 100
WAIT = 0.5


def _get(port: int, path: str) -> dict:
    """GET ``path`` over a cooperative socket, HTTP/1.0: the decoded JSON body of a 200 answer."""
    with green_socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"200", head
    return json.loads(payload)


async def _open_pool(port: int) -> asyncpg.Pool:
    # In a coroutine: asyncpg's Pool takes the running loop when it is made.
    return await asyncpg.create_pool(
        host="127.0.0.1", port=port, user="postgres", database="postgres", min_size=10, max_size=10
    )


def test_flask_view_awaits_httpx_and_asyncpg(slow_http_url, postgres_port):
    await_ = bridge.await_
    pool = await_(_open_pool(postgres_port))
    client = httpx.AsyncClient(base_url=slow_http_url, timeout=20, limits=httpx.Limits(max_connections=REQUESTS))
    events: list[tuple[str, int]] = []  # ("start" | "done", request number), in the order the views saw them
    app = Flask(__name__)

    @app.route("/mixed/<int:number>")
    def mixed(number: int) -> dict:
        events.append(("start", number))
        response = await_(client.get("/data", params={"size": number, "delay": WAIT}))
        doubled = await_(pool.fetchval("SELECT $1::int * 2", number))
        events.append(("done", number))
        return {"intact": response.content == body(number), "doubled": doubled}

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    try:
        started = time.monotonic()
        greenlets = [ferrovent.spawn(_get, server.server_port, f"/mixed/{number}") for number in range(REQUESTS)]
        ferrovent.joinall(greenlets, raise_error=True)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
        await_(client.aclose())
        await_(pool.close())

    assert [greenlet.value for greenlet in greenlets] == [
        {"intact": True, "doubled": 2 * number} for number in range(REQUESTS)
    ]
    # Every view had started its wait before the first one finished, and the waits overlapped.
    assert [kind for kind, _ in events[:REQUESTS]] == ["start"] * REQUESTS, events
    assert WAIT <= elapsed < 4 * WAIT, elapsed  # serialized: REQUESTS * WAIT = 50 s


def test_the_mixed_example():
    with listening(lambda port: [sys.executable, str(ROOT / "examples" / "mixed_asyncio.py"), str(port)]) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as response:
            answer = response.read().decode()
    answers, seconds = answer.split()[0], float(answer.split()[-2])
    assert answers == "10", answer
    assert 1 <= seconds < 3, answer  # the ten 1 s waits of /slow overlapped; serialized: 10 s
