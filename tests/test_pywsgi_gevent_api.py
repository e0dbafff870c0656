"""ferrovent.pywsgi's gevent API points that only ferrovent can be asked about here (the rest runs on both servers
in tests/compat/test_server_compat.py): handler hooks, the environ class, and how a response says it closes.
"""

from __future__ import annotations

from wsgiref.validate import validator

import pytest
from ferrovent import pywsgi

from tests.serving import ServerThread, SharedLog, read_full_response, read_until_close

pytestmark = pytest.mark.timeout(30)


def _app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/silent":
        return []  # never calls start_response
    if path == "/class":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [type(environ).__name__.encode()]
    if path == "/generator":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (piece for piece in (b"one;", b"two"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


class _PolicyHandler(pywsgi.WSGIHandler):
    """gevent's read_requestline hook: answers a Flash policy-file request, else hands the line on."""

    def read_requestline(self):
        start = self.rfile.read(7)
        if start == b"<policy":
            if self.rfile.read(16) == b"-file-request/>\0":
                self.socket.sendall(b"HELLO")
            return None
        return start + self.rfile.readline()


@pytest.fixture(scope="module")
def errors():
    return SharedLog()


@pytest.fixture(scope="module")
def server(errors):
    with ServerThread(lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=None, error_log=errors)) as running:
        yield running


def test_no_start_response_and_no_body_closes_without_an_answer(server, errors):
    with server.connect() as sock:
        sock.sendall(b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until_close(sock) == b""
    assert "without calling start_response()" in errors.text()


def test_a_response_of_unknown_length_to_http_1_0_says_close_once(server):
    with server.connect() as sock:
        sock.sendall(b"GET /generator HTTP/1.0\r\n\r\n")
        out = read_until_close(sock)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.lower().count(b"\r\nconnection: close") == 1 and body == b"one;two"


def test_the_server_drains_its_own_input_when_the_app_wrapped_it():
    # wsgiref's validator replaces environ['wsgi.input'] with a wrapper: the unread body is still dropped.
    with ServerThread(lambda: pywsgi.WSGIServer(("127.0.0.1", 0), validator(_app), log=None)) as server:
        with server.connect() as sock, sock.makefile("rb") as stream:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nunrea")
            first = read_full_response(stream)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            second = read_full_response(stream)
    assert first[0] == second[0] == 200 and "connection" not in first[1]


def test_environ_class_set_on_the_server_is_each_requests_environ():
    def factory():
        server = pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=None)
        server.environ_class = pywsgi.SecureEnviron
        return server

    with ServerThread(factory) as server, server.connect() as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /class HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_full_response(stream)[2] == b"SecureEnviron"


def test_read_requestline_hook_reads_from_rfile_and_can_end_the_connection():
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=None, handler_class=_PolicyHandler)  # noqa: E731
    with ServerThread(factory) as server:
        with server.connect() as sock:
            sock.sendall(b"<policy-file-request/>\0")
            assert read_until_close(sock) == b"HELLO"
        with server.connect() as sock, sock.makefile("rb") as stream:
            # What the hook leaves unread (the rest of the head, pipelined requests) stays for the parser.
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /class HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_full_response(stream)[::2] == (200, b"ok")
            assert read_full_response(stream)[::2] == (200, b"dict")


def test_print_unexpected_exc_is_called_when_the_error_log_fails():
    calls = []

    class Handler(pywsgi.WSGIHandler):
        def _print_unexpected_exc(self):
            calls.append("printed")

    class BrokenLog:
        def write(self, text):
            raise OSError("log gone")

    def factory():
        return pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=None, error_log=BrokenLog(), handler_class=Handler)

    with ServerThread(factory) as server, server.connect() as sock:
        sock.sendall(b"BAD\r\n\r\n")  # refused: the refusal is logged
        assert read_until_close(sock).startswith(b"HTTP/1.1 400 ")
    assert calls == ["printed"]


class _AttributeHandler(pywsgi.WSGIHandler):
    """Reads and sets gevent's handler attributes as handler subclasses do (gevent-websocket sets all three after
    start_response); ``/seen`` answers with what the handler showed."""

    def start_response(self, status, headers, exc_info=None):
        write = pywsgi.WSGIHandler.start_response(self, status, headers, exc_info)
        if self.environ["PATH_INFO"] == "/unframed":
            self.provided_content_length = False
            self.response_use_chunked = False
            self.provided_date = True
            self.close_connection = True  # the body ends with the connection
        return write

    def run_application(self):
        if self.environ["PATH_INFO"] != "/seen":
            return pywsgi.WSGIHandler.run_application(self)
        self.start_response("200 OK", [("Date", "Thu, 01 Jan 1970 00:00:00 GMT")])
        seen = (
            f"{self.headers['X-Thing']}|{self.headers.get('Content-Type')}|{self.content_length}|"
            f"{self.wsgi_input.read()!r}|{self.provided_content_length}|{self.provided_date}|"
            f"{self.connection_upgraded}"
        ).encode()
        self.write(seen)
        self.result = []
        self.process_result()  # the end of the chunked body


def _stream_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (piece for piece in (b"one;", b"two"))


def test_gevent_handler_attributes_can_be_read_and_steer_the_framing():
    factory = lambda: pywsgi.WSGIServer(  # noqa: E731
        ("127.0.0.1", 0), _stream_app, log=None, error_log=None, handler_class=_AttributeHandler
    )
    with ServerThread(factory) as server:
        with server.connect() as sock, sock.makefile("rb") as stream:
            sock.sendall(
                b"POST /seen HTTP/1.1\r\nHost: x\r\nx-thing: a\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 3\r\n\r\nabc"
            )
            status, headers, body = read_full_response(stream)
        assert status == 200 and headers["date"] == "Thu, 01 Jan 1970 00:00:00 GMT"
        # The request's headers and body through gevent's names; the app's Content-Length (None: none) and Date.
        assert body == b"a|text/plain|3|b'abc'|None|Thu, 01 Jan 1970 00:00:00 GMT|False"
        with server.connect() as sock:
            sock.sendall(b"GET /unframed HTTP/1.1\r\nHost: x\r\n\r\n")
            out = read_until_close(sock)
        head, body = out.split(b"\r\n\r\n", 1)
        assert body == b"one;two"  # neither chunked nor Content-Length: the subclass framed it (by the close)
        assert b"Date:" not in head and b"Transfer-Encoding" not in head and b"Content-Length" not in head


def _taking_over_app(environ, start_response):
    sock = environ["wsgi.input"].rfile.raw._sock  # where simple-websocket looks on gevent
    sock.sendall(b"spoken by the application")
    return []  # and no start_response: the app answered on the socket itself


def test_an_app_that_takes_the_socket_over_ends_the_connection_quietly():
    errors = SharedLog()
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _taking_over_app, log=None, error_log=errors)  # noqa: E731
    with ServerThread(factory) as server, server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until_close(sock) == b"spoken by the application"  # and no answer to the next request
    assert errors.text() == ""
    assert pywsgi.WSGIServer.base_env["SERVER_SOFTWARE"].startswith("gevent/")  # simple-websocket's test for it
