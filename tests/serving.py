"""Run a ferrovent server in a thread of the test process, with a hub of its own, for tests whose clients are
ordinary blocking code (requests, http.client, raw sockets) in the main thread; and read raw HTTP responses.

The server is built inside its thread (``factory()`` runs there), since a server belongs to the hub of the thread
that made it. What the hub reports (tracebacks of failed greenlets) is collected in `reports`. This module imports
no coroutine library at the top, so the compat scripts can use `read_response` on gevent too.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable
from typing import Any


class SharedLog(io.StringIO):
    """A stream written by the server's thread and read by the test's (the hub's reports, a server's log)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            return super().write(text)

    def text(self) -> str:
        with self._lock:
            return self.getvalue()


class ServerThread:
    """``with ServerThread(lambda: WSGIServer(("127.0.0.1", 0), app)) as server:`` then talk to ``server.port``."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory
        self.reports = SharedLog()
        self.server: Any = None
        self.port = 0
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ferrovent-server", daemon=True)

    def _run(self) -> None:
        from ferrovent.hub import get_hub

        hub = get_hub()
        hub.exception_stream = self.reports
        try:
            self.server = self.factory()
            self.server.start()
            self.port = self.server.server_port
        except BaseException as error:
            self._failure = error
            raise
        finally:
            self._ready.set()
        try:
            self.server.serve_forever()
        finally:
            hub.destroy()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10) or self._failure is not None:
            raise RuntimeError(f"the server did not start: {self._failure!r}")
        return self

    def call(self, function: Callable[..., Any], *args: Any) -> None:
        """Runs ``function(*args)`` in a new greenlet of the server's thread (fire and forget)."""
        from ferrovent.greenlet import Greenlet

        self.server.loop.run_callback_threadsafe(Greenlet.spawn, function, *args)

    def __exit__(self, *exc_info: Any) -> None:
        self.call(self.server.stop, 1.0)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the server thread did not stop"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """A plain blocking client socket connected to the server."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


def read_response(stream: Any) -> tuple[int, bytes]:
    """``(status, body)`` of one response from a buffered reader over the connection; the body framed by
    Content-Length, by chunks, or by the end of the stream."""
    status, _, body = read_full_response(stream)
    return status, body


def read_full_response(stream: Any) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one response, as `read_response` reads it; header names in lower case."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(stream.readline(), 16):
            body += stream.read(size)
            stream.readline()
        stream.readline()
        return status, headers, body
    if "content-length" in headers:
        return status, headers, stream.read(int(headers["content-length"]))
    return status, headers, stream.read()


def read_until_close(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (a reset counts as a close)."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out
