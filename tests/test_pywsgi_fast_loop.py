"""The WSGI server's keep-alive loop in Rust (``serve_requests``, FERROVENT_WSGI_FAST): which connections take it,
and that what it serves, or hands to the handler's Python steps, goes out byte for byte as those steps send it.

Each scenario runs twice, the loop on and off, over raw sockets: one request (or several in one send), then a last
request that closes the connection; the bytes received (the Date header's value masked) and the error lines the
server reported must be the same.
"""

from __future__ import annotations

import logging
import re

import pytest
from ferrovent import pywsgi
from ferrovent._wsgi import handler as handler_module

from tests.serving import ServerThread, read_until_close

pytestmark = pytest.mark.timeout(60)

LAST = b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _caught(start_response, call):
    """The response body saying what ``call`` (a wrong start_response call) raised: the error's type and message
    are part of the behaviour compared."""
    try:
        call()
    except Exception as error:  # noqa: BLE001 - every kind is compared
        start_response("200 OK", [])
        return [repr(error).encode()]
    return [b"no error"]


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    plain = [("Content-Type", "text/plain")]
    if path == "/kind":
        start_response("200 OK", plain)
        return [type(start_response).__name__.encode()]
    if path == "/length":
        start_response("200 OK", [("Content-Length", environ["QUERY_STRING"])])
        return [b"hello"]
    if path == "/write":
        write = start_response("200 OK", plain)
        write(b"first ")
        return [b"second"]
    if path == "/generator":
        start_response("200 OK", plain)
        return (part for part in (b"a", b"b"))
    if path == "/two":
        start_response("200 OK", plain)
        return [b"a", b"b"]
    if path == "/tuple":
        start_response("200 OK", plain)
        return (b"tuple",)
    if path == "/bytearray":
        start_response("200 OK", plain)
        return [bytearray(b"mutable")]
    if path == "/text":
        start_response("200 OK", plain)
        return ["text"]
    if path == "/empty":
        start_response("200 OK", plain)
        return [b""]
    if path == "/nothing":
        return []
    if path == "/no-start":
        return [b"body"]
    if path == "/raise-before":
        raise ValueError("before start_response")
    if path == "/raise-after":
        start_response("200 OK", plain)
        raise ValueError("after start_response")
    if path == "/close":
        start_response("200 OK", [("Connection", "close")])
        return [b"bye"]
    if path == "/204":
        start_response("204 No Content", [])
        return [b""]
    if path == "/101":
        start_response("101 Switching Protocols", [("Upgrade", "x")])
        return [b""]
    if path == "/twice":
        start_response("500 Oops", plain)
        start_response("200 OK", plain, None)
        return [b"twice"]
    if path == "/exc-info":
        try:
            raise KeyError("x")
        except KeyError:
            import sys

            start_response("500 Error", plain, sys.exc_info())
        return [b"exc"]
    if path == "/keywords":
        start_response(status="200 OK", headers=plain)
        return [b"keywords"]
    if path == "/bad-status":
        return _caught(start_response, lambda: start_response(b"200 OK", plain))
    if path == "/bad-header":
        return _caught(start_response, lambda: start_response("200 OK", [("X", 1)]))
    if path == "/split-header":
        return _caught(start_response, lambda: start_response("200 OK", [("X", "a\r\nb")]))
    if path == "/missing-args":
        return _caught(start_response, lambda: start_response("200 OK"))
    if path == "/protocol":
        environ["SERVER_PROTOCOL"] = "HTTP/1.0"
        start_response("200 OK", plain)
        return [b"as 1.0"]
    if path == "/no-method":
        method = environ.pop("REQUEST_METHOD")
        try:
            start_response("200 OK", plain)
        except KeyError as error:
            environ["REQUEST_METHOD"] = method
            start_response("200 OK", plain)
            return [repr(error).encode()]
    if path == "/body":
        data = environ["wsgi.input"].read()
        start_response("200 OK", plain)
        return [b"got " + data]
    start_response("200 OK", plain)
    return [b"hello " + path.encode()]


REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    *(b"GET /length?%s HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in (b"5", b"4", b"6", b"05", b"+5", b"x", b"")),
    b"HEAD /length?9 HTTP/1.1\r\nHost: x\r\n\r\n",
    *(
        b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % path
        for path in (
            b"write generator two tuple bytearray text empty nothing no-start raise-before raise-after close 204 101 "
            b"twice exc-info keywords bad-status bad-header split-header missing-args protocol no-method"
        ).split()
    ),
    b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: UPGRADE\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",  # pipelined
    b"GET /bad HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",  # refused: 400
    b"NOT A REQUEST\r\n\r\n",
]


def _transcript(request: bytes) -> tuple[bytes, list[str]]:
    """The bytes a client receives for ``request`` then `LAST`, and the errors the server reported."""
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=None, error_log=None)  # noqa: E731
    with ServerThread(factory) as server, server.connect() as sock:
        sock.sendall(request)
        try:
            sock.sendall(LAST)
        except OSError:
            pass  # the server closed after the first response
        received = read_until_close(sock)
        reports = server.reports.text()
    received = re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", received)
    errors = [line for line in reports.splitlines() if "failed with" in line or line.startswith(("ValueError", "Ass"))]
    errors = [re.sub(r"'REMOTE_PORT': '\d+'", "'REMOTE_PORT': -", re.sub(r"^\S+Z ", "", line)) for line in errors]
    return received, errors


@pytest.mark.parametrize("request_bytes", REQUESTS, ids=range(len(REQUESTS)))
def test_the_rust_loop_sends_what_the_python_steps_send(request_bytes, monkeypatch):
    monkeypatch.setattr(handler_module, "_FAST_LOOP", True)
    fast = _transcript(request_bytes)
    monkeypatch.setattr(handler_module, "_FAST_LOOP", False)
    python = _transcript(request_bytes)
    assert fast == python
    assert fast[0].startswith(b"HTTP/1.1 ") or b"/nothing" in request_bytes  # that one answers nothing


def _kind(**server_args) -> bytes:
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, error_log=None, **server_args)  # noqa: E731
    with ServerThread(factory) as server, server.connect() as sock:
        sock.sendall(b"GET /kind HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_until_close(sock).rpartition(b"\r\n\r\n")[2]


class _Subclass(pywsgi.WSGIHandler):
    pass


def test_only_the_handler_class_itself_without_an_access_log_takes_the_loop(monkeypatch):
    monkeypatch.setattr(handler_module, "_FAST_LOOP", True)
    assert _kind(log=None) == b"StartResponse"
    assert _kind(log=None, handler_class=_Subclass) == b"method"
    assert _kind(log=logging.getLogger("fast-loop-test")) == b"method"
    assert _kind(log=None, environ={"x": "y"}) == b"StartResponse"
    monkeypatch.setattr(handler_module, "_FAST_LOOP", False)
    assert _kind(log=None) == b"method"
