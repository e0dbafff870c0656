"""ferrovent.pywsgi never closes a keep-alive connection without saying so: a response after which the server
closes carries ``Connection: close``; one without it leaves the connection open for the next request.

Raw sockets, so the headers and the connection's state are exactly what a client or a proxy sees.
"""

from __future__ import annotations

import socket

import pytest
from ferrovent import pywsgi

from tests.serving import ServerThread, read_full_response

pytestmark = pytest.mark.timeout(30)

MIB = 1 << 20


def _ignores_body(environ, start_response):
    """Answers without reading the request body."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture(scope="module")
def server():
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _ignores_body, log=None, error_log=None)  # noqa: E731
    with ServerThread(factory) as running:
        yield running


def _post(head_extra: str, length: int) -> bytes:
    return f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{head_extra}\r\n".encode()


def _assert_closed(sock: socket.socket, stream) -> None:
    """The server closed: the client reads the end of the stream (after our unread bytes, a reset is a close too)."""
    try:
        assert stream.read() == b""
    except ConnectionResetError:
        pass


def _assert_still_open(sock: socket.socket, stream) -> None:
    """The connection serves a next request."""
    sock.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = read_full_response(stream)
    assert (status, body) == (200, b"ok")
    assert headers.get("connection") != "close"


def test_small_unread_body_keeps_the_connection(server):
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(_post("", 10_000) + b"x" * 10_000)
        status, headers, _ = read_full_response(stream)
        assert status == 200 and "connection" not in headers
        _assert_still_open(sock, stream)


def test_unread_body_over_the_discard_limit_is_announced(server):
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(_post("", 2 * MIB) + b"x" * 1000)
        status, headers, _ = read_full_response(stream)
        assert status == 200 and headers["connection"] == "close"
        _assert_closed(sock, stream)


def test_unread_body_after_100_continue_is_announced(server):
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(_post("Expect: 100-continue\r\n", 10))
        status, headers, _ = read_full_response(stream)  # a final status, no 100 Continue before it
        assert status == 200 and headers["connection"] == "close"
        _assert_closed(sock, stream)


def test_unread_chunked_body_already_received_keeps_the_connection(server):
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(head + b"5\r\nhello\r\n0\r\n\r\n")
        status, headers, _ = read_full_response(stream)
        assert status == 200 and "connection" not in headers
        _assert_still_open(sock, stream)


def test_unread_chunked_body_still_coming_is_announced(server):
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(head + b"5\r\nhello\r\n")  # the rest of the body is unknown: the server cannot promise to drain it
        status, headers, _ = read_full_response(stream)
        assert status == 200 and headers["connection"] == "close"
        sock.sendall(b"0\r\n\r\n")
        _assert_closed(sock, stream)


def test_http10_keep_alive_unread_large_body_says_close(server):
    with server.connect() as sock, sock.makefile("rb") as stream:
        head = f"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {2 * MIB}\r\n\r\n".encode()
        sock.sendall(head + b"x" * 1000)
        status, headers, _ = read_full_response(stream)
        assert status == 200 and headers["connection"] == "close"
        _assert_closed(sock, stream)
