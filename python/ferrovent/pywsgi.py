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
the response says ``Connection: close``: a connection is never closed after a response that did not say so. A
refused request gets its status (400, 408, 414, 431, 501, 505) and the connection is closed gracefully (our side
shut down first, the client's remaining bytes drained briefly) so that the client reads the answer, not a reset.

Application errors: an exception (``GreenletExit`` included) before any byte of the response left answers 500;
after, the connection is closed. A body item that is not bytes (or bytearray) is such an error, and so is a body
for a 204 or 304, or a CR or LF in the status or a header (a ValueError from ``start_response``, as gevent's). A
body longer than the application's own Content-Length is cut there (logged once) and the connection closed. An
application that returns no body without calling ``start_response`` gets no response: the connection closes.

Extensions: ``environ['ferrovent.socket']`` is the client socket. A request with an ``Upgrade`` header is an
ordinary request, its body framed and timed like any other, until the application answers ``101``: the server
sends that head and stops touching the connection, whose bytes ``wsgi.input`` then hands over as they come
(those already received first); the application owns the socket until it returns.
"""

from __future__ import annotations

import _socket
import sys
from email.utils import formatdate
from typing import Any, Callable, Optional

from ferrovent import __version__
from ferrovent import socket as _cooperative
from ferrovent._gevent_alias import GEVENT_API_VERSION
from ferrovent._wsgi.body import FileWrapper, Input
from ferrovent._wsgi.environ import Environ, SecureEnviron, WSGISecureEnviron
from ferrovent._wsgi.handler import MAX_REQUEST_LINE as MAX_REQUEST_LINE  # gevent's name (the parser's limit)
from ferrovent._wsgi.handler import WSGIHandler
from ferrovent._wsgi.log import LoggingLogAdapter, make_log
from ferrovent._wsgi.log import NoopLog as _NoopLog  # gevent's name: its tests pass one as ``log``
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


def format_date_time(timestamp: float) -> bytes:
    """``timestamp`` as an HTTP date (``b"Thu, 01 Jan 1970 00:00:00 GMT"``), bytes as gevent's helper returns."""
    return formatdate(timestamp, usegmt=True).encode("latin-1")


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
        # gevent's product token first, as gevent's server says it: libraries pick their gevent code path by it
        # (simple-websocket finds the socket to take over this way).
        "SERVER_SOFTWARE": (
            f"gevent/{GEVENT_API_VERSION} ferrovent/{__version__} Python/{sys.version_info[0]}.{sys.version_info[1]}"
        ),
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
        self.log = make_log(log, 20)
        self.error_log = make_log(error_log, 40)
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
        """As ``StreamServer.init_socket``, and turns Nagle's algorithm off on TCP listeners."""
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
