"""A WSGI server (PEP 3333) for HTTP/1.0 and 1.1: `WSGIServer` and `WSGIHandler`, gevent's API.

``WSGIServer(('127.0.0.1', 8000), app).serve_forever()`` serves ``app`` with a greenlet per connection.

How a request goes through: the handler receives bytes into the connection's buffer and hands them to the Rust
parser (``ferrovent._core.parse_request``) in one call, which validates the head (limits, framing, smuggling
checks) and builds the whole environ dict from a per-connection base, or says "need more", or names the 4xx to
answer. The application runs in the connection's greenlet; ``wsgi.input`` reads the body straight from the
connection's buffer and socket, only as far as the application asks (Content-Length or chunked, the latter
decoded by ``ferrovent._core.ChunkedDecoder``). The status line, the headers and the first body chunk leave in
one ``send``. Bytes after a request's body stay in the buffer as the start of the next request (pipelining).

Bounds, so that no client can hold memory or a greenlet forever: the head is at most 64 KiB (8 KiB of request
line, 100 fields), and must arrive within ``header_timeout`` of its first byte (else 408); an idle keep-alive
connection is closed after ``keepalive_timeout``; each body read and each send must progress within
``io_timeout``; a body the application left unread is drained only up to ``WSGIHandler.max_discard`` bytes, else
the connection is closed. A refused request gets its status (400, 408, 414, 431, 501, 505) and the connection is
closed gracefully (our side shut down first, the client's remaining bytes drained briefly) so that the client
reads the answer instead of a reset.

Extensions: ``environ['ferrovent.socket']`` is the client socket. A request with an ``Upgrade`` header gets a
raw reader of the connection as ``wsgi.input``; if the application answers ``101``, the server sends the head
and then stops touching the connection: the application owns the socket until it returns.
"""

from __future__ import annotations

import _socket
import errno
import os
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Callable, Optional

from ferrovent import __version__
from ferrovent import socket as _cooperative
from ferrovent._core import ChunkedDecoder, HttpParseError, parse_request
from ferrovent.hub import get_hub
from ferrovent.server import StreamServer

__all__ = [
    "WSGIServer",
    "WSGIHandler",
    "Input",
    "FileWrapper",
    "LoggingLogAdapter",
    "Environ",
    "SecureEnviron",
    "WSGISecureEnviron",
]

_sock_recv = _socket.socket.recv
_sock_send = _socket.socket.send
_monotonic = time.monotonic
_now = time.time
_Socket = _cooperative.socket

#: How much one receive asks for while reading a head.
_HEAD_READ = 16 * 1024
#: How much one receive asks for while reading a body.
_BODY_READ = 256 * 1024
#: A body chunk at least this large is sent on its own rather than copied behind the head.
_SEPARATE_SEND = 64 * 1024
#: Head sizes where the parser's limits bite (request line, whole head): a pending head is re-parsed on crossing.
_LIMITS = (8 * 1024, 64 * 1024)
_NO_BODY_CODES = frozenset((204, 304))
# The lengths of the response header names the server looks at: Date, Connection, Content-Length, Transfer-Encoding.
_SPECIAL_LENGTHS = frozenset((4, 10, 14, 17))
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CHUNKED_END = b"0\r\n\r\n"


class _ClientError(OSError):
    """Something wrong on the client's side of the connection; the connection will be closed."""


class _ClientGone(_ClientError):
    """The client reset or closed the connection while we were sending or receiving."""


class _ClientTimeout(_ClientError, TimeoutError):
    """The client did not send (or read) within the timeout. Also a ``socket.timeout``, for applications."""


class _InvalidClientInput(_ClientError):
    """The request body is malformed: bad chunked framing, or the connection ended before the body did."""


# -- connection I/O -------------------------------------------------------------------------------------------


class _PlainIO:
    """A plain cooperative socket driven with the C socket calls: try, and on EAGAIN wait with a per-call timeout.

    Errors come out as the private `_ClientError` kinds, so the handler can tell them from the application's own.
    """

    __slots__ = ("sock", "fd", "wait_fd")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.wait_fd = get_hub().loop.wait_fd

    def recv(self, size: int, timeout: Optional[float]) -> bytes:
        """Up to ``size`` bytes (b"" at end of stream); raises _ClientTimeout if none come within ``timeout``."""
        sock = self.sock
        while True:
            try:
                return _sock_recv(sock, size)
            except BlockingIOError:
                pass
            except OSError as error:
                raise _ClientGone(error.errno, error.strerror) from error
            if not self.wait_fd(self.fd, False, timeout, None, True, True):
                raise _ClientTimeout("timed out")

    def sendall(self, data: Any, timeout: Optional[float]) -> None:
        """Sends all of ``data``; each wait for buffer space is bounded by ``timeout``."""
        sock = self.sock
        try:
            sent = _sock_send(sock, data)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            raise _ClientGone(error.errno, error.strerror) from error
        if sent == len(data):
            return
        with memoryview(data) as view:
            self._send_rest(view, sent, timeout)

    def _send_rest(self, view: memoryview, sent: int, timeout: Optional[float]) -> None:
        sock = self.sock
        total = len(view)
        while sent < total:
            if not self.wait_fd(self.fd, True, timeout, None, True, True):
                raise _ClientTimeout("timed out")
            try:
                sent += _sock_send(sock, view[sent:])
            except BlockingIOError:
                pass
            except OSError as error:
                raise _ClientGone(error.errno, error.strerror) from error

    def sendfile(self, fd: int, offset: int, count: int, timeout: Optional[float]) -> int:
        """Sends ``count`` bytes of file ``fd`` from ``offset`` with os.sendfile; returns how many were sent."""
        done = 0
        while done < count:
            try:
                sent = os.sendfile(self.fd, fd, offset + done, count - done)
            except BlockingIOError:
                if not self.wait_fd(self.fd, True, timeout, None, True, True):
                    raise _ClientTimeout("timed out") from None
                continue
            except OSError as error:
                raise _ClientGone(error.errno, error.strerror) from error
            if sent == 0:  # the file is shorter than announced
                break
            done += sent
        return done


class _SocketIO:
    """Any other socket (a TLS socket): its own methods, its timeout set per call."""

    __slots__ = ("sock",)

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def recv(self, size: int, timeout: Optional[float]) -> bytes:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(size)
        except TimeoutError as error:
            raise _ClientTimeout("timed out") from error
        except OSError as error:
            raise _ClientGone(error.errno, str(error)) from error

    def sendall(self, data: Any, timeout: Optional[float]) -> None:
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except TimeoutError as error:
            raise _ClientTimeout("timed out") from error
        except OSError as error:
            raise _ClientGone(error.errno, str(error)) from error

    sendfile = None  # TLS encrypts in user space: file bodies go through the iterator


# -- the request body ---------------------------------------------------------------------------------------


class Input:
    """``wsgi.input``: the request body, read from the connection only as far as the application asks.

    Framed by Content-Length or by the chunked coding; reads past the end return b"". A body that ends early or
    is badly framed raises an OSError (and the server answers 400); a client too slow to send raises
    ``socket.timeout``. With ``Expect: 100-continue`` the interim ``100 Continue`` is sent on the first read
    that needs bytes from the client.
    """

    __slots__ = ("_handler", "_left", "_decoder", "_pending", "_continue")

    def __init__(self, handler: Any, length: int, chunked: bool = False, expect_continue: bool = False) -> None:
        self._handler = handler
        self._left = length  # Content-Length bytes not yet handed out (unused when chunked)
        self._decoder = ChunkedDecoder() if chunked else None
        self._pending = b""  # decoded chunk data not yet handed out
        self._continue = expect_continue

    # -- primitives --

    def _receive(self, size: int) -> bytes:
        """Bytes from the socket for the body (at least one); sends the pending 100 Continue first."""
        handler = self._handler
        try:
            if self._continue:
                self._continue = False
                handler._send(_CONTINUE)
            data = handler._io.recv(size, handler.server.io_timeout)
        except _ClientError as error:
            raise handler._input_failed(error) from error
        if not data:
            error = _InvalidClientInput(errno.ECONNRESET, "the client closed the connection before the body's end")
            raise handler._input_failed(error)
        return data

    def _take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body (fewer if fewer are at hand); b"" once the body is over."""
        if self._decoder is not None:
            return self._take_chunked(limit)
        left = self._left
        if limit > left:
            limit = left
        if limit <= 0:
            return b""
        handler = self._handler
        data = handler._rbuf or self._receive(min(left, _BODY_READ))
        if len(data) > limit:
            handler._rbuf = data[limit:]
            data = data[:limit]
        else:
            handler._rbuf = b""
        self._left = left - len(data)
        return data

    def _take_chunked(self, limit: int) -> bytes:
        pending = self._pending
        decoder = self._decoder
        handler = self._handler
        while not pending:
            if decoder.done or limit <= 0:
                return b""
            raw = handler._rbuf or self._receive(_BODY_READ)
            try:
                pending, used = decoder.decode(raw)
            except HttpParseError as error:
                failure = _InvalidClientInput(errno.EPROTO, f"invalid chunked body: {error.reason}")
                raise handler._input_failed(failure) from None
            handler._rbuf = raw[used:] if used < len(raw) else b""
        if len(pending) > limit:
            self._pending = pending[limit:]
            return pending[:limit]
        self._pending = b""
        return pending

    def _unread(self, data: bytes) -> None:
        """Puts back the bytes just taken, in front of the rest."""
        if self._decoder is not None:
            self._pending = data + self._pending
        else:
            self._handler._rbuf = data + self._handler._rbuf
            self._left += len(data)

    def _exhausted(self) -> bool:
        """True when the whole body has been handed out."""
        if self._decoder is not None:
            return not self._pending and self._decoder.done
        return self._left <= 0

    # -- the file-like API --

    def read(self, size: Optional[int] = -1) -> bytes:
        """Up to ``size`` bytes (all the rest if ``size`` is None or negative); less only at the body's end."""
        if size is None or size < 0:
            size = sys.maxsize
        data = self._take(size)
        if len(data) == size or not data:
            return data
        pieces = [data]
        have = len(data)
        while have < size:
            data = self._take(size - have)
            if not data:
                break
            pieces.append(data)
            have += len(data)
        return b"".join(pieces)

    def readline(self, size: Optional[int] = -1) -> bytes:
        """One line, its b"\\n" included (at most ``size`` bytes); b"" at the body's end."""
        limit = sys.maxsize if size is None or size < 0 else size
        pieces = []
        have = 0
        while have < limit:
            data = self._take(limit - have)
            if not data:
                break
            end = data.find(b"\n") + 1
            if 0 < end < len(data):
                self._unread(data[end:])
                data = data[:end]
            pieces.append(data)
            have += len(data)
            if end:
                break
        return b"".join(pieces)

    def readlines(self, hint: Optional[int] = None) -> list[bytes]:
        """The remaining lines (all of them; ``hint`` is accepted and, as PEP 3333 allows, ignored)."""
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _discard(self, budget: int) -> bool:
        """Reads and drops what is left of the body, if at most ``budget`` bytes; True if the body is over."""
        if self._continue:
            return self._exhausted()  # the client waits for our 100 Continue: it will not send the body
        while budget > 0:
            data = self._take(min(budget, _BODY_READ))
            if not data:
                return True
            budget -= len(data)
        return self._exhausted()


#: ``wsgi.input`` of every request without a body: always at its end, so one object serves them all.
_EMPTY_INPUT = Input(None, 0)


class _RawInput:
    """``wsgi.input`` of an ``Upgrade`` request: the connection's bytes as they come, unframed.

    ``read(n)`` returns what is available, at most ``n`` bytes, waiting only when nothing is; b"" at the end of
    the stream.
    """

    __slots__ = ("_handler",)

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def read(self, size: Optional[int] = -1) -> bytes:
        handler = self._handler
        data = handler._rbuf
        if not data:
            try:
                data = handler._io.recv(_BODY_READ, None)
            except _ClientGone:
                return b""
        if size is not None and 0 <= size < len(data):
            handler._rbuf = data[size:]
            return data[:size]
        handler._rbuf = b""
        return data


# -- wsgi.file_wrapper --------------------------------------------------------------------------------------


class FileWrapper:
    """``wsgi.file_wrapper``: iterates a file in ``blksize`` blocks.

    When the application returns one for a plain (non-TLS) connection and the file is a regular file with a
    ``fileno()``, the server sends it with ``os.sendfile`` instead, from the file's current position.
    """

    __slots__ = ("filelike", "blksize")

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def _file_span(self) -> Optional[tuple[int, int, int]]:
        """``(fd, offset, size)`` of the rest of a regular file, or None if it cannot be sent with sendfile."""
        try:
            fd = self.filelike.fileno()
            info = os.fstat(fd)
            offset = self.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return fd, offset, max(0, info.st_size - offset)


# -- the handler --------------------------------------------------------------------------------------------


class _DateCache:
    """The ``Date`` header line, formatted at most once per second."""

    __slots__ = ("second", "line")

    def __init__(self) -> None:
        self.second = -1
        self.line = ""

    def get(self) -> str:
        now = _now()
        second = int(now)
        if second != self.second:
            self.second = second
            self.line = f"Date: {formatdate(now, usegmt=True)}\r\n"
        return self.line


_date = _DateCache()


class WSGIHandler:
    """Serves the HTTP requests of one connection, one after the other, with the server's application.

    Made by the server for each connection as ``handler_class(socket, address, server)``; ``handle()`` runs the
    connection to its end. Subclasses may override ``get_environ`` (add keys), ``log_request``,
    ``format_request``, ``handle_error`` and ``log_error``.
    """

    protocol_version = "HTTP/1.1"
    #: The most bytes of an unread request body drained after the response to keep the connection; more: close.
    max_discard = 1 << 20
    #: How long, and how many bytes, a refused client's remaining input is drained before the close.
    linger_seconds = 1.0
    linger_bytes = 1 << 20
    ApplicationError = AssertionError
    ignored_socket_errors = (errno.EPIPE, errno.ECONNRESET)

    # Per-request state (class-level defaults, set on the instance as the request goes).
    status: Optional[str] = None  # the status line as the application gave it: '200 OK'
    code: Optional[int] = None
    response_headers: Optional[list] = None
    headers_sent = False
    response_length = 0  # body bytes sent
    close_connection = False
    time_start = 0.0
    time_finish = 0.0
    environ: Optional[dict] = None
    result: Any = None

    def __init__(self, sock: Any, address: Any, server: WSGIServer) -> None:
        self.socket = sock
        self.client_address = address
        self.server = server
        self.application = server.application
        self._io: Any = _PlainIO(sock) if type(sock) is _Socket else _SocketIO(sock)
        self._rbuf = b""  # bytes received and not yet used: the start of the next head, or body bytes
        self._broken = False  # the connection's byte stream can no longer be trusted: close after this response
        self._linger = False  # input may be left unread when closing: drain it so the client sees our answer
        self._first = True  # no request head read yet: the wait for it is bounded by header_timeout
        self._log_requests = server._access_log
        self._base_environ = self._connection_environ()

    def _connection_environ(self) -> dict:
        """The environ keys shared by every request of this connection; each request's environ starts as a copy."""
        env = self.server.get_environ()
        address = self.client_address
        if isinstance(address, tuple):
            env["REMOTE_ADDR"] = str(address[0])
            env["REMOTE_PORT"] = str(address[1])
        env["ferrovent.socket"] = self.socket
        return env

    # -- gevent's request attributes, derived from the environ --

    @property
    def command(self) -> Optional[str]:
        return self.environ.get("REQUEST_METHOD") if self.environ else None

    @property
    def path(self) -> Optional[str]:
        return self.environ.get("REQUEST_URI") if self.environ else None

    @property
    def request_version(self) -> Optional[str]:
        return self.environ.get("SERVER_PROTOCOL") if self.environ else None

    @property
    def requestline(self) -> Optional[str]:
        env = self.environ
        if not env:
            return None
        return f"{env['REQUEST_METHOD']} {env['REQUEST_URI']} {env['SERVER_PROTOCOL']}"

    # -- the connection loop --

    def handle(self) -> None:
        """Serves requests until the client or a response ends the connection."""
        try:
            while self.handle_one_request():
                pass
        finally:
            if self._linger:
                self._drain_before_close()
            self._io = None
            self._rbuf = b""

    def handle_one_request(self) -> bool:
        """Reads one request head, runs the application, sends the response; True if the connection goes on."""
        parsed = self._read_head()
        if parsed is None:
            return False
        environ, consumed, keep_alive, body = parsed
        self.environ = environ
        self.close_connection = not keep_alive
        if body or "HTTP_UPGRADE" in environ:
            environ["wsgi.input"] = self._make_input(environ, body)
        else:
            environ["wsgi.input"] = _EMPTY_INPUT
        self.environ = environ = self.get_environ()
        self.handle_one_response()
        return not (self.close_connection or self._broken)

    def get_environ(self) -> dict:
        """The environ of the request being served (override to add keys; call the parent's first)."""
        return self.environ

    def _make_input(self, environ: dict, body: int) -> Any:
        if "HTTP_UPGRADE" in environ:
            environ["wsgi.input_terminated"] = False
            return _RawInput(self)
        expect = environ.get("HTTP_EXPECT", "").lower() == "100-continue" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"
        if body < 0:  # CHUNKED
            return Input(self, 0, True, expect)
        return Input(self, body, False, expect)

    def _read_head(self) -> Optional[tuple]:
        """The next request head as ``parse_request`` returns it, or None when the connection should end.

        Refused heads are answered here (their 4xx sent), so None covers them too.
        """
        server = self.server
        base = self._base_environ
        buf = self._rbuf
        first = self._first
        try:
            if buf:
                parsed = parse_request(buf, base)
                started = _monotonic()
            else:
                started = _monotonic() if first else 0.0
                buf = self._io.recv(_HEAD_READ, server.header_timeout if first else server.keepalive_timeout)
                if not buf:
                    return None
                parsed = parse_request(buf, base)
            if parsed is None:
                parsed = self._read_rest_of_head(buf, started or _monotonic())
            else:
                self._rbuf = buf[parsed[1] :] if parsed[1] < len(buf) else b""
            self._first = False
            return parsed
        except HttpParseError as error:
            self._refuse(error.status, error.reason)
        except _ClientTimeout:
            if buf:  # a request had begun: say why it is dropped
                self._refuse(408, "the request head did not arrive in time")
        except _ClientGone:
            pass
        return None

    def _read_rest_of_head(self, start: bytes, started: float) -> Optional[tuple]:
        """Accumulates a head that did not come in one piece, until it parses, within ``header_timeout``.

        The parser runs again only when a blank line may have arrived or a size limit was crossed, so a client
        trickling bytes costs linear, not quadratic, work.
        """
        deadline = started + self.server.header_timeout
        buf = bytearray(start)
        recv = self._io.recv
        while True:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise _ClientTimeout("timed out")
            data = recv(_HEAD_READ, remaining)
            if not data:
                raise _ClientGone(errno.ECONNRESET, "closed in the middle of a request head")
            before = len(buf)
            buf += data
            tail = buf[max(0, before - 2) :]
            crossed = any(before <= limit < len(buf) for limit in _LIMITS)
            if crossed or b"\n\n" in tail or b"\n\r\n" in tail:
                parsed = parse_request(buf, self._base_environ)
                if parsed is not None:
                    self._rbuf = bytes(buf[parsed[1] :])
                    return parsed

    def _refuse(self, code: int, reason: str) -> None:
        """Answers a request that cannot be served with ``code`` and closes the connection (gracefully)."""
        self.environ = None  # no request to speak of (for the log)
        self.log_error("Invalid request from %s: %s %s", self.client_address, code, reason)
        body = reason.encode("latin-1", "replace")
        head = (
            f"HTTP/1.1 {code} {_phrase(code)}\r\nConnection: close\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self._broken = self._linger = True
        self.status = f"{code} {_phrase(code)}"
        self.code = code
        self.response_length = len(body)
        try:
            self._send(head.encode("latin-1") + body)
        except _ClientError:
            self._linger = False
        if self._log_requests:
            self.time_finish = _now()
            self.log_request()

    def _drain_before_close(self) -> None:
        """Shuts our side, then reads and drops what the client still sends, briefly, so it gets our last answer."""
        sock = self.socket
        try:
            sock.shutdown(_socket.SHUT_WR)
        except OSError:
            return
        deadline = _monotonic() + self.linger_seconds
        budget = self.linger_bytes
        io = _PlainIO(sock) if type(sock) is _Socket else _SocketIO(sock)
        try:
            while budget > 0:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return
                data = io.recv(65536, remaining)
                if not data:
                    return
                budget -= len(data)
        except _ClientError:
            return

    def _send(self, data: Any) -> None:
        self._io.sendall(data, self.server.io_timeout)

    def _input_failed(self, error: _ClientError) -> _ClientError:
        """Records that reading the request body failed: whatever the application then answers, the server
        answers for the request (400 or 408) and closes the connection, whose framing is lost."""
        self._input_error = error
        self._broken = True
        return error

    # -- the response --

    def handle_one_response(self) -> None:
        """Runs the application for the current request and sends its response, handling every error."""
        log = self._log_requests
        if log:
            self.time_start = _now()
        self.status = None
        self.code = None
        self.headers_sent = False
        self.response_length = 0
        self.result = None
        try:
            self.run_application()
            self._finish_body()
        except _InvalidClientInput as error:
            self.log_error("Invalid request body from %s: %s", self.client_address, error.strerror or error)
            self._send_error_response(400)
        except _ClientTimeout:
            self._send_error_response(408)
        except _ClientGone:
            self._broken = True
        except Exception:
            self.handle_error(*sys.exc_info())
        finally:
            if log:
                self.time_finish = _now()
                self.log_request()

    def _finish_body(self) -> None:
        """After the response: drops the body the application left unread, or marks the connection to close."""
        stream = self.environ.get("wsgi.input")
        if stream is _EMPTY_INPUT or self._broken:
            return
        if type(stream) is _RawInput or not stream._discard(self.max_discard):
            self._broken = self._linger = True

    def run_application(self) -> None:
        """Calls the application and sends what it returns; closes the result (``close()``) in all cases."""
        result = self.result = self.application(self.environ, self.start_response)
        try:
            self.process_result(result)
        finally:
            close = getattr(result, "close", None)
            self.result = None
            if close is not None:
                close()

    def process_result(self, result: Iterable[bytes]) -> None:
        """Sends the response body the application returned."""
        if type(result) is list and len(result) == 1 and not self.headers_sent:
            self._write_first(result[0], len(result[0]))  # the common case: one bytes object, one send
        elif type(result) is FileWrapper and self._send_file(result):
            pass
        else:
            length = None
            if not self.headers_sent and self._provided_length is None and hasattr(result, "__len__"):
                length = sum(len(data) for data in result)
            for data in result:
                if data:
                    if self.headers_sent:
                        self._write_more(data)
                    else:
                        self._write_first(data, length)
                elif self.code == 101 and not self.headers_sent:
                    self._write_first(data, None)  # switching protocols: the head goes at the first yield
            if not self.headers_sent:
                if self.status is None:
                    raise self.ApplicationError("The application did not call start_response()")
                self._write_first(b"", length if length is not None else 0)
        if self._chunked:
            self._send(_CHUNKED_END)
        self._check_length()

    def _check_length(self) -> None:
        """Closes the connection after a body whose size does not match the Content-Length the app announced."""
        provided = self._provided_length
        if provided is not None and not self._no_body:
            try:
                if int(provided) != self.response_length:
                    self.close_connection = True
            except ValueError:
                self.close_connection = True

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        """PEP 3333's start_response: validates the status and headers and prepares the response head, which is
        sent with the first body bytes. With ``exc_info`` after the head went out, re-raises that exception."""
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        if type(status) is not str:
            raise UnicodeError("The status string must be a native string")
        try:
            code = int(status[:3])
        except ValueError:
            raise ValueError(f"Invalid status {status!r}") from None
        lines = [f"HTTP/1.1 {status}\r\n"]
        length = connection = None
        has_date = framed = False
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise UnicodeError("The header name and value must be native strings", name, value)
            if len(name) in _SPECIAL_LENGTHS:
                lname = name.lower()
                if lname == "content-length":
                    length = value
                    framed = True
                elif lname == "connection":
                    connection = value.lower()
                elif lname == "date":
                    has_date = True
                elif lname == "transfer-encoding":
                    framed = True
            lines.append(f"{name}: {value}\r\n")
        if code in _NO_BODY_CODES and length not in (None, "0"):
            raise self.ApplicationError(f"Invalid Content-Length for {code} response: {length!r} (must be absent or 0)")
        if not has_date:
            lines.append(_date.get())
        http11 = self.environ["SERVER_PROTOCOL"] == "HTTP/1.1"
        if connection == "close":
            self.close_connection = True
        elif connection is None:
            if not http11:
                lines.append("Connection: close\r\n" if self.close_connection else "Connection: keep-alive\r\n")
            elif self.close_connection:
                lines.append("Connection: close\r\n")
        text = "".join(lines)
        if text.count("\n") != len(lines) or text.count("\r") != len(lines):
            raise ValueError("carriage return or newline in the status or a header", status, headers)
        try:
            self._head = text.encode("latin-1")
        except UnicodeEncodeError:
            raise UnicodeError("Non-latin1 header", headers) from None
        self.status = status
        self.code = code
        self.response_headers = headers
        self._provided_length = length
        self._framed = framed or code < 200 or code in _NO_BODY_CODES
        self._no_body = code < 200 or code in _NO_BODY_CODES or self.environ["REQUEST_METHOD"] == "HEAD"
        self._http11 = http11
        self._chunked = False
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write`` callable start_response returns: sends ``data`` now (the headers first, if not yet)."""
        if self.headers_sent:
            if data:
                self._write_more(data)
            return
        if self.code in _NO_BODY_CODES and data:
            raise self.ApplicationError(f"The {self.code} response must have no body")
        self._write_first(data, None)

    def _write_first(self, data: bytes, length: Optional[int]) -> None:
        """Sends the status line, the headers and ``data`` (the first body bytes) together.

        ``length`` is the whole body's size if known (the result had a ``len``), for the Content-Length.
        """
        if self._input_error is not None:
            raise self._input_error  # the application answered a request whose body could not be read
        if self.status is None:
            raise self.ApplicationError("The application did not call start_response()")
        if self._framed:
            head = self._head + b"\r\n"
        elif length is not None:
            head = self._head + b"Content-Length: %d\r\n\r\n" % length
        elif self._http11 and self.code != 101:
            self._chunked = not self._no_body
            head = self._head + b"Transfer-Encoding: chunked\r\n\r\n"
        else:  # the body ends when the connection does
            self.close_connection = True
            head = self._head.replace(b"Connection: keep-alive\r\n", b"Connection: close\r\n") + b"\r\n"
        if self.code == 101:
            self._broken = True  # the application owns the connection from here on
        self.headers_sent = True
        if self._no_body or not data:
            self._send(head)
            return
        self.response_length += len(data)
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if len(data) >= _SEPARATE_SEND:
            self._send(head)
            self._send(data)
        else:
            self._send(head + data)

    def _write_more(self, data: bytes) -> None:
        """Sends body bytes after the head (a chunk of its own if the body is chunked)."""
        if self._no_body:
            return
        self.response_length += len(data)
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self._send(data)

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """Sends a FileWrapper's file with os.sendfile if it can (plain socket, regular file); False otherwise."""
        if self._io.sendfile is None or self.headers_sent:
            return False
        span = wrapper._file_span()
        if span is None:
            return False
        fd, offset, size = span
        if self._provided_length is not None:
            try:
                size = min(size, int(self._provided_length))
            except ValueError:
                return False
        self._write_first(b"", size)
        if self._no_body or not size:
            return True
        sent = self._io.sendfile(fd, offset, size, self.server.io_timeout)
        self.response_length += sent
        if sent < size:
            self.close_connection = True
        return True

    # -- errors --

    def _send_error_response(self, code: int) -> None:
        """Answers ``code`` if nothing was sent yet; in every case the connection is closed afterwards (gracefully:
        part of the request may be unread)."""
        self.close_connection = self._broken = self._linger = True
        self._input_error = None  # answered now, by this very response
        if self.headers_sent:
            return
        body = _phrase(code).encode("latin-1")
        headers = [("Content-Type", "text/plain"), ("Connection", "close"), ("Content-Length", str(len(body)))]
        try:
            self.start_response(f"{code} {_phrase(code)}", headers)
            self._write_first(body, len(body))
        except _ClientError:
            pass

    def handle_error(self, exc_type: type, value: BaseException, tb: Any) -> None:
        """An application error: reported by the hub (environ masked), answered 500 if nothing was sent yet."""
        context = self.environ
        if context is not None and not isinstance(context, self.server.secure_environ_class):
            context = self.server.secure_environ_class(context)
        get_hub().handle_error(context, exc_type, value, tb)
        self._send_error_response(500)

    def log_error(self, msg: str, *args: Any) -> None:
        """Writes a line to the server's error log."""
        try:
            message = msg % args if args else msg
        except Exception:
            message = f"{msg!r} {args!r}"
        try:
            self.server.error_log.write(message + "\n")
        except Exception:
            pass

    # -- the access log --

    def log_request(self) -> None:
        """Writes the access-log line of the request just served."""
        self.server.log.write(self.format_request() + "\n")

    def format_request(self) -> str:
        """``client - - [time] "request line" status length seconds``, as gevent's pywsgi logs."""
        now = datetime.now().replace(microsecond=0)
        length = self.response_length or "-"
        delta = f"{self.time_finish - self.time_start:.6f}" if self.time_finish and self.time_start else "-"
        address = self.client_address
        client = address[0] if isinstance(address, tuple) else address
        status = (self.status or "000").split()[0]
        return f'{client or "-"} - - [{now}] "{self.requestline or ""}" {status} {length} {delta}'

    # Defaults for the per-response state, before start_response sets it.
    _provided_length: Optional[str] = None
    _framed = False  # the application framed the body itself (Content-Length or Transfer-Encoding), or no body
    _no_body = False  # nothing may follow the head (HEAD, 1xx, 204, 304)
    _http11 = True
    _chunked = False  # the server frames the body in chunks
    _head = b""  # the head so far: status line and headers, without the framing header and the final CR LF
    _input_error: Optional[_ClientError] = None


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


# -- logs and environ classes -------------------------------------------------------------------------------


class _NoopLog:
    """The log when logging is turned off (``log=None``)."""

    def write(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def writelines(self, *args: Any, **kwargs: Any) -> None:
        pass


class LoggingLogAdapter:
    """Makes a ``logging.Logger`` usable as the server's ``log`` or ``error_log`` (writes at ``level``)."""

    __slots__ = ("_logger", "_level")

    def __init__(self, logger: Any, level: int = 20) -> None:
        self._logger = logger
        self._level = level

    def write(self, msg: str) -> None:
        if msg and msg.endswith("\n"):
            msg = msg[:-1]
        self._logger.log(self._level, msg)

    def flush(self) -> None:
        """Nothing to flush: the logger's handlers do their own."""

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class Environ(dict):
    """A dict for WSGI environs (``copy()`` keeps the class)."""

    __slots__ = ()

    def copy(self) -> Environ:
        return self.__class__(self)


class SecureEnviron(Environ):
    """An environ whose repr masks the values (for error reports): only ``whitelist_keys`` show."""

    default_secure_repr = True
    default_whitelist_keys: tuple = ()
    default_print_masked_keys = True

    __slots__ = ("secure_repr", "whitelist_keys", "print_masked_keys")

    def __getattr__(self, name: str) -> Any:
        if name in SecureEnviron.__slots__:
            return getattr(type(self), "default_" + name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        if not self.secure_repr:
            return dict.__repr__(self)
        whitelist = self.whitelist_keys
        if not whitelist:
            return f"<pywsgi.SecureEnviron dict (keys: {len(self)}) at {id(self)}>"
        shown = {k: self[k] if k in whitelist else "<MASKED>" for k in self if k in whitelist or self.print_masked_keys}
        text = repr(shown)
        if len(shown) != len(self):
            text = f"{text[:-1]}, (hidden keys: {len(self) - len(shown)})}}"
        return text

    __str__ = __repr__


class WSGISecureEnviron(SecureEnviron):
    """A SecureEnviron showing only the client's address and the Host header."""

    default_whitelist_keys = ("REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST")
    default_print_masked_keys = False


def _make_log(target: Any, level: int) -> Any:
    if target == "default":
        return sys.stderr
    if target is None:
        return _NoopLog()
    if not hasattr(target, "write") and hasattr(target, "log"):
        return LoggingLogAdapter(target, level)
    return target


# -- the server ---------------------------------------------------------------------------------------------


class WSGIServer(StreamServer):
    """Serves a WSGI application over HTTP/1.x (HTTPS with TLS arguments, as `StreamServer` takes them).

    ``log`` gets the access log (default ``sys.stderr``; None turns it off; a ``logging.Logger`` is adapted),
    ``error_log`` the error log and ``wsgi.errors`` (same rules). ``environ`` adds keys to every request's
    environ. ``handler_class`` replaces `WSGIHandler`. The keyword-only timeouts, in seconds: ``header_timeout``
    (a request head must arrive within it, counted from its first byte; on a new connection from the connect),
    ``keepalive_timeout`` (an idle connection waiting for its next request is closed), ``io_timeout`` (every body
    read and every send must progress within it).
    """

    handler_class: type = WSGIHandler
    log: Any = None
    error_log: Any = None
    environ_class: type = dict
    secure_environ_class: type = WSGISecureEnviron
    header_timeout = 10.0
    keepalive_timeout = 60.0
    io_timeout = 60.0
    base_env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": f"ferrovent/{__version__} Python/{sys.version_info[0]}.{sys.version_info[1]}",
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }

    def __init__(
        self,
        listener: Any,
        application: Optional[Callable[..., Any]] = None,
        backlog: Optional[int] = None,
        spawn: Any = "default",
        log: Any = "default",
        error_log: Any = "default",
        handler_class: Optional[type] = None,
        environ: Optional[dict] = None,
        *,
        header_timeout: Optional[float] = None,
        keepalive_timeout: Optional[float] = None,
        io_timeout: Optional[float] = None,
        **ssl_args: Any,
    ) -> None:
        StreamServer.__init__(self, listener, backlog=backlog, spawn=spawn, **ssl_args)
        if application is not None:
            self.application = application
        if handler_class is not None:
            self.handler_class = handler_class
        for name, value in (
            ("header_timeout", header_timeout),
            ("keepalive_timeout", keepalive_timeout),
            ("io_timeout", io_timeout),
        ):
            if value is not None:
                setattr(self, name, value)
        if self.handshake_timeout is None:
            self.handshake_timeout = self.header_timeout
        self.log = _make_log(log, 20)
        self.error_log = _make_log(error_log, 40)
        self.set_environ(environ)
        self.set_max_accept()

    @property
    def _access_log(self) -> bool:
        """Whether requests are logged at all (False with ``log=None``): the handler skips the timing otherwise."""
        return type(self.log) is not _NoopLog

    def set_environ(self, environ: Optional[dict] = None) -> None:
        """Sets the keys every request's environ starts with: ``base_env``, the scheme, then ``environ``."""
        if environ is not None:
            self.environ = environ
        extra = getattr(self, "environ", None)
        self.environ = self.environ_class(self.base_env)
        self.environ["wsgi.url_scheme"] = "https" if self.ssl_enabled else "http"
        if extra is not None:
            self.environ.update(extra)
        if self.environ.get("wsgi.errors") is None:
            self.environ["wsgi.errors"] = self.error_log

    def set_max_accept(self) -> None:
        """A multi-process server takes one connection per wake-up, leaving the rest to its sibling processes."""
        if self.environ.get("wsgi.multiprocess"):
            self.max_accept = 1

    def get_environ(self) -> dict:
        """A copy of the server's environ keys."""
        return self.environ_class(self.environ)

    def init_socket(self) -> None:
        StreamServer.init_socket(self)
        if self.socket.family in (_socket.AF_INET, _socket.AF_INET6):
            # Inherited by every accepted socket: responses leave at once instead of waiting on Nagle.
            self.socket.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self.update_environ()

    def update_environ(self) -> None:
        """Fills SERVER_NAME and SERVER_PORT from the bound address (unless given)."""
        address = self.address
        if isinstance(address, tuple):
            if "SERVER_NAME" not in self.environ:
                try:
                    name = _cooperative.getfqdn(address[0])
                except OSError:
                    name = str(address[0])
                self.environ["SERVER_NAME"] = name
            self.environ.setdefault("SERVER_PORT", str(address[1]))
        else:
            self.environ.setdefault("SERVER_NAME", "")
            self.environ.setdefault("SERVER_PORT", "")

    def handle(self, sock: Any, address: Any) -> None:
        """Serves one connection with a new ``handler_class`` instance."""
        self.handler_class(sock, address, self).handle()
