"""ferrovent.pywsgi when the application misbehaves: the client gets a 500 while nothing was sent yet, never bytes
beyond the Content-Length the application announced, and a closed connection when the response cannot be trusted.
"""

from __future__ import annotations

import pytest
from ferrovent import pywsgi
from greenlet import GreenletExit

from tests.serving import ServerThread, SharedLog, read_full_response, read_until_close

pytestmark = pytest.mark.timeout(30)

FORGED = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/str-item":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["not bytes"]
    if path == "/str-later":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"first;", "not bytes"])
    if path == "/greenlet-exit":
        raise GreenletExit
    if path == "/longer-one-piece":
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello" + FORGED]
    if path == "/longer-pieces":
        start_response("200 OK", [("Content-Length", "5")])
        return iter([b"hel", b"lo", FORGED, FORGED])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture(scope="module")
def errors():
    return SharedLog()


@pytest.fixture(scope="module")
def server(errors):
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=None, error_log=errors)  # noqa: E731
    with ServerThread(factory) as running:
        yield running


def _get_then_more(server: ServerThread, path: str) -> tuple[int, dict[str, str], bytes, bytes]:
    """GETs ``path`` and pipelines a second request; returns the first response and all that follows it."""
    with server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, body = read_full_response(stream)
        try:
            rest = stream.read()
        except ConnectionResetError:
            rest = b""
    return status, headers, body, rest


@pytest.mark.parametrize("path", ["/str-item", "/greenlet-exit"])
def test_failure_before_any_byte_answers_500_and_closes(server, path):
    status, headers, _, rest = _get_then_more(server, path)
    assert status == 500 and headers["connection"] == "close"
    assert rest == b""


def test_non_bytes_after_the_head_closes_the_connection(server):
    with server.connect() as sock:
        sock.sendall(b"GET /str-later HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        out = read_until_close(sock)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n6\r\nfirst;\r\n" in out
    assert not out.endswith(b"0\r\n\r\n") and out.count(b"HTTP/1.1") == 1  # cut short: no end, no next answer


@pytest.mark.parametrize("path", ["/longer-one-piece", "/longer-pieces"])
def test_body_longer_than_its_content_length_is_cut_logged_once_and_closed(server, errors, path):
    before = errors.text().count("more than its Content-Length")
    status, _, body, rest = _get_then_more(server, path)
    assert (status, body) == (200, b"hello")
    assert rest == b""  # neither the forged response nor an answer to the pipelined request
    assert errors.text().count("more than its Content-Length") == before + 1
