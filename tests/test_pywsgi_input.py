"""ferrovent.pywsgi's ``wsgi.input`` read every way an application reads it, and a connection whose bytes are all
there already (pipelined requests) that must still let the other connections be served.
"""

from __future__ import annotations

import io
import threading
import time

import pytest
from ferrovent import pywsgi

from tests.serving import ServerThread, read_full_response

pytestmark = pytest.mark.timeout(60)

BODY = b"".join(b"line %d %s\n" % (i, b"x" * (i % 300)) for i in range(3000)) + b"no newline at the end"

# Each plan is a list of (method, argument) calls made on wsgi.input, and on a BytesIO of the same body.
PLANS = {
    "readline": [("readline", None)] * 3100,
    "iterate": [("iterate", None)],
    "read_small": [("read", 1)] * 5000 + [("read", None)],
    "mixed": [("readline", 7), ("read", 100), ("readline", None), ("read", 65536), ("readline", 3)] * 40
    + [("read", -1)],
}


def _apply(stream, plan: list) -> list[bytes]:
    out = []
    for method, argument in plan:
        if method == "iterate":
            out.extend(stream)
        else:
            out.append(getattr(stream, method)(argument))
    return out


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hello":
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]
    got = _apply(environ["wsgi.input"], PLANS[path[1:]])
    result = b"ok" if got == _apply(io.BytesIO(BODY), PLANS[path[1:]]) else b"differs"
    start_response("200 OK", [("Content-Length", str(len(result)))])
    return [result]


@pytest.fixture(scope="module")
def server():
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=None, error_log=None)  # noqa: E731
    with ServerThread(factory) as running:
        yield running


def _chunked(body: bytes, size: int) -> bytes:
    pieces = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_input_reads_as_a_file_would(server, plan, framing):
    if framing == "length":
        head = b"Content-Length: %d\r\n" % len(BODY)
        body = BODY
    else:
        head = b"Transfer-Encoding: chunked\r\n"
        body = _chunked(BODY, 1000)
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(b"POST /%s HTTP/1.1\r\nHost: x\r\n%s\r\n%s" % (plan.encode(), head, body))
        assert read_full_response(stream)[::2] == (200, b"ok")


def test_a_pipelining_connection_does_not_hold_up_the_others(server):
    count = 100_000
    under_way = threading.Event()
    with server.connect(timeout=30) as busy, server.connect() as probe, probe.makefile("rb") as probe_stream:

        def drain() -> None:
            with busy.makefile("rb") as stream:
                for i in range(count):
                    read_full_response(stream)
                    if i == 1000:
                        under_way.set()

        workers = [
            threading.Thread(target=drain),
            threading.Thread(target=busy.sendall, args=(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * count,)),
        ]
        for worker in workers:
            worker.start()
        assert under_way.wait(20)
        started = time.monotonic()
        probe.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_full_response(probe_stream)[::2] == (200, b"hello")
        waited = time.monotonic() - started
        for worker in workers:
            worker.join(30)
    assert waited < 0.3
