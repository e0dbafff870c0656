"""How ferrovent.pywsgi sends a response's head and first body bytes (one ``writev``, `_core.sock_send_pair`): whole
and in order however the client reads, each wait for the client bounded by ``io_timeout``, and a client that stops
reading or goes away costs its connection only.
"""

from __future__ import annotations

import socket
import time

import pytest
from ferrovent import pywsgi

from tests.serving import ServerThread, SharedLog, read_full_response, read_until_close

pytestmark = pytest.mark.timeout(30)

BIG = bytes(range(256)) * (16 << 12)  # 16 MiB, more than any socket buffers hold: the server has to wait
IO_TIMEOUT = 0.5


def _app(environ, start_response):
    if environ["PATH_INFO"] == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [BIG]
    if environ["PATH_INFO"] == "/bytearray":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [bytearray(b"mutable")]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"small"]


@pytest.fixture
def server():
    log = SharedLog()
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=log, io_timeout=IO_TIMEOUT)  # noqa: E731
    with ServerThread(factory) as running:
        running.access_log = log
        yield running


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_a_body_larger_than_the_socket_buffers_arrives_whole_and_the_connection_goes_on(server):
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(_get("/big") + _get("/small"))
        status, headers, body = read_full_response(stream)
        assert status == 200 and headers["content-length"] == str(len(BIG)) and body == BIG
        assert read_full_response(stream)[2] == b"small"


def test_a_bytearray_body_is_sent_as_its_bytes(server):
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(_get("/bytearray"))
        status, headers, body = read_full_response(stream)
    assert (status, headers["content-length"], body) == (200, "7", b"mutable")


def test_a_client_that_stops_reading_is_dropped_after_the_io_timeout(server):
    with socket.socket() as sock:
        # A fixed receive buffer (set before connecting, so the window is scaled for it): no autotuning that could
        # take the whole body in.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(_get("/big"))
        stalled = time.monotonic()
        # The server blocks on the full buffers; meanwhile another client is served.
        with server.connect() as other, other.makefile("rb") as stream:
            other.sendall(_get("/small"))
            assert read_full_response(stream)[2] == b"small"
        # Not reading until the server has given up (its access log has the line): what arrives then ends short
        # of the body, at the close.
        deadline = stalled + IO_TIMEOUT + 10
        while time.monotonic() < deadline and '"GET /big HTTP/1.1" 200' not in server.access_log.text():
            time.sleep(0.05)
        assert time.monotonic() - stalled >= IO_TIMEOUT
        received = read_until_close(sock)
    assert len(received) < len(BIG)
    assert server.reports.text() == ""


def test_a_client_gone_mid_response_costs_its_connection_only(server):
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = reset
    sock.sendall(_get("/big"))
    sock.recv(1)
    sock.close()
    with server.connect() as other, other.makefile("rb") as stream:
        other.sendall(_get("/small"))
        assert read_full_response(stream)[2] == b"small"
    assert server.reports.text() == ""
