"""ferrovent.pywsgi serving a Flask app (and a few bare WSGI apps) to real clients: requests, http.client, raw sockets.

The server runs in a thread with its own hub (tests/serving.py); the clients are ordinary blocking code.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import socket
import ssl
import threading
import time

import ferrovent
import flask
import pytest
import requests
from ferrovent import pywsgi

from tests.serving import ServerThread, read_response, read_until_close
from tests.tls_helpers import client_context, make_self_signed

pytestmark = pytest.mark.timeout(30)

SECOND_CHUNK_ALLOWED = threading.Event()  # the streaming test's handshake between client and app


def _flask_app() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/")
    def index():
        return "hello"

    @app.post("/echo")
    def echo():
        return flask.Response(flask.request.get_data(), mimetype="application/octet-stream")

    @app.post("/json")
    def json_echo():
        return flask.jsonify(got=flask.request.get_json())

    @app.post("/form")
    def form_echo():
        return flask.jsonify(dict(flask.request.form))

    @app.get("/sleep/<float:seconds>")
    def sleep(seconds):
        ferrovent.sleep(seconds)
        return f"slept {seconds}"

    @app.get("/port")
    def port():
        return flask.request.environ["REMOTE_PORT"]

    @app.get("/stream")
    def stream():
        def produce():
            yield b"first;"
            deadline = time.monotonic() + 5
            while not SECOND_CHUNK_ALLOWED.is_set() and time.monotonic() < deadline:
                ferrovent.sleep(0.01)
            yield b"second;"

        return flask.Response(produce(), mimetype="text/plain")

    return app


@pytest.fixture(scope="module")
def server():
    with ServerThread(lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _flask_app(), log=None)) as running:
        yield running


def url(server: ServerThread, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_get_head_and_404(server):
    response = requests.get(url(server, "/"), timeout=5)
    assert (response.status_code, response.text) == (200, "hello")
    head = requests.head(url(server, "/"), timeout=5)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "5"
    assert head.content == b""
    assert requests.get(url(server, "/nowhere"), timeout=5).status_code == 404


@pytest.mark.parametrize("size", [0, 1, 100 * 1024, 3 * 1024 * 1024])
def test_post_bodies_echo_byte_exact(server, size):
    body = os.urandom(size)
    response = requests.post(url(server, "/echo"), data=body, timeout=10)
    assert response.status_code == 200
    assert response.content == body


def test_json_and_form_posts(server):
    data = {"name": "ferrovent", "n": [1, 2, 3], "nested": {"ok": True}}
    assert requests.post(url(server, "/json"), json=data, timeout=5).json() == {"got": data}
    form = {"a": "1", "b": "two words", "c": "é"}
    assert requests.post(url(server, "/form"), data=form, timeout=5).json() == form


def test_chunked_request_body(server):
    pieces = [os.urandom(n) for n in (1, 1000, 70_000, 5)]
    response = requests.post(url(server, "/echo"), data=iter(pieces), timeout=10)  # a generator: chunked
    assert response.content == b"".join(pieces)


def test_streamed_response_chunks_arrive_as_produced(server):
    SECOND_CHUNK_ALLOWED.clear()
    with requests.get(url(server, "/stream"), stream=True, timeout=10) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        chunks = response.iter_content(chunk_size=None)
        assert next(chunks) == b"first;"  # arrived while the app still waits to produce the second
        SECOND_CHUNK_ALLOWED.set()
        assert b"".join(chunks) == b"second;"


def test_ten_requests_on_one_keep_alive_connection(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    ports = set()
    for _ in range(10):
        connection.request("GET", "/port")
        response = connection.getresponse()
        assert response.status == 200
        ports.add(response.read())
    connection.close()
    assert len(ports) == 1  # every request came from the same client socket


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    stream = sock.makefile("rb")
    return [read_response(stream) for _ in range(count)]


def test_pipelined_requests_are_answered_in_order(server):
    body = b"x" * 3000
    requests_bytes = (
        b"GET /sleep/0.2 HTTP/1.1\r\nHost: t\r\n\r\n"
        + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n"
        + body
        + b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
        + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    with server.connect() as sock:
        sock.sendall(requests_bytes)
        answers = _read_responses(sock, 4)
    assert [status for status, _ in answers] == [200, 200, 404, 200]
    assert answers[0][1] == b"slept 0.2"
    assert answers[1][1] == body
    assert answers[3][1] == b"hello"


def test_hundred_concurrent_slow_requests_overlap(server):
    def fetch(_):
        return requests.get(url(server, "/sleep/0.5"), timeout=10).status_code

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(fetch, range(100)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 100
    assert elapsed < 4.0


def test_slow_request_does_not_delay_a_fast_one(server):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, url(server, "/sleep/2.0"), timeout=10)
        time.sleep(0.1)
        started = time.monotonic()
        assert requests.get(url(server, "/"), timeout=5).text == "hello"
        assert time.monotonic() - started < 0.5
        assert not slow.done()
        assert slow.result().status_code == 200


# -- PEP 3333 details, with bare WSGI apps ------------------------------------------------------------------


def _serve(app, **kwargs) -> ServerThread:
    kwargs.setdefault("log", None)
    return ServerThread(lambda: pywsgi.WSGIServer(("127.0.0.1", 0), app, **kwargs))


def _raw_exchange(port: int, data: bytes) -> bytes:
    """Sends ``data``, then reads until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        return read_until_close(sock)


def test_environ_keys():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    with _serve(app, environ={"EXTRA": "1"}) as running:
        requests.post(
            f"http://127.0.0.1:{running.port}/a%20b/c?x=1&y=2",
            data=b"abc",
            headers={"Content-Type": "text/x", "X-Custom": "v", "Cookie": "a=1"},
            timeout=5,
        )
    assert seen["REQUEST_METHOD"] == "POST"
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen["QUERY_STRING"]) == ("", "/a b/c", "x=1&y=2")
    assert (seen["CONTENT_TYPE"], seen["CONTENT_LENGTH"]) == ("text/x", "3")
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["SERVER_PORT"] == str(running.port) and seen["SERVER_NAME"]
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and int(seen["REMOTE_PORT"]) > 0
    assert seen["HTTP_X_CUSTOM"] == "v" and seen["HTTP_COOKIE"] == "a=1"
    assert seen["wsgi.version"] == (1, 0) and seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.multithread"] is False and seen["wsgi.multiprocess"] is False
    assert seen["wsgi.run_once"] is False
    assert seen["wsgi.file_wrapper"] is pywsgi.FileWrapper
    assert hasattr(seen["wsgi.errors"], "write") and hasattr(seen["wsgi.input"], "read")
    assert seen["EXTRA"] == "1"


def test_environ_key_order_is_the_servers_keys_then_the_requests():
    """The server's keys come first, then the request line's keys, the header fields in arrival order, and
    wsgi.input last; on every request of a keep-alive connection alike."""
    orders = []

    def app(environ, start_response):
        orders.append(list(environ))
        start_response("200 OK", [("Content-Length", "0")])
        return []

    request = b"GET /p?q HTTP/1.1\r\nHost: x\r\nX-B: 1\r\nX-A: 2\r\n\r\n"
    with _serve(app) as running, socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(request * 2 + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        read_until_close(sock)
    line = ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "REQUEST_URI", "RAW_URI"]
    first = orders[0]
    assert first[-10:] == [*line, "HTTP_HOST", "HTTP_X_B", "HTTP_X_A", "wsgi.input"]
    assert "SCRIPT_NAME" in first[: -len(line) - 4] and "ferrovent.socket" in first[: -len(line) - 4]
    assert orders[1] == first
    assert orders[2] == [*first[:-4], "HTTP_HOST", "HTTP_CONNECTION", "wsgi.input"]


def test_write_callable_close_and_exc_info():
    closed = []

    class Result:
        def __iter__(self):
            yield b" and iterable"

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        try:
            raise ValueError("replaced")
        except ValueError:
            import sys

            start_response("500 Oops", [("Content-Type", "text/plain")])
            write = start_response("201 Created", [("X-A", "1")], sys.exc_info())  # before any output: allowed
        write(b"from write")
        return Result()

    with _serve(app) as running:
        response = requests.get(f"http://127.0.0.1:{running.port}/", timeout=5)
    assert response.status_code == 201 and response.headers["X-A"] == "1"
    assert response.content == b"from write and iterable"
    assert closed == [True]


def test_http10_keep_alive_and_close():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"a", b"b"])  # no length: HTTP/1.0 must end the body with the close

    with _serve(app) as running:
        out = _raw_exchange(running.port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in out and out.endswith(b"\r\n\r\nab")


def test_expect_100_continue_is_sent_when_the_app_reads():
    def app(environ, start_response):
        body = environ["wsgi.input"].read() if environ["PATH_INFO"] == "/read" else b"not read"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    head = b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    with _serve(app) as running, running.connect() as sock:
        sock.sendall(head % b"/read")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        assert _read_responses(sock, 1) == [(200, b"data")]
        sock.sendall(head % b"/ignore")  # answered without 100 Continue; the body is never sent
        stream = sock.makefile("rb")
        assert stream.readline() == b"HTTP/1.1 200 OK\r\n"


def test_file_wrapper_uses_sendfile(tmp_path):
    payload = os.urandom(300_000)
    path = tmp_path / "blob"
    path.write_bytes(payload)

    def app(environ, start_response):
        handle = open(path, "rb")
        handle.seek(10)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](handle)

    with _serve(app) as running:
        response = requests.get(f"http://127.0.0.1:{running.port}/", timeout=5)
    assert response.headers["Content-Length"] == str(len(payload) - 10)
    assert response.content == payload[10:]


def test_upgrade_hands_the_socket_to_the_app():
    def app(environ, start_response):
        sock = environ["ferrovent.socket"]
        start_response("101 Switching Protocols", [("Upgrade", "echo"), ("Connection", "Upgrade")])
        yield b""
        leftover = environ["wsgi.input"].read(100)  # bytes that came right behind the head
        sock.sendall(b"got " + leftover)
        sock.sendall(b"then " + sock.recv(100))

    with _serve(app) as running, running.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nearly")
        stream = sock.makefile("rb")
        assert stream.readline() == b"HTTP/1.1 101 Switching Protocols\r\n"
        while stream.readline() != b"\r\n":
            pass
        assert stream.read1(100) == b"got early"
        sock.sendall(b"late")
        assert stream.read1(100) == b"then late"


def test_tls_server_sets_https(tmp_path):
    files = make_self_signed(tmp_path)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    factory = lambda: pywsgi.WSGIServer(  # noqa: E731
        ("127.0.0.1", 0), app, log=None, certfile=str(files.cert), keyfile=str(files.key)
    )
    with ServerThread(factory) as running:
        context = client_context(files)
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                connection = http.client.HTTPSConnection("localhost", running.port, context=context, timeout=5)
                connection.sock = sock
                connection.request("GET", "/")
                assert connection.getresponse().read() == b"https"
    assert isinstance(context, ssl.SSLContext)


def test_access_log_line():
    lines = []

    class Log:
        def write(self, text):
            lines.append(text)

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"12345"]

    with _serve(app, log=Log()) as running:
        requests.get(f"http://127.0.0.1:{running.port}/logged?q=1", timeout=5)
    assert len(lines) == 1
    assert lines[0].startswith("127.0.0.1 - - [")
    assert '] "GET /logged?q=1 HTTP/1.1" 200 5 ' in lines[0] and lines[0].endswith("\n")
