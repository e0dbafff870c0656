"""Server scenarios (StreamServer, WSGIServer) run on stock gevent and on ferrovent, each in a fresh process.

As in test_io_compat.py, this file is also the script the runner executes (``import ferrovent`` there gives the
implementation under test). Server and clients run in the same process, the clients on the implementation's
cooperative sockets. Both implementations must produce the expected trace, and ferrovent's must equal gevent's.
Only well-formed HTTP is compared here: what each server answers to malformed input differs by design (see
test_pywsgi_bad_input.py).
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

if __name__ == "__main__":  # run as a script: make the ``tests`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest

from tests.compat.runner import Result, check_agreement, print_trace, run_script_scenario
from tests.compat.scenarios import Scenario
from tests.serving import read_response

SERVER_SCENARIOS: dict[str, Scenario] = {}


def server_scenario(expected: list, reports: tuple[str, ...] = ()) -> Callable:
    def register(func: Callable[[Any, list], None]) -> Callable[[Any, list], None]:
        SERVER_SCENARIOS[func.__name__] = Scenario(func, json.loads(json.dumps(expected)), tuple(reports))
        return func

    return register


def module(lib, name: str):
    return importlib.import_module(f"{lib.__name__}.{name}")


# --- StreamServer ---------------------------------------------------------------------------------------------


def _echo(sock, address) -> None:
    while True:
        data = sock.recv(1024)
        if not data:
            return
        if data == b"raise":
            raise ValueError("handler failed")
        sock.sendall(data)


@server_scenario(
    expected=[["echo", "one"], ["closed after raise", ""], ["echo", "two"], ["started", True], ["closed", True]],
    reports=("ValueError",),
)
def stream_server_echo_and_failing_handler(lib, trace):
    socket = module(lib, "socket")
    server = module(lib, "server").StreamServer(("127.0.0.1", 0), _echo)
    server.start()
    address = ("127.0.0.1", server.server_port)

    def exchange(message: bytes) -> str:
        with socket.create_connection(address) as sock:
            sock.sendall(message)
            return sock.recv(1024).decode()

    trace.append(["echo", exchange(b"one")])
    trace.append(["closed after raise", exchange(b"raise")])
    trace.append(["echo", exchange(b"two")])
    trace.append(["started", server.started])
    server.stop()
    trace.append(["closed", server.closed])


# --- WSGIServer -----------------------------------------------------------------------------------------------

ENVIRON_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "HTTP_X_A",
    "HTTP_COOKIE",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.run_once",
)


def _wsgi_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("app failed")
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return (piece for piece in (b"yielded;", b"", b"last"))
    body = environ["wsgi.input"].read()
    seen = {key: environ.get(key) for key in ENVIRON_KEYS}
    seen["body"] = body.decode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen, sort_keys=True).encode()]


def _read_response(stream) -> list:
    """[status, body] of the next response, the body decoded from JSON when it is JSON."""
    status, body = read_response(stream)
    try:
        return [status, json.loads(body)]
    except ValueError:
        return [status, body.decode()]


def _environ(**overrides) -> dict:
    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": None,
        "CONTENT_LENGTH": None,
        "HTTP_X_A": None,
        "HTTP_COOKIE": None,
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "body": "",
    }
    base.update(overrides)
    return base


@server_scenario(
    expected=[
        [
            200,
            _environ(PATH_INFO="/a b", QUERY_STRING="q=1&r=%202", HTTP_X_A="1,2", HTTP_COOKIE="c=1; d=2"),
        ],
        [
            200,
            _environ(REQUEST_METHOD="POST", PATH_INFO="/post", CONTENT_TYPE="text/x", CONTENT_LENGTH="5", body="hello"),
        ],
        [200, _environ(REQUEST_METHOD="POST", PATH_INFO="/chunked", body="hello world")],
        [200, _environ(PATH_INFO="/first")],
        [200, _environ(PATH_INFO="/second")],
        [200, "written;yielded;last"],
        [500, "Internal Server Error"],
        [200, _environ(PATH_INFO="/old", SERVER_PROTOCOL="HTTP/1.0")],
    ],
    reports=("ValueError",),
)
def wsgi_well_formed_requests(lib, trace):
    socket = module(lib, "socket")
    server = module(lib, "pywsgi").WSGIServer(("127.0.0.1", 0), _wsgi_app, log=None)
    server.start()
    address = ("127.0.0.1", server.server_port)
    keep_alive = socket.create_connection(address)
    stream = keep_alive.makefile("rb")

    def ask(data: bytes, count: int = 1) -> None:
        keep_alive.sendall(data)
        for _ in range(count):
            trace.append(_read_response(stream))

    ask(b"GET /a%20b?q=1&r=%202 HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-A: 2\r\nCookie: c=1\r\nCookie: d=2\r\n\r\n")
    ask(b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Type: text/x\r\nContent-Length: 5\r\n\r\nhello")
    ask(
        b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    ask(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n", count=2)
    ask(b"GET /write HTTP/1.1\r\nHost: t\r\n\r\n")
    ask(b"GET /raise HTTP/1.1\r\nHost: t\r\n\r\n")
    keep_alive.close()
    with socket.create_connection(address) as old:
        old.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        trace.append(_read_response(old.makefile("rb")))
    server.stop()


class _ListLog:
    def __init__(self) -> None:
        self.lines: list = []

    def write(self, line: str) -> None:
        self.lines.append(line)


def _logged_app(environ, start_response):
    if environ["PATH_INFO"] == "/raise":
        raise ValueError("app failed")
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"logged " + environ["PATH_INFO"].encode()]


#: An access-log line: client, local time, request line, status, length, duration.
_LOG_LINE = re.compile(r'(\S+) - - \[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] "(.*)" (\d{3}) (\d+|-) (\d+\.\d{6})\n')


@server_scenario(
    expected=[
        ["127.0.0.1", True, "GET /one HTTP/1.1", "200"],
        ["127.0.0.1", True, "GET /two?x=%20y HTTP/1.1", "200"],
        ["127.0.0.1", True, "GET /first HTTP/1.1", "200"],
        ["127.0.0.1", True, "GET /second HTTP/1.1", "200"],
        ["127.0.0.1", True, "POST /post HTTP/1.1", "200"],
        ["127.0.0.1", True, "GET /raise HTTP/1.1", "500"],
        ["127.0.0.1", True, "GET /old?q=1 HTTP/1.0", "200"],
    ],
    reports=("ValueError",),
)
def wsgi_access_log_lines(lib, trace):
    """The access log of the same requests, each line's time checked (local, between the first request and the
    last), its length and duration left out: gevent counts the head's bytes in the length, ferrovent the body's.
    (No HEAD request: gevent sends the body.)"""
    from datetime import datetime

    socket = module(lib, "socket")
    log = _ListLog()
    server = module(lib, "pywsgi").WSGIServer(("127.0.0.1", 0), _logged_app, log=log)
    server.start()
    address = ("127.0.0.1", server.server_port)
    before = str(datetime.now().replace(microsecond=0))
    with socket.create_connection(address) as keep_alive, keep_alive.makefile("rb") as stream:
        for request, count in (
            (b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n", 1),
            (b"GET /two?x=%20y HTTP/1.1\r\nHost: t\r\n\r\n", 1),
            (b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n", 2),
            (b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi", 1),
            (b"GET /raise HTTP/1.1\r\nHost: t\r\n\r\n", 1),
        ):
            keep_alive.sendall(request)
            for _ in range(count):
                read_response(stream)
    with socket.create_connection(address) as old, old.makefile("rb") as stream:
        old.sendall(b"GET /old?q=1 HTTP/1.0\r\n\r\n")
        read_response(stream)
    server.stop()  # waits for the handlers: every line is written
    after = str(datetime.now().replace(microsecond=0))
    for line in log.lines:
        match = _LOG_LINE.fullmatch(line)
        trace.append([match[1], before <= match[2] <= after, match[3], match[4]] if match else line)


# --- gevent's pywsgi API details --------------------------------------------------------------------------------


@server_scenario(
    expected=[
        ["read", "12"],
        ["readline", "ab\n", "c"],
        ["chunked", "12"],
        ["short", "OSError"],
        ["no length", ""],
        ["continue", "HTTP/1.1 100 Continue\r\n\r\n", "x"],
        ["MAX_REQUEST_LINE", 8192],
        ["pickled", "dict", "dict", {"key": "value"}],
        ["copy", "dict"],
        ["secure repr", True],
        ["adapter", 42, None],
        ["hook", True],
        ["date", "Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 04 Dec 2026 09:30:48 GMT"],
    ]
)
def wsgi_input_environ_and_log_api(lib, trace):
    import copy
    import io
    import logging
    import pickle

    pywsgi = module(lib, "pywsgi")
    trace.append(["read", pywsgi.Input(io.BytesIO(b"12"), content_length=2).read().decode()])
    lines = pywsgi.Input(io.BytesIO(b"ab\ncd"), 4)
    trace.append(["readline", lines.readline().decode(), lines.readline().decode()])
    chunked = pywsgi.Input(io.BytesIO(b"1\r\n1\r\n1\r\n2\r\n0\r\n\r\n"), None, chunked_input=True)
    trace.append(["chunked", chunked.read(10).decode()])
    try:
        pywsgi.Input(io.BytesIO(b"1"), content_length=2).read()
        trace.append(["short", "no error"])
    except OSError:
        trace.append(["short", "OSError"])
    trace.append(["no length", pywsgi.Input(io.BytesIO(b"data"), None).read().decode()])

    class Sink:
        sent = b""

        def sendall(self, data):
            Sink.sent += data

    continued = pywsgi.Input(io.BytesIO(b"x"), 1, socket=Sink())
    data = continued.read()
    trace.append(["continue", Sink.sent.decode(), data.decode()])
    trace.append(["MAX_REQUEST_LINE", pywsgi.MAX_REQUEST_LINE])
    environ = pywsgi.SecureEnviron({"key": "value"})
    restored = pickle.loads(pickle.dumps(environ))
    trace.append(["pickled", type(restored).__name__, type(copy.copy(environ)).__name__, restored])
    trace.append(["copy", type(copy.copy(pywsgi.Environ())).__name__])
    trace.append(["secure repr", "value" not in repr(environ)])

    class Logger(logging.Logger):
        def get_thing(self):
            return getattr(self, "thing", None)

    adapter = pywsgi.LoggingLogAdapter(Logger("compat"))
    adapter.thing = 42
    before = adapter.get_thing()
    del adapter.thing
    trace.append(["adapter", before, adapter.get_thing()])
    trace.append(["hook", callable(pywsgi.WSGIHandler._print_unexpected_exc)])
    trace.append(["date", *(pywsgi.format_date_time(when).decode() for when in (0, 1796376648))])


def _rules_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/cookies":
        start_response("200 OK", [])
        return [f"{environ['HTTP_COOKIE']}|{environ['HTTP_COOKIE2']}".encode()]
    if path.startswith("/split-"):
        status, headers = {
            "/split-status": ("200 OK\r\nX: y", []),
            "/split-name": ("200 OK", [("X\r\n", "y")]),
            "/split-value": ("200 OK", [("X", "y\r\nZ: 1")]),
        }[path]
        try:
            start_response(status, headers)
        except ValueError as error:
            start_response("200 OK", [])
            return [f"{type(error).__name__}: {error.args[0]}".encode()]
    if path == "/304-body":
        start_response("304 Not Modified", [])
        return [b"body"]
    if path == "/304-length":
        try:
            start_response("304 Not Modified", [("Content-Length", "100")])
        except AssertionError as error:
            start_response("200 OK", [])
            return list(error.args)  # the message, as bytes
    if path == "/bytearray":
        start_response("200 OK", [])
        return [bytearray(b"hello "), bytearray(b"world")]
    if path == "/empty-yield":
        start_response("200 OK", [])
        return (piece for piece in (b"", b""))
    if path == "/upgrade-flag":
        start_response("200 OK", [("Content-Length", "5")])
        return [str(environ["wsgi.input_terminated"]).encode().ljust(5)]
    if path == "/read":
        length = int(environ.get("CONTENT_LENGTH") or 6)
        data = environ["wsgi.input"].read(length)
        start_response("200 OK", [])
        return [data]
    start_response("417 Expectation Failed", [("Content-Length", "7")])
    return [b"failure"]


@server_scenario(
    expected=[
        [200, 'a="1"; b="2"|c="3"; d="4"'],
        [200, "ValueError: carriage return or newline in status"],
        [200, "ValueError: carriage return or newline in header name"],
        [200, "ValueError: carriage return or newline in header value"],
        [500, "Internal Server Error"],
        [200, "Invalid Content-Length for 304 response: '100' (must be absent or zero)"],
        [200, "hello world"],
        [200, "chunked", ""],
        [200, "False"],
        ["interim", "HTTP/1.1 100 Continue"],
        [200, "testing"],
        [417, "failure"],
        [200, "again"],
        [200, "oh hai"],
        ["then", ""],
    ],
    reports=("AssertionError",),
)
def wsgi_gevent_response_rules(lib, trace):
    from tests.serving import read_full_response

    socket = module(lib, "socket")
    server = module(lib, "pywsgi").WSGIServer(("127.0.0.1", 0), _rules_app, log=None)
    server.start()
    address = ("127.0.0.1", server.server_port)

    def exchange(*requests: bytes) -> None:
        with socket.create_connection(address) as conn, conn.makefile("rb") as stream:
            for request in requests:
                conn.sendall(request)
                status, headers, body = read_full_response(stream)
                if "transfer-encoding" in headers:
                    trace.append([status, headers["transfer-encoding"], body.decode()])
                else:
                    trace.append([status, body.decode().strip()])

    cookies = b'Cookie: a="1"\r\nCookie2: c="3"\r\nCookie2: d="4"\r\nCookie: b="2"\r\n'
    exchange(b"GET /cookies HTTP/1.1\r\nHost: t\r\n" + cookies + b"\r\n")
    exchange(*(b"GET /split-%s HTTP/1.1\r\nHost: t\r\n\r\n" % part for part in (b"status", b"name", b"value")))
    exchange(b"GET /304-body HTTP/1.1\r\nHost: t\r\n\r\n")
    exchange(
        b"GET /304-length HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /bytearray HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /empty-yield HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    exchange(b"GET /upgrade-flag HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\n\r\n")
    with socket.create_connection(address) as conn, conn.makefile("rb") as stream:
        # The 100 Continue comes at the application's first read, even when the body came with the head.
        conn.sendall(b"PUT /read HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\ntesting")
        trace.append(["interim", stream.readline().decode().strip()])
        stream.readline()
        trace.append(list(read_full_response(stream)[::2]))
        trace[-1][1] = trace[-1][1].decode()
        # An unread body the client sent anyway is dropped, and the connection goes on.
        conn.sendall(b"PUT /refuse HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\nunwanted!")
        status, _, body = read_full_response(stream)
        trace.append([status, body.decode()])
        conn.sendall(b"POST /read HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nagain")
        status, _, body = read_full_response(stream)
        trace.append([status, body.decode()])
    with socket.create_connection(address) as conn, conn.makefile("rb") as stream:
        # A request line smuggled as a trailer: the data before it is read; then the connection closes.
        conn.sendall(
            b"POST /read HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\noh\r\n4\r\n hai\r\n"
            b"0\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        status, _, body = read_full_response(stream)
        trace.append([status, body.decode()])
        trace.append(["then", stream.read().decode()])
    server.stop()


def _make_echo_upgrade_handler(pywsgi):
    """A handler subclass taking the connection over the way gevent-websocket's does: its own run_application,
    a 101 head sent with write(""), then ``rfile.read`` and ``socket.sendall``; other requests go to the app."""

    class EchoUpgradeHandler(pywsgi.WSGIHandler):
        def run_application(self):
            if self.environ.get("HTTP_UPGRADE") != "echo":
                return super().run_application()
            self.start_response("101 Switching Protocols", [("Upgrade", "echo"), ("Connection", "Upgrade")])
            self.close_connection = True  # as gevent-websocket does: gevent would read another request after
            self.write("")
            while (size := self.rfile.read(1)) and size != b"0":
                self.socket.sendall(b"echo:" + self.rfile.read(int(size)))
            self.result = []
            self.process_result()

    return EchoUpgradeHandler


def _plain_app(environ, start_response):
    start_response("200 OK", [("Content-Length", "5")])
    return [b"plain"]


@server_scenario(expected=[[101, "echo"], "echo:hi", "echo:there", "", [200, "plain"]])
def wsgi_handler_subclass_takes_the_connection_over(lib, trace):
    from tests.serving import read_full_response

    socket = module(lib, "socket")
    pywsgi = module(lib, "pywsgi")
    handler = _make_echo_upgrade_handler(pywsgi)
    server = pywsgi.WSGIServer(("127.0.0.1", 0), _plain_app, log=None, handler_class=handler)
    server.start()
    address = ("127.0.0.1", server.server_port)
    with socket.create_connection(address) as conn, conn.makefile("rb") as stream:
        # The first message comes with the head: the handler reads it from what the server already received.
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n2hi")
        status = int(stream.readline().split()[1])
        head = dict(line.decode().strip().split(": ", 1) for line in iter(stream.readline, b"\r\n"))
        trace.append([status, head["Upgrade"]])
        trace.append(stream.read(7).decode())
        conn.sendall(b"5there0")
        trace.append(stream.read(10).decode())
        trace.append(stream.read().decode())  # the handler returned: the server closes the connection
    with socket.create_connection(address) as conn, conn.makefile("rb") as stream:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = read_full_response(stream)
        trace.append([status, body.decode()])
    server.stop()


# --- running --------------------------------------------------------------------------------------------------


@functools.cache
def gevent_server_result(name: str) -> Result:
    return run_script_scenario("gevent", Path(__file__), name)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", list(SERVER_SCENARIOS))
def test_server_scenario(name, impl_name):
    expected = SERVER_SCENARIOS[name]
    result = run_script_scenario(impl_name, Path(__file__), name)
    oracle = functools.partial(gevent_server_result, name)
    check_agreement(result, expected.expected, expected.reports, impl_name, oracle, quiet=False)


def main(name: str) -> None:
    import ferrovent as lib  # the implementation under test: the runner aliases gevent under this name

    trace: list = []
    SERVER_SCENARIOS[name].func(lib, trace)
    print_trace(trace)


if __name__ == "__main__":
    main(sys.argv[1])
