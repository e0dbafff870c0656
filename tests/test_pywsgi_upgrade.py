"""ferrovent.pywsgi and the ``Upgrade`` header (RFC 9110 7.8): the request is an ordinary request, its body framed
and timed like any other, until the application answers ``101``; only then is the connection the application's.
"""

from __future__ import annotations

import time

import pytest
from ferrovent import pywsgi

from tests.serving import ServerThread, read_full_response, read_until_close

pytestmark = pytest.mark.timeout(30)


def _echo_body(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(scope="module")
def server():
    factory = lambda: pywsgi.WSGIServer(  # noqa: E731
        ("127.0.0.1", 0), _echo_body, log=None, error_log=None, io_timeout=1.0
    )
    with ServerThread(factory) as running:
        yield running


def test_upgrade_request_body_is_framed_by_content_length(server):
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(
            b"POST /first HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        status, headers, body = read_full_response(stream)
        assert (status, body) == (200, b"hello") and "connection" not in headers  # not answered 101: kept
        status, _, body = read_full_response(stream)
        assert (status, body) == (200, b"")  # the pipelined request, answered on its own


def test_upgrade_request_whose_body_stalls_gets_408(server):
    started = time.monotonic()
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nContent-Length: 100\r\n\r\n")
        out = read_until_close(sock)
    assert out.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 5


def test_non_101_answer_to_h2c_upgrade_keeps_the_connection(server):
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(
            b"GET /first HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
            b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        for _ in range(2):
            status, headers, body = read_full_response(stream)
            assert (status, body) == (200, b"") and "connection" not in headers
