"""The WSGI server's keep-alive loop in Rust (``serve_requests``, FERROVENT_WSGI_FAST): which connections take it,
and that what it serves, or hands to the handler's Python steps, goes out byte for byte as those steps send it.

Each scenario runs twice, the loop on and off, over raw sockets: one request (or several in one send), then a last
request that closes the connection; the bytes received (the Date header's value masked), the error lines the
server reported and the access-log lines (their time and duration checked, then masked) must be the same, with
no log, a log object, one that switches greenlets in ``write``, a ``logging.Logger`` and the default stderr.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
from datetime import datetime

import pytest
from ferrovent import pywsgi, sleep
from ferrovent._wsgi import handler as handler_module

from tests.child import run_child
from tests.serving import ServerThread, SharedLog, read_until_close

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
    if path == "/clear-after":  # the log reads the environ the application leaves: no request line at all
        start_response("200 OK", plain)
        environ.clear()
        return [b"cleared"]
    if path == "/odd-after":  # request line parts that are not plain str: formatted as an f-string does
        start_response("200 OK", plain)
        environ["REQUEST_METHOD"] = "G\udcffT"
        environ["REQUEST_URI"] = 5
        return [b"odd"]
    if path == "/pop-after":  # the log line cannot be made: the handler's KeyError ends the connection
        start_response("200 OK", plain)
        del environ["SERVER_PROTOCOL"]
        return [b"popped"]
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
            b"twice exc-info keywords bad-status bad-header split-header missing-args protocol no-method clear-after "
            b"odd-after pop-after"
        ).split()
    ),
    b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: UPGRADE\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",  # pipelined
    b"GET /bad HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",  # refused: 400
    b"NOT A REQUEST\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNOT A REQUEST\r\n\r\n",  # refused after one the loop answered
    # the same, the refused head sent once the first response arrived: the loop reads it, the handler refuses it
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"NOT A REQUEST\r\n\r\n"),
]

#: An access-log line: client, local time, request line, status, length, duration.
_LINE = re.compile(r'(\S+) - - \[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] "(.*)" (\S+) (\S+) (\d+\.\d{6}|-)\n', re.DOTALL)
_LOGGER_NAMES = itertools.count()


class ListLog:
    """A server ``log`` keeping what it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)


class SwitchingLog(ListLog):
    """A log whose ``write`` lets the other greenlets run first (as one writing to a socket would)."""

    def write(self, line: str) -> None:
        sleep(0)
        self.lines.append(line)


class FailingLog(ListLog):
    """A log whose ``write`` fails: the handler lets the error end the connection."""

    def write(self, line: str) -> None:
        self.lines.append(line)
        raise ValueError("the log failed")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        assert record.levelno == logging.INFO
        self.lines.append(record.getMessage() + "\n")  # the adapter drops the newline


class _Access:
    """A server's ``log`` argument of one kind, and the lines it got."""

    def __init__(self, kind: str, capsys) -> None:
        self.kind, self.capsys = kind, capsys
        self.log: object = {"none": None, "stderr": "default"}.get(kind)
        if kind in ("list", "switching", "failing"):
            self.log = {"list": ListLog, "switching": SwitchingLog, "failing": FailingLog}[kind]()
        elif kind == "logger":
            self.log = logging.getLogger(f"ferrovent-fast-loop-{next(_LOGGER_NAMES)}")
            self.log.propagate = False
            self.log.setLevel(logging.INFO)
            self.records = _Records()
            self.log.addHandler(self.records)

    def lines(self) -> list[str]:
        if self.kind == "stderr":
            return self.capsys.readouterr().err.splitlines(keepends=True)
        if self.kind == "logger":
            return self.records.lines
        return getattr(self.log, "lines", [])


def _masked(lines: list[str], before: str, after: str) -> list[str]:
    """``lines`` with the time and the duration masked, after checking them: the local time of the request (as
    ``datetime.now()`` tells it), a duration with 6 decimals."""
    masked = []
    for line in lines:
        match = _LINE.fullmatch(line)
        assert match, line
        assert before <= match[2] <= after, (before, line, after)
        duration = "-" if match[6] == "-" else "D"
        masked.append(line[: match.start(2)] + "T" + line[match.end(2) : match.start(6)] + duration + "\n")
    return masked


def _transcript(request: bytes | tuple, kind: str = "none", capsys=None) -> tuple[bytes, list[str], list[str]]:
    """The bytes a client receives for ``request`` then `LAST`, the errors the server reported and its access-log
    lines, with a ``log`` of ``kind``. A tuple's second part is sent once the first's response began to arrive."""
    access = _Access(kind, capsys)
    before = str(datetime.now().replace(microsecond=0))
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, log=access.log, error_log=None)  # noqa: E731
    received = b""
    with ServerThread(factory) as server, server.connect() as sock:
        if isinstance(request, tuple):
            sock.sendall(request[0])
            received = sock.recv(65536)
            request = request[1]
        sock.sendall(request)
        try:
            sock.sendall(LAST)
        except OSError:
            pass  # the server closed after the first response
        received += read_until_close(sock)
    reports = server.reports.text()  # once the server stopped: a failed handler is reported after its close
    after = str(datetime.now().replace(microsecond=0))
    received = re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", received)
    failed = ("failed with", "ValueError", "Ass", "KeyError")
    errors = [line for line in reports.splitlines() if line.startswith(failed) or failed[0] in line]
    errors = [re.sub(r"'REMOTE_PORT': '\d+'", "'REMOTE_PORT': -", re.sub(r"^\S+Z ", "", line)) for line in errors]
    errors = [re.sub(r" at 0x[0-9a-f]+|fileno=\d+ |fd=-?\d+", "", line) for line in errors]
    return received, errors, _masked(access.lines(), before, after)


@pytest.mark.parametrize("kind", ["none", "list", "switching", "logger", "stderr"])
@pytest.mark.parametrize("request_bytes", REQUESTS, ids=range(len(REQUESTS)))
def test_the_rust_loop_sends_and_logs_what_the_python_steps_do(request_bytes, kind, monkeypatch, capsys):
    monkeypatch.setattr(handler_module, "_FAST_LOOP", True)
    fast = _transcript(request_bytes, kind, capsys)
    monkeypatch.setattr(handler_module, "_FAST_LOOP", False)
    python = _transcript(request_bytes, kind, capsys)
    assert fast == python
    sent = b"".join(request_bytes) if isinstance(request_bytes, tuple) else request_bytes
    assert fast[0].startswith(b"HTTP/1.1 ") or b"/nothing" in sent  # that one answers nothing
    # No line where it cannot be made (a missing key) or written (stderr cannot encode a lone surrogate).
    unlogged = b"/pop-after" in sent or kind == "stderr" and b"/odd-after" in sent
    assert bool(fast[2]) == (kind != "none" and not unlogged)


@pytest.mark.parametrize("request_bytes", REQUESTS[:3] + REQUESTS[-4:], ids=range(7))
def test_a_log_that_fails_ends_the_connection_as_the_python_steps_do(request_bytes, monkeypatch):
    monkeypatch.setattr(handler_module, "_FAST_LOOP", True)
    fast = _transcript(request_bytes, "failing")
    monkeypatch.setattr(handler_module, "_FAST_LOOP", False)
    python = _transcript(request_bytes, "failing")
    assert fast == python
    assert fast[1][-2] == "ValueError: the log failed" and fast[1][-1].endswith("failed with ValueError")
    assert len(fast[2]) == 1


def _kind(**server_args) -> bytes:
    factory = lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, error_log=None, **server_args)  # noqa: E731
    with ServerThread(factory) as server, server.connect() as sock:
        sock.sendall(b"GET /kind HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_until_close(sock).rpartition(b"\r\n\r\n")[2]


class _Subclass(pywsgi.WSGIHandler):
    pass


def test_only_the_handler_class_itself_takes_the_loop_with_or_without_an_access_log(monkeypatch, capsys):
    monkeypatch.setattr(handler_module, "_FAST_LOOP", True)
    assert _kind(log=None) == b"StartResponse"
    assert _kind(log=None, handler_class=_Subclass) == b"method"
    assert _kind(log=ListLog()) == b"StartResponse"
    assert _kind(log=logging.getLogger("fast-loop-test")) == b"StartResponse"
    assert _kind() == b"StartResponse"  # gevent's default: the access log on stderr
    assert _kind(handler_class=_Subclass) == b"method"
    assert _kind(log=None, environ={"x": "y"}) == b"StartResponse"
    monkeypatch.setattr(handler_module, "_FAST_LOOP", False)
    assert _kind(log=None) == b"method"
    assert _kind() == b"method"
    lines = capsys.readouterr().err.splitlines()  # the three with the default log, the body's length last but one
    assert [line.split('" ')[1].split()[:2] for line in lines] == [["200", "13"], ["200", "6"], ["200", "6"]]


@pytest.mark.parametrize("fast", [True, False])
def test_the_default_log_is_the_stderr_of_when_the_server_was_made(fast, monkeypatch):
    monkeypatch.setattr(handler_module, "_FAST_LOOP", fast)
    then, later = SharedLog(), SharedLog()
    monkeypatch.setattr(sys, "stderr", then)
    with ServerThread(lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, error_log=None)) as server:
        monkeypatch.setattr(sys, "stderr", later)
        with server.connect() as sock:
            sock.sendall(b"GET /kind HTTP/1.1\r\nHost: x\r\n\r\n" + LAST)
            assert read_until_close(sock).endswith(b"hello /last")
    assert later.text() == ""
    assert [line.split('"')[1] for line in then.text().splitlines()] == ["GET /kind HTTP/1.1", "GET /last HTTP/1.1"]


_STDERR_CHILD = """
    from datetime import datetime
    import time
    from ferrovent import pywsgi
    from tests.serving import ServerThread, read_until_close
    from tests.test_pywsgi_fast_loop import LAST, REQUESTS, _app

    print(time.strftime("%z"))
    print(datetime.now().replace(microsecond=0), flush=True)
    for request in REQUESTS[:-1]:
        with ServerThread(lambda: pywsgi.WSGIServer(("127.0.0.1", 0), _app, error_log=None)) as server:
            with server.connect() as sock:
                sock.sendall(request)
                try:
                    sock.sendall(LAST)
                except OSError:
                    pass
                read_until_close(sock)
    print(datetime.now().replace(microsecond=0))
"""


def test_the_default_log_writes_the_same_lines_to_the_process_stderr_in_local_time():
    logs = []
    for fast in ("1", "0"):
        # A zone 5:30 ahead of UTC, as a POSIX TZ string (no zone files needed): the stamps are local time.
        child = run_child(_STDERR_CHILD, env={"FERROVENT_WSGI_FAST": fast, "TZ": "FRV-5:30"}, timeout=60)
        zone, before, after = child.stdout.splitlines()
        assert zone == "+0530"
        lines = [line for line in child.stderr.splitlines(keepends=True) if " - - [" in line]
        logs.append(_masked(lines, before, after))
    assert logs[0] == logs[1]
    assert len(logs[0]) > len(REQUESTS) - 1
