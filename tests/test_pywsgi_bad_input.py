"""ferrovent.pywsgi against hostile or broken clients: each gets its 4xx (or a close) within 5 s, and the server
goes on serving everyone else. Raw sockets, so the bytes on the wire are exactly the ones under test.

The server's timeouts are shortened (header 1.5 s, body I/O 1 s) so the slow-client cases finish quickly.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from ferrovent import pywsgi

from tests.serving import ServerThread, read_until_close

pytestmark = pytest.mark.timeout(30)

ANSWER_WITHIN = 5.0


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise RuntimeError("the app failed on purpose")
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 65536 for _ in range(400))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture(scope="module")
def server():
    factory = lambda: pywsgi.WSGIServer(  # noqa: E731
        ("127.0.0.1", 0), _app, log=None, error_log=None, header_timeout=1.5, io_timeout=1.0, keepalive_timeout=5
    )
    with ServerThread(factory) as running:
        yield running


def _exchange(server: ServerThread, data: bytes, half_close: bool = False) -> tuple[bytes, float]:
    """Sends ``data``; returns everything the server sent until it closed, and how long that took."""
    started = time.monotonic()
    with server.connect(timeout=ANSWER_WITHIN) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking all of it: the answer is still there to read
        out = read_until_close(sock)
    return out, time.monotonic() - started


def _status(response: bytes) -> int | None:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


def _still_serving(server: ServerThread) -> float:
    """A fresh client gets its answer; returns how long it took."""
    out, took = _exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert _status(out) == 200 and out.endswith(b"\r\n\r\nok"), out
    return took


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        pytest.param(b"\x16\x03\x01garbage\x00\r\n\r\n", 400, id="garbage-request-line"),
        pytest.param(b"GET /\r\nHost: t\r\n\r\n", 400, id="missing-version"),
        pytest.param(b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", 505, id="http-9.9"),
        pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n", 400, id="negative-length"),
        pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n", 400, id="non-numeric-length"),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            id="conflicting-lengths",
        ),
        pytest.param(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            400,
            id="bad-chunk-size",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431, id="200KB-header"),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5000)) + b"\r\n", 431, id="5000-headers"
        ),
        pytest.param(b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n\r\n", 414, id="200KB-request-line"),
    ],
)
def test_bad_request_gets_its_status(server, request_bytes, expected):
    out, took = _exchange(server, request_bytes)
    assert _status(out) == expected, out[:200]
    assert b"Connection: close\r\n" in out
    assert took < ANSWER_WITHIN
    _still_serving(server)


def test_body_shorter_than_its_length(server):
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
    out, took = _exchange(server, head + b"only ten b")  # then silence: the body read times out
    assert _status(out) == 408 and took < ANSWER_WITHIN
    out, took = _exchange(server, head + b"only ten b", half_close=True)  # then EOF: the body can never come
    assert _status(out) == 400 and took < ANSWER_WITHIN
    _still_serving(server)


def test_app_that_raises_gets_500_and_is_logged(server):
    out, _ = _exchange(server, b"GET /raise HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _status(out) == 500
    _still_serving(server)
    reports = server.reports.text()
    assert "RuntimeError: the app failed on purpose" in reports
    assert "failed with RuntimeError" in reports


def test_clients_resetting_mid_response(server):
    reported_before = server.reports.text()
    for _ in range(5):
        sock = server.connect()
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 OK")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # an RST while the server is still sending
    _still_serving(server)
    assert server.reports.text() == reported_before  # a client going away is not a server error


def test_stalled_and_slowloris_clients_do_not_hold_up_others(server):
    stalled = []
    for _ in range(20):  # mid-body, then silent
        sock = server.connect()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        stalled.append(sock)
    slow = [server.connect() for _ in range(50)]
    stop = threading.Event()

    def trickle():  # slowloris: a byte of header every 0.1 s on every connection
        for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"s" * 1000:
            for sock in slow:
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    pass
            if stop.wait(0.1):
                return

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        time.sleep(0.3)
        for _ in range(5):
            assert _still_serving(server) < 0.5
        # Every slow client is answered (408 / close) once its timeout passes.
        deadline = time.monotonic() + ANSWER_WITHIN
        for sock in stalled + slow:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            out = read_until_close(sock)
            assert out == b"" or _status(out) == 408, out[:100]
    finally:
        stop.set()
        trickler.join()
        for sock in stalled + slow:
            sock.close()
    _still_serving(server)
