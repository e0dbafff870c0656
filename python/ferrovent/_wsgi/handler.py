"""`WSGIHandler`: serves the HTTP requests of one connection, one after the other, with the server's application.

How a request goes through: the handler receives bytes into the connection's buffer and hands them to the Rust
parser (``ferrovent._core.parse_request``) in one call, which validates the head (limits, framing, smuggling
checks) and builds the whole environ dict from a per-connection base, or says "need more", or names the 4xx to
answer. The application runs in the connection's greenlet; ``wsgi.input`` reads the body from the `Connection`
only as far as the application asks. The status line, the headers and the first body chunk leave in one send.
Bytes after a request's body stay in the buffer as the start of the next request (pipelining).
"""

from __future__ import annotations

import errno
import sys
import time
import traceback
from datetime import datetime
from http import HTTPStatus
from http.client import HTTPMessage
from typing import TYPE_CHECKING, Any, Callable, Optional

from greenlet import GreenletExit

from ferrovent._core import HttpParseError, http_date_line, parse_request, response_head, serve_requests
from ferrovent._switches import switched_off
from ferrovent._wsgi.body import EMPTY_INPUT, FileWrapper, Input, UpgradeInput
from ferrovent._wsgi.conn import (
    ClientError,
    ClientGone,
    ClientTimeout,
    Connection,
    ConnectionReader,
    InvalidClientInput,
    PlainIO,
)
from ferrovent.hub import get_hub

if TYPE_CHECKING:
    from ferrovent.pywsgi import WSGIServer

__all__ = ["MAX_REQUEST_LINE", "WSGIHandler"]

_monotonic = time.monotonic
_now = time.time

#: The longest request line (its CRLF excluded): the parser's limit (longer: 414), and what `read_requestline` reads.
MAX_REQUEST_LINE = 8192
#: How much one receive asks for while reading a head.
_HEAD_READ = 16 * 1024
#: Head sizes where the parser's limits bite (request line, whole head): a pending head is re-parsed on crossing.
_LIMITS = (8 * 1024, 64 * 1024)
_NO_BODY_CODES = frozenset((204, 304))
# The lengths of the response header names the server looks at: Date, Connection, Content-Length, Transfer-Encoding.
_SPECIAL_LENGTHS = frozenset((4, 10, 14, 17))
_CHUNKED_END = b"0\r\n\r\n"
#: The environ keys ``parse_request`` sets on every request, in the order it sets them.
_REQUEST_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "REQUEST_URI",
    "RAW_URI",
)
#: What a body item may be (PEP 3333 says bytes; gevent also sends a bytearray).
_BYTES = (bytes, bytearray)
#: ``FERROVENT_WSGI_FAST=0`` (also ``false``, ``no``, ``off``): every connection runs the Python request loop.
_FAST_LOOP = not switched_off("FERROVENT_WSGI_FAST")


class WSGIHandler:
    """Serves the HTTP requests of one connection, one after the other, with the server's application.

    Made by the server for each connection as ``handler_class(socket, address, server)``; ``handle()`` runs the
    connection to its end. Subclasses may override, as with gevent, ``get_environ`` (add keys), ``log_request``,
    ``format_request``, ``handle_error``, ``log_error``, ``_print_unexpected_exc`` and ``read_requestline`` (read
    the request line from ``rfile`` yourself).
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
        self._conn = Connection(sock, server.io_timeout)
        self._linger = False  # input may be left unread when closing: drain it so the client sees our answer
        self._first = True  # no request head read yet: the wait for it is bounded by header_timeout
        self._log_requests = server._access_log
        self._environ_class = server.environ_class  # each request's environ is one (the parser makes a dict)
        self._base_environ = _with_request_keys(self._connection_environ())
        self._reader: Optional[ConnectionReader] = None
        # gevent's read_requestline hook: a subclass reading the request line itself
        self._reads_requestline = type(self).read_requestline is not WSGIHandler.read_requestline
        # the get_environ hook costs a Python frame per request: called only when a subclass overrides it
        self._adds_environ = type(self).get_environ is not WSGIHandler.get_environ
        # process_result's common case (one bytes item) is sent by run_application itself, unless a subclass has
        # its own process_result
        self._plain_results = type(self).process_result is WSGIHandler.process_result
        # The keep-alive loop in Rust (serve_requests) where nothing can tell it from this class's own: the class
        # itself (subclasses override its steps, `format_request` and `log_request` among them), a plain socket,
        # dict environs. It writes the access-log line of the requests it answers as `log_request` would.
        self._fast_loop = (
            _FAST_LOOP and type(self) is WSGIHandler and type(self._conn.io) is PlainIO and self._environ_class is dict
        )

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
        """The request's method (``GET``...), or None before a request was read."""
        return self.environ.get("REQUEST_METHOD") if self.environ else None

    @property
    def path(self) -> Optional[str]:
        """The request's target as sent (``REQUEST_URI``), or None before a request was read."""
        return self.environ.get("REQUEST_URI") if self.environ else None

    @property
    def request_version(self) -> Optional[str]:
        """The request's protocol (``HTTP/1.1``...), or None before a request was read."""
        return self.environ.get("SERVER_PROTOCOL") if self.environ else None

    @property
    def requestline(self) -> Optional[str]:
        """The request line as received (method, target, protocol), or None before a request was read."""
        env = self.environ
        if not env:
            return None
        return f"{env['REQUEST_METHOD']} {env['REQUEST_URI']} {env['SERVER_PROTOCOL']}"

    @property
    def content_length(self) -> int:
        """The request's Content-Length (0 if none)."""
        try:
            return int(self.environ.get("CONTENT_LENGTH") or 0) if self.environ else 0
        except ValueError:
            return 0

    @property
    def headers(self) -> HTTPMessage:
        """The request's headers as a message object (``get``, ``items``), as gevent's ``headers``; built from the
        environ, so names come back in their canonical capitalisation."""
        message = HTTPMessage()
        for key, value in (self.environ or {}).items():
            if key.startswith("HTTP_"):
                message[key[5:].replace("_", "-").title()] = value
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                message[key.replace("_", "-").title()] = value
        return message

    @property
    def wsgi_input(self) -> Input:
        """The request's ``wsgi.input`` as the server made it."""
        return self._input

    # -- gevent's response attributes, which handler subclasses read and set (gevent-websocket sets them all) --

    @property
    def provided_content_length(self) -> Any:
        """The Content-Length the application gave, None if it gave none (the server frames the body then). Set to
        False before the head leaves, the server adds no framing header of its own."""
        return False if self._unframed else self._provided_length

    @provided_content_length.setter
    def provided_content_length(self, value: Any) -> None:
        self._unframed = value is not None and not isinstance(value, str)
        if self._unframed:
            self._framed = True
            self._provided_length = None
        else:
            self._provided_length = value

    @property
    def provided_date(self) -> Optional[str]:
        """The Date the application gave, None if it gave none (the server adds one). Set to a true value before
        the head leaves, the head goes without the server's Date."""
        return self._provided_date

    @provided_date.setter
    def provided_date(self, value: Any) -> None:
        self._provided_date = value
        if value and self._date_line and not self.headers_sent:
            self._head = self._head.replace(self._date_line.encode("latin-1"), b"", 1)
            self._date_line = ""

    @property
    def response_use_chunked(self) -> bool:
        """Whether the body is sent in chunks; decided when the head leaves, as gevent's (setting it before only
        counts where the application or a subclass framed the body itself)."""
        return self._chunked

    @response_use_chunked.setter
    def response_use_chunked(self, value: bool) -> None:
        self._chunked = bool(value)

    @property
    def connection_upgraded(self) -> bool:
        """Whether a ``101 Switching Protocols`` left: the connection then belongs to the application."""
        return self.headers_sent and self.code == 101

    # -- the connection loop --

    def handle(self) -> None:
        """Serves requests until the client or a response ends the connection."""
        try:
            if self._fast_loop:
                serve_requests(self, self._conn, self.application, self._base_environ, EMPTY_INPUT)
            else:
                while self.handle_one_request():
                    pass
        finally:
            if self._linger:
                self._conn.linger(self.linger_seconds, self.linger_bytes)
            self._conn.release()

    def handle_one_request(self) -> bool:
        """Reads one request head, runs the application, sends the response; True if the connection goes on."""
        parsed = self._read_head()
        if parsed is None:
            return False
        environ, consumed, keep_alive, body = parsed
        if self._environ_class is not dict:
            environ = self._environ_class(environ)
        self.environ = environ
        self.close_connection = not keep_alive
        connection = environ.get("HTTP_CONNECTION")
        upgrade = "HTTP_UPGRADE" in environ or connection is not None and connection.lower() == "upgrade"
        if body or upgrade:
            self._input = environ["wsgi.input"] = self._make_input(environ, body, upgrade)
        else:
            self._input = environ["wsgi.input"] = EMPTY_INPUT
        if self._adds_environ:
            self.environ = self.get_environ()
        self.handle_one_response()
        return not (self.close_connection or self._conn.broken)

    def get_environ(self) -> dict:
        """The environ of the request being served (override to add keys; call the parent's first)."""
        return self.environ

    def _make_input(self, environ: dict, body: int, upgrade: bool) -> Input:
        expect = environ.get("HTTP_EXPECT", "").lower() == "100-continue" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"
        kind = Input
        if upgrade:  # an Upgrade header, or gevent's other sign of one: "Connection: upgrade"
            environ["wsgi.input_terminated"] = False  # after a 101, the stream goes on past the body
            kind = UpgradeInput
        # body < 0: chunked; the socket is given only to say that a 100 Continue is awaited (it goes through _conn)
        return kind(self._conn, max(body, 0), self.socket if expect else None, body < 0)

    def _read_head(self) -> Optional[tuple]:
        """The next request head as ``parse_request`` returns it, or None when the connection should end.

        Refused heads are answered here (their 4xx sent), so None covers them too.
        """
        server = self.server
        buf = self._conn.buffer
        first = self._first
        started = 0.0  # when the wait for this head began, if it is bounded by header_timeout (0: not yet)
        try:
            if self._reads_requestline:
                buf = self._hooked_requestline(server.header_timeout if first else server.keepalive_timeout)
                if buf is None:
                    return None
            if buf:  # pipelined: the next request is already there
                self._conn.take_turns()
            else:
                started = _monotonic() if first else 0.0
                buf = self._conn.io.recv(_HEAD_READ, server.header_timeout if first else server.keepalive_timeout)
                if not buf:
                    return None
        except ClientTimeout:
            if buf:  # a request had begun: say why it is dropped
                self._refuse(408, "the request head did not arrive in time")
            return None
        except ClientGone:
            return None
        try:
            parsed = parse_request(buf, self._base_environ)
        except HttpParseError:
            parsed = None  # refused: `_head_from` parses it again and answers
        if parsed is not None and parsed[1] == len(buf):  # the common case, without `_head_from`'s frame
            self._conn.buffer = b""
            self._first = False
            return parsed
        return self._head_from(buf, started)

    def _head_from(self, buf: bytes, started: float) -> Optional[tuple]:
        """The request head that begins ``buf`` (received, not yet in the connection's buffer), read to its end if
        it is not all there, as `_read_head` returns it. ``started``: when the wait for it began (0: now)."""
        try:
            parsed = parse_request(buf, self._base_environ)
            if parsed is None:
                parsed = self._read_rest_of_head(buf, started or _monotonic())
            else:
                self._conn.buffer = buf[parsed[1] :] if parsed[1] < len(buf) else b""
            self._first = False
            return parsed
        except HttpParseError as error:
            self._refuse(error.status, error.reason)
        except ClientTimeout:  # a request had begun: say why it is dropped
            self._refuse(408, "the request head did not arrive in time")
        except ClientGone:
            pass
        return None

    def read_requestline(self) -> str:
        """gevent's hook for handlers that read the request line themselves, from ``rfile``: returns the line (str
        or bytes, with its line end), or a false value to end the connection. Called only when a subclass
        overrides it; the server's own parser reads the whole head in one go otherwise."""
        return self.rfile.readline(MAX_REQUEST_LINE).decode("latin-1")

    def _hooked_requestline(self, timeout: float) -> Optional[bytes]:
        """Calls the subclass's `read_requestline`; the line goes back in front of the rest for the parser."""
        reader = self.rfile
        reader.timeout = timeout
        line = self.read_requestline()
        if not line:
            return None
        if isinstance(line, str):
            line = line.encode("latin-1")
        self._conn.buffer = buf = line + self._conn.buffer
        return buf

    @property
    def rfile(self) -> ConnectionReader:
        """The connection's incoming bytes as a binary file (``read``, ``readline``), as gevent's handlers have:
        what it does not consume stays for the request parser and ``wsgi.input``."""
        reader = self._reader
        if reader is None:
            reader = self._reader = ConnectionReader(self._conn, None)
        return reader

    def _read_rest_of_head(self, start: bytes, started: float) -> Optional[tuple]:
        """Accumulates a head that did not come in one piece, until it parses, within ``header_timeout``.

        The parser runs again only when a blank line may have arrived or a size limit was crossed, so a client
        trickling bytes costs linear, not quadratic, work.
        """
        deadline = started + self.server.header_timeout
        buf = bytearray(start)
        recv = self._conn.io.recv
        while True:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise ClientTimeout("timed out")
            data = recv(_HEAD_READ, remaining)
            if not data:
                raise ClientGone(errno.ECONNRESET, "closed in the middle of a request head")
            before = len(buf)
            buf += data
            tail = buf[max(0, before - 2) :]
            crossed = any(before <= limit < len(buf) for limit in _LIMITS)
            if crossed or b"\n\n" in tail or b"\n\r\n" in tail:
                parsed = parse_request(buf, self._base_environ)
                if parsed is not None:
                    self._conn.buffer = bytes(buf[parsed[1] :])
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
        self._conn.broken = self._linger = True
        self.status = f"{code} {_phrase(code)}"
        self.code = code
        self.response_length = len(body)
        try:
            self._conn.send(head.encode("latin-1") + body)
        except ClientError:
            self._linger = False
        if self._log_requests:
            self.time_finish = _now()
            self.log_request()

    # -- the response --

    def handle_one_response(self, outcome: Optional[tuple] = None) -> None:
        """Runs the application for the current request and sends its response, handling every error.

        ``outcome``: ``(result, error)`` of the application the Rust loop already called for this request (what it
        returned, or the exception it raised), the handler's state taken over with `_adopt`.
        """
        log = self._log_requests
        if outcome is None:
            if log:
                self.time_start = _now()
            self.status = None
            self.code = None
            self.headers_sent = False
            self.response_length = 0
            self.result = None
        try:
            if outcome is None:
                self.run_application()
            else:
                self._send_outcome(*outcome)
            if self._input is not EMPTY_INPUT:
                self._finish_body()
        except InvalidClientInput as error:
            self.log_error("Invalid request body from %s: %s", self.client_address, error.strerror or error)
            self._send_error_response(400)
        except ClientTimeout:
            self._send_error_response(408)
        except ClientGone:
            self._conn.broken = True
        except Exception:
            self.handle_error(*sys.exc_info())
        except GreenletExit:
            # Raised by the application, or the handler was killed (server.stop): answered, then let through.
            self._send_error_response(500)
            raise
        finally:
            if log:
                self.time_finish = _now()
                self.log_request()

    def _finish_body(self) -> None:
        """After the response: drops the body the application left unread, or marks the connection to close."""
        stream = self._input
        if stream is EMPTY_INPUT or self._conn.broken:
            return
        if self.close_connection:
            self._linger = not stream._exhausted()  # no drain: the head said close
            return
        if not stream._discard(self.max_discard):
            self._conn.broken = self._linger = True

    def run_application(self) -> None:
        """Calls the application and sends what it returns; closes the result (``close()``) in all cases."""
        result = self.result = self.application(self.environ, self.start_response)
        try:
            if self._plain_results and type(result) is list and len(result) == 1 and not self.headers_sent:
                self._write_first(result[0], len(result[0]))  # process_result's common case, without its frame
                if self._chunked or self._provided_length is not None:
                    self._end_body()
            else:
                self.process_result()
        finally:
            close = None if type(result) is list else getattr(result, "close", None)  # a list has no close()
            self.result = None
            if close is not None:
                close()

    def _send_outcome(self, result: Any, error: Optional[BaseException]) -> None:
        """`run_application` for an application the Rust loop called: raises its ``error``, or sends its
        ``result`` (this class's own `process_result`, since the loop serves no subclass) and closes it."""
        if error is not None:
            raise error
        self.result = result
        try:
            self.process_result()
        finally:
            close = None if type(result) is list else getattr(result, "close", None)
            self.result = None
            if close is not None:
                close()

    def process_result(self) -> None:
        """Sends the response body the application returned (``self.result``, as gevent's handlers have it)."""
        result = self.result
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
                    if self._cut:
                        break  # the rest would be cut too
                elif self.code == 101 and not self.headers_sent:
                    self._write_first(data, None)  # switching protocols: the head goes at the first yield
            if not self.headers_sent:
                if self.status is None:
                    # As gevent: no response at all, and the connection closes so that the client is not left
                    # waiting for one. (A body without start_response is an error: see _write_first.) An
                    # application that took the socket over has answered on it itself.
                    if not self._conn.taken_over:
                        self.log_error("The application returned without calling start_response(): connection closed")
                    self.close_connection = True
                    return
                self._write_first(b"", length)  # a generator that yielded nothing: chunked, as gevent
        self._end_body()

    def _end_body(self) -> None:
        """After the last body bytes: the last chunk of a chunked body; a body that missed its Content-Length
        closes the connection."""
        if self._chunked:
            self._conn.send(_CHUNKED_END)
        if self._provided_length is not None:
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
        http11 = self.environ["SERVER_PROTOCOL"] == "HTTP/1.1"
        # The common response in one Rust call; anything unusual (or wrong) takes the Python path, which raises.
        built = response_head(status, headers, http11, self.close_connection)
        if built is None:
            built = self._build_head(status, headers, http11)
        self._use_head(status, headers, built, http11)
        return self.write

    def _use_head(self, status: str, headers: list, built: tuple, http11: bool) -> None:
        """Takes the response head ``built`` for ``status`` and ``headers`` as the one to send (`start_response`'s
        last step)."""
        self._head, code, length, provided_date, framed, says_close, self._date_line = built
        if says_close:
            self.close_connection = True
        self.status = status
        self.code = code
        self.response_headers = headers
        self._provided_length = length
        self._provided_date = provided_date
        self._unframed = False
        self._framed = framed or code < 200 or code in _NO_BODY_CODES
        self._no_body = code < 200 or code in _NO_BODY_CODES or self.environ["REQUEST_METHOD"] == "HEAD"
        self._http11 = http11
        self._chunked = False
        self._cut = False
        self._says_close = self.close_connection  # the head already says Connection: close (the app's or ours)

    def _adopt(
        self, environ: dict, close: bool, head: Optional[tuple], sent: Optional[int], start: Optional[float]
    ) -> None:
        """Takes over a request the Rust loop (``serve_requests``) started, with the state this class's own steps
        would have set by now: the request's (``close``: the connection closes after it; ``start``: its
        ``time_start`` with an access log, else None), the last `start_response` call's (``head``: ``(status,
        headers, built, http11)`` as `_use_head` takes them, None if none was made), and the response's first send
        (``sent``: the body bytes in it, None if none was made)."""
        if start is not None:
            self.time_start = start
        self.environ = environ
        self.close_connection = close
        self._input = EMPTY_INPUT
        self.status = self.code = self.result = None
        self.headers_sent = False
        self.response_length = 0
        if head is not None:
            self._use_head(*head)
        if sent is not None:
            self.headers_sent = True
            self.response_length = sent

    def _build_head(self, status: Any, headers: Any, http11: bool) -> tuple:
        """`start_response`'s checks and head in Python, for what ``response_head`` leaves to it: the same tuple,
        or gevent's error for a bad status or header."""
        if type(status) is not str:
            raise UnicodeError("The status string must be a native string")
        try:
            code = int(status[:3])
        except ValueError:
            raise ValueError(f"Invalid status {status!r}") from None
        lines = [f"HTTP/1.1 {status}\r\n"]
        length = connection = provided_date = None
        framed = False
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
                    provided_date = value
                elif lname == "transfer-encoding":
                    framed = True
            lines.append(f"{name}: {value}\r\n")
        if code in _NO_BODY_CODES and length not in (None, "0"):
            message = f"Invalid Content-Length for {code} response: {length!r} (must be absent or zero)"
            raise self.ApplicationError(message.encode("latin-1"))  # bytes, as gevent's: an app may send its args
        date_line = ""
        if provided_date is None:
            date_line = http_date_line()
            lines.append(date_line)
        if connection is None:
            if not http11:
                lines.append("Connection: close\r\n" if self.close_connection else "Connection: keep-alive\r\n")
            elif self.close_connection:
                lines.append("Connection: close\r\n")
        text = "".join(lines)
        if text.count("\n") != len(lines) or text.count("\r") != len(lines):
            _refuse_line_breaks(status, headers)
        try:
            head = text.encode("latin-1")
        except UnicodeEncodeError:
            raise UnicodeError("Non-latin1 header", headers) from None
        return head, code, length, provided_date, framed, connection == "close", date_line

    def write(self, data: bytes) -> None:
        """The ``write`` callable start_response returns: sends ``data`` now (the headers first, if not yet)."""
        if not data:
            data = b""  # an empty str too: gevent's write lets it pass (handlers send a bare head with write(""))
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
        if self._conn.input_error is not None:
            raise self._conn.input_error  # the application answered a request whose body could not be read
        if self.status is None:
            raise self.ApplicationError("The application did not call start_response()")
        if type(data) is not bytes and not isinstance(data, _BYTES):
            raise TypeError(f"The response body must be bytes, not {type(data).__name__}")
        if self._framed:
            head = self._head + b"\r\n"
        elif length is not None:
            head = self._head + b"Content-Length: %d\r\n\r\n" % length
        elif self._http11 and self.code != 101:
            self._chunked = not self._no_body
            head = self._head + b"Transfer-Encoding: chunked\r\n\r\n"
        else:  # the body ends when the connection does
            self.close_connection = True
            head = self._head + b"\r\n"
            if self.code != 101 and not self._says_close:
                head = _announce_close(head)
        if self.code == 101:
            self._conn.broken = True  # the application owns the connection from here on
            if type(self._input) is UpgradeInput:
                self._input.switch_protocols()
        elif self._input is not EMPTY_INPUT and not self.close_connection and not self._body_can_finish():
            self.close_connection = True
            if not self._says_close:
                head = _announce_close(head)
        if self._no_body or not data:
            if data and self.code in _NO_BODY_CODES:
                raise self.ApplicationError(f"The {self.code} response must have no body")
            self.headers_sent = True
            self._conn.send(head)
            return
        self.headers_sent = True
        if self._provided_length is not None and len(data) > self._limit():
            data = self._cut_at_length(data)
        self.response_length += len(data)
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        conn = self._conn
        conn.io.send_pair(head, data, conn.io_timeout)  # the driver's own call: one Python frame less

    def _write_more(self, data: bytes) -> None:
        """Sends body bytes after the head (a chunk of its own if the body is chunked)."""
        if self._no_body:
            return
        if type(data) is not bytes and not isinstance(data, _BYTES):
            raise TypeError(f"The response body must be bytes, not {type(data).__name__}")
        if self._provided_length is not None and self.response_length + len(data) > self._limit():
            data = self._cut_at_length(data)
            if not data:
                return
        self.response_length += len(data)
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self._conn.send(data)

    def _limit(self) -> int:
        """The body size the application announced in its Content-Length (no limit if that is not a number)."""
        try:
            return int(self._provided_length)
        except ValueError:
            return sys.maxsize

    def _cut_at_length(self, data: bytes) -> bytes:
        """The part of ``data`` within the announced Content-Length: what goes beyond would be read by the client
        as the start of another response. The error is logged once and the connection closes after this response.
        """
        if not self._cut:
            self._cut = True
            self.close_connection = True
            self.log_error(
                "The application sent more than its Content-Length (%s) for %s: body cut",
                self._provided_length,
                self.requestline,
            )
        return data[: max(0, self._limit() - self.response_length)]

    def _body_can_finish(self) -> bool:
        """Whether the request body the application left unread can be drained after the response, so that the
        connection can go on (else the head about to leave must say ``Connection: close``)."""
        stream = self._input
        return stream._can_finish(self.max_discard)

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """Sends a FileWrapper's file with os.sendfile if it can (plain socket, regular file); False otherwise."""
        if self._conn.io.sendfile is None or self.headers_sent:
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
        sent = self._conn.io.sendfile(fd, offset, size, self.server.io_timeout)
        self.response_length += sent
        if sent < size:
            self.close_connection = True
        return True

    # -- errors --

    def _send_error_response(self, code: int) -> None:
        """Answers ``code`` if nothing was sent yet; in every case the connection is closed afterwards (gracefully:
        part of the request may be unread)."""
        self.close_connection = self._conn.broken = self._linger = True
        self._conn.input_error = None  # answered now, by this very response
        if self.headers_sent:
            return
        body = _phrase(code).encode("latin-1")
        headers = [("Content-Type", "text/plain"), ("Connection", "close"), ("Content-Length", str(len(body)))]
        try:
            self.start_response(f"{code} {_phrase(code)}", headers)
            self._write_first(body, len(body))
        except ClientError:
            pass

    def handle_error(self, exc_type: type, value: BaseException, tb: Any) -> None:
        """An application error: reported by the hub (environ masked), answered 500 if nothing was sent yet."""
        context = self.environ
        if context is not None and not isinstance(context, self.server.secure_environ_class):
            context = self.server.secure_environ_class(context)
        get_hub().handle_error(context, exc_type, value, tb)
        self._send_error_response(500)

    #: Called, inside an ``except`` block, when the server's own error reporting fails (a log message that does
    #: not format, an error log that raises): prints the traceback. Subclasses may override it.
    _print_unexpected_exc = staticmethod(traceback.print_exc)

    def log_error(self, msg: str, *args: Any) -> None:
        """Writes a line to the server's error log."""
        try:
            message = msg % args if args else msg
        except Exception:
            self._print_unexpected_exc()
            message = f"{msg!r} {args!r}"
        try:
            self.server.error_log.write(message + "\n")
        except Exception:
            self._print_unexpected_exc()

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
    _provided_date: Optional[str] = None
    _date_line = ""  # the Date line the server put in the head ("": none)
    _unframed = False  # a subclass set provided_content_length = False: no framing header from the server
    _framed = False  # the application framed the body itself (Content-Length or Transfer-Encoding), or no body
    _no_body = False  # nothing may follow the head (HEAD, 1xx, 204, 304)
    _http11 = True
    _chunked = False  # the server frames the body in chunks
    _cut = False  # the body was cut at the application's Content-Length
    _input: Input = EMPTY_INPUT  # the request's wsgi.input as the server made it (the app may replace the environ's)
    _says_close = False  # the head says Connection: close already
    _head = b""  # the head so far: status line and headers, without the framing header and the final CR LF


def _with_request_keys(base: dict) -> dict:
    """``base`` with the keys the parser sets on every request already in it (placeholders, each overwritten in
    the same position it would take): each request's copy then has room for its header keys without a resize."""
    for key in _REQUEST_KEYS:
        base.setdefault(key, "")
    return base


def _refuse_line_breaks(status: str, headers: list) -> None:
    """Raises the ValueError gevent raises for a CR or LF in a header or the status (HTTP response splitting)."""
    for name, value in headers:
        if "\r" in name or "\n" in name:
            raise ValueError("carriage return or newline in header name", name)
        if "\r" in value or "\n" in value:
            raise ValueError("carriage return or newline in header value", value)
    raise ValueError("carriage return or newline in status", status)


def _announce_close(head: bytes) -> bytes:
    """``head`` (ending in its blank line) saying ``Connection: close``, instead of keep-alive if it said so."""
    if b"\r\nConnection: keep-alive\r\n" in head:
        return head.replace(b"\r\nConnection: keep-alive\r\n", b"\r\nConnection: close\r\n")
    return head[:-2] + b"Connection: close\r\n\r\n"


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"
