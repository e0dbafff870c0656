"""A client connection's byte stream for the WSGI server: receive and send with per-call timeouts, the bytes read
ahead, and whether the stream can still be trusted.

`Connection` is what the request body (`ferrovent._wsgi.body.Input`) and the handler share: the body reads through
it and records its failures on it, instead of reaching into the handler. Errors come out as the `ClientError`
kinds, so the handler can tell a client's failure from the application's own. `FileSource` stands in for a
`Connection` when an ``Input`` is made over a plain binary file; `ConnectionReader` is the handler's ``rfile``.
"""

from __future__ import annotations

import _socket
import errno
import os
import time
from functools import partial
from typing import Any, NoReturn, Optional

from ferrovent import socket as _cooperative
from ferrovent._core import sleep
from ferrovent._core import sock_recv as _cooperative_recv
from ferrovent._core import sock_send_pair as _send_pair
from ferrovent.hub import get_hub

__all__ = [
    "TURN_SECONDS",
    "ClientError",
    "ClientGone",
    "ClientTimeout",
    "InvalidClientInput",
    "PlainIO",
    "SocketIO",
    "open_io",
    "Connection",
    "FileSource",
    "ConnectionReader",
]

_sock_send = _socket.socket.send
_monotonic = time.monotonic
_Socket = _cooperative.socket

#: How much one receive asks for while draining a closing connection.
_LINGER_READ = 64 * 1024
#: The longest a connection whose bytes are already there (a fast upload, pipelined requests) runs before it lets
#: the loop serve the others: it never has to wait, so it would never give the loop a turn by itself.
TURN_SECONDS = 0.002
_TURN_PAUSE = 1e-6
#: A body this large is sent apart from the head over TLS rather than copied behind it.
_SEPARATE_SEND = 64 * 1024


class ClientError(OSError):
    """Something wrong on the client's side of the connection; the connection will be closed."""


class ClientGone(ClientError):
    """The client reset or closed the connection while we were sending or receiving."""


class ClientTimeout(ClientError, TimeoutError):
    """The client did not send (or read) within the timeout. Also a ``socket.timeout``, for applications."""


class InvalidClientInput(ClientError):
    """The request body is malformed: bad chunked framing, or the connection ended before the body did."""


def _raise_client_error(error: BaseException) -> NoReturn:
    """Raises the `ClientError` kind for a failed socket call's ``error``, as if it happened in an ``except``."""
    try:
        raise error
    except _socket.timeout:
        raise ClientTimeout("timed out") from None
    except OSError as failed:
        raise ClientGone(failed.errno, failed.strerror) from failed


class PlainIO:
    """A plain cooperative socket driven with the C socket calls: try, and on EAGAIN wait with a per-call timeout."""

    __slots__ = ("sock", "fd", "wait_fd", "send_pair")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.wait_fd = get_hub().loop.wait_fd
        #: ``send_pair(head, body, timeout)``: ``head`` then ``body`` in one system call (no join), each wait for
        #: space bounded by ``timeout``; the Rust call raises the ClientError kinds itself (no Python frame).
        self.send_pair = partial(_send_pair, sock, _raise_client_error)

    def recv(self, size: int, timeout: Optional[float]) -> bytes:
        """Up to ``size`` bytes (b"" at end of stream); raises ClientTimeout if none come within ``timeout``."""
        try:
            return _cooperative_recv(self.sock, size, 0, timeout)
        except OSError as error:
            _raise_client_error(error)

    def sendall(self, data: Any, timeout: Optional[float]) -> None:
        """Sends all of ``data``; each wait for buffer space is bounded by ``timeout``."""
        sock = self.sock
        try:
            sent = _sock_send(sock, data)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            raise ClientGone(error.errno, error.strerror) from error
        if sent == len(data):
            return
        with memoryview(data) as view:
            self._send_rest(view, sent, timeout)

    def _send_rest(self, view: memoryview, sent: int, timeout: Optional[float]) -> None:
        sock = self.sock
        total = len(view)
        while sent < total:
            if not self.wait_fd(self.fd, True, timeout, None, True, True):
                raise ClientTimeout("timed out")
            try:
                sent += _sock_send(sock, view[sent:])
            except BlockingIOError:
                pass
            except OSError as error:
                raise ClientGone(error.errno, error.strerror) from error

    def sendfile(self, fd: int, offset: int, count: int, timeout: Optional[float]) -> int:
        """Sends ``count`` bytes of file ``fd`` from ``offset`` with os.sendfile; returns how many were sent."""
        done = 0
        while done < count:
            try:
                sent = os.sendfile(self.fd, fd, offset + done, count - done)
            except BlockingIOError:
                if not self.wait_fd(self.fd, True, timeout, None, True, True):
                    raise ClientTimeout("timed out") from None
                continue
            except OSError as error:
                raise ClientGone(error.errno, error.strerror) from error
            if sent == 0:  # the file is shorter than announced
                break
            done += sent
        return done


class SocketIO:
    """Any other socket (a TLS socket): its own methods, its timeout set per call."""

    __slots__ = ("sock",)

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def recv(self, size: int, timeout: Optional[float]) -> bytes:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(size)
        except TimeoutError as error:
            raise ClientTimeout("timed out") from error
        except OSError as error:
            raise ClientGone(error.errno, str(error)) from error

    def sendall(self, data: Any, timeout: Optional[float]) -> None:
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except TimeoutError as error:
            raise ClientTimeout("timed out") from error
        except OSError as error:
            raise ClientGone(error.errno, str(error)) from error

    def send_pair(self, head: bytes, body: Any, timeout: Optional[float]) -> None:
        """``head`` then ``body``: joined when small (one record), apart when large (no copy of the body)."""
        if len(body) >= _SEPARATE_SEND:
            self.sendall(head, timeout)
            self.sendall(body, timeout)
        else:
            self.sendall(head + body, timeout)

    sendfile = None  # TLS encrypts in user space: file bodies go through the iterator


def open_io(sock: Any) -> Any:
    """The fastest driver for ``sock``: the C calls for a plain cooperative socket, its own methods otherwise."""
    return PlainIO(sock) if type(sock) is _Socket else SocketIO(sock)


class Connection:
    """One client connection: its I/O driver, the bytes received and not yet used, and its state.

    ``buffer`` holds bytes read ahead: body bytes, or the start of the next request head (pipelining).
    ``broken`` means the byte stream can no longer be trusted (a body failed, the app took the socket over):
    the connection closes after the current response. ``taken_over`` means the application reached for the raw
    socket (``wsgi.input.rfile.raw._sock``, as simple-websocket does on gevent) and speaks on it itself: its
    request is the connection's last, and an application that then returns no response is not in error.
    ``input_error`` is the body failure the server answers for, whatever the application does.
    """

    __slots__ = ("socket", "io", "buffer", "io_timeout", "broken", "taken_over", "input_error", "turn_ends")

    def __init__(self, sock: Any, io_timeout: Optional[float]) -> None:
        self.socket = sock
        self.io: Any = open_io(sock)
        self.buffer = b""
        self.io_timeout = io_timeout
        self.broken = False
        self.taken_over = False
        self.input_error: Optional[ClientError] = None
        self.turn_ends = 0.0

    def take_over(self) -> None:
        """The application speaks on the socket itself from now on: this request is the connection's last."""
        self.taken_over = self.broken = True

    def take_turns(self) -> None:
        """Lets the loop serve the other connections if this one has run for `TURN_SECONDS` without waiting."""
        now = _monotonic()
        if now >= self.turn_ends:
            if self.turn_ends:
                # A timer, not sleep(0): it fires after the next poll, so the connections with I/O run first.
                sleep(_TURN_PAUSE)
            self.turn_ends = _monotonic() + TURN_SECONDS

    def send(self, data: Any) -> None:
        """Sends all of ``data``, each wait bounded by ``io_timeout``."""
        self.io.sendall(data, self.io_timeout)

    def receive_body(self, size: int) -> bytes:
        """At least one byte (at most ``size``) for a request body; a failure is recorded, then raised."""
        self.take_turns()
        try:
            data = self.io.recv(size, self.io_timeout)
        except ClientError as error:
            raise self.input_failed(error) from error
        if not data:
            raise self.input_failed(
                InvalidClientInput(errno.ECONNRESET, "the client closed the connection before the body's end")
            )
        return data

    def input_failed(self, error: ClientError) -> ClientError:
        """Records that reading the request body failed: whatever the application then answers, the server
        answers for the request (400 or 408) and closes the connection, whose framing is lost."""
        self.input_error = error
        self.broken = True
        return error

    def linger(self, seconds: float, budget: int) -> None:
        """Shuts our side, then reads and drops what the client still sends, briefly, so it gets our last answer."""
        sock = self.socket
        try:
            sock.shutdown(_socket.SHUT_WR)
        except OSError:
            return
        deadline = _monotonic() + seconds
        io = self.io
        try:
            while budget > 0:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return
                data = io.recv(_LINGER_READ, remaining)
                if not data:
                    return
                budget -= len(data)
        except ClientError:
            return

    def release(self) -> None:
        """Drops the I/O driver and the buffer when the connection is over."""
        self.io = None
        self.buffer = b""


class FileSource:
    """A request body's bytes from a binary file (an ``Input`` made by hand, as gevent's ``Input(rfile, ...)``):
    the part of `Connection` that ``Input`` uses. The ``100 Continue`` goes to ``socket``, if one is given."""

    __slots__ = ("_read", "socket", "buffer", "input_error")

    def __init__(self, rfile: Any, socket: Any) -> None:
        self._read = getattr(rfile, "read1", None) or rfile.read  # read1: what is there, not a full block
        self.socket = socket
        self.buffer = b""
        self.input_error: Optional[ClientError] = None

    def send(self, data: bytes) -> None:
        if self.socket is not None:
            self.socket.sendall(data)

    def receive_body(self, size: int) -> bytes:
        data = self._read(size)
        if not data:
            raise self.input_failed(InvalidClientInput(errno.ECONNRESET, "the stream ended before the body's end"))
        return bytes(data)

    def input_failed(self, error: ClientError) -> ClientError:
        self.input_error = error
        return error


class ConnectionReader:
    """``WSGIHandler.rfile``: a `Connection`'s incoming bytes as a binary file, for handlers that read (part of)
    the request themselves, or the stream after a ``101``; bytes left unread stay in the connection's buffer.
    Each wait for bytes is bounded by ``timeout`` (`ClientTimeout`; None: no bound, as a socket's file)."""

    __slots__ = ("_conn", "timeout", "closed")

    def __init__(self, conn: Connection, timeout: Optional[float]) -> None:
        self._conn = conn
        self.timeout = timeout
        self.closed = False

    def close(self) -> None:
        """Marks the file closed; the connection itself is the server's to close."""
        self.closed = True

    @property
    def raw(self) -> Any:
        """The socket under the stream, as a raw file whose ``_sock`` is the client socket: the shape of gevent's
        ``rfile.raw``, where WebSocket libraries look for the socket to take over. Reaching for it hands the
        connection to the application (`Connection.take_over`)."""
        self._conn.take_over()
        return self._conn.socket.makefile("rb", buffering=0)

    def _more(self) -> bool:
        """Receives more bytes into the buffer; False at the end of the stream."""
        data = self._conn.io.recv(_LINGER_READ, self.timeout)
        if not data:
            return False
        self._conn.buffer += data
        return True

    def read(self, size: Optional[int] = -1) -> bytes:
        """``size`` bytes (fewer at the end of the stream); all the rest if ``size`` is None or negative."""
        conn = self._conn
        buf = conn.buffer
        if size is not None and 0 <= size <= len(buf):  # at hand: a WebSocket frame's header, then its payload
            conn.buffer = buf[size:]
            return buf[:size]
        while size is None or size < 0 or len(conn.buffer) < size:
            if not self._more():
                break
        buf = conn.buffer
        end = len(buf) if size is None or size < 0 else size
        conn.buffer = buf[end:]
        return buf[:end]

    def readline(self, size: Optional[int] = -1) -> bytes:
        """One line with its b"\\n" (at most ``size`` bytes; fewer at the end of the stream)."""
        limit = -1 if size is None else size
        conn = self._conn
        while True:
            buf = conn.buffer
            newline = buf.find(b"\n")
            if newline >= 0 and (limit < 0 or newline < limit):
                end = newline + 1
                break
            if 0 <= limit <= len(buf):
                end = limit
                break
            if not self._more():
                end = len(buf)
                break
        conn.buffer = buf[end:]
        return buf[:end]
