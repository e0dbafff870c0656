"""ferrovent._core.http_load, the load generator the WSGI benches use when wrk is absent: every request it counts
was served, it follows each way a response can be framed, and it fails cleanly."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ferrovent._core import http_load

from tests.serving import ServerThread

SECONDS = 0.5


class Counter:
    """Requests served, counted by the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


def _check_run(port: int, served: Counter, connections: int = 8, threads: int = 1) -> None:
    report = http_load("127.0.0.1", port, "/", connections=connections, duration=SECONDS, threads=threads)
    assert report.errors == 0, report.first_error
    assert report.requests > connections
    assert report.requests == served.value
    assert report.p50_ms is not None and report.p99_ms is not None and report.max_ms is not None
    assert 0 < report.p50_ms <= report.p99_ms <= report.max_ms
    assert report.seconds >= SECONDS
    assert report.requests_per_second == pytest.approx(report.requests / report.seconds)
    assert (report.threads, report.connections) == (threads, connections)
    assert 0 < report.cpu_seconds and 0 < report.cpu_use <= 1.0


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_counts_what_a_ferrovent_wsgi_server_served(framing: str) -> None:
    from ferrovent.pywsgi import WSGIServer

    served = Counter()

    def app(environ, start_response):
        served.add()
        start_response("200 OK", [("Content-Type", "text/plain")])
        if framing == "content-length":
            return [b"Hello, World!"]
        return iter([b"Hello, ", b"World!"])  # no length known: pywsgi chunks it

    with ServerThread(lambda: WSGIServer(("127.0.0.1", 0), app, log=None)) as server:
        _check_run(server.port, served)


def _handler(served: Counter, protocol: str, status: int = 200) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = protocol
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            served.add()
            self.send_response(status)
            if protocol == "HTTP/1.1":  # chunked, written by hand, in two chunks and with a trailer
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"7\r\nHello, \r\n6;ext=1\r\nWorld!\r\n0\r\nX-Trailer: yes\r\n\r\n")
            else:  # HTTP/1.0 with no length: the body ends when the server closes
                self.end_headers()
                self.wfile.write(b"Hello, World!")

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def threaded_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http.server", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/1.0"])
def test_counts_what_a_threaded_http_server_served(protocol: str) -> None:
    served = Counter()
    with threaded_server(_handler(served, protocol)) as port:
        _check_run(port, served, connections=5, threads=2)  # threads share the connections unevenly


def test_error_statuses_are_errors_not_requests() -> None:
    served = Counter()
    with threaded_server(_handler(served, "HTTP/1.1", status=500)) as port:
        report = http_load("127.0.0.1", port, connections=2, duration=0.2)
    assert report.requests == 0
    assert report.errors == served.value > 0
    assert report.first_error == "status 500"
    assert report.p50_ms is None


def test_a_refused_port_raises_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connecting is refused
        with pytest.raises(ConnectionRefusedError):
            http_load("127.0.0.1", port, connections=2, duration=5.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"connections": 0}, {"threads": 0}, {"duration": 0.0}, {"duration": float("nan")}, {"path": "no-slash"}],
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    arguments = {"path": "/", **kwargs}
    with pytest.raises(ValueError):
        http_load("127.0.0.1", 1, **arguments)
