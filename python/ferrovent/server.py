"""TCP (optionally TLS) and UDP servers: `StreamServer` and `DatagramServer`, gevent's API on ferrovent's loop.

``StreamServer(('127.0.0.1', 8000), handle).serve_forever()`` calls ``handle(socket, address)`` in a new greenlet
for every connection; the socket is a cooperative ferrovent socket, closed when ``handle`` returns. With TLS
arguments (``ssl_context=...``, or ``keyfile``/``certfile``/... as the old ``ssl.wrap_socket`` took them) each
connection is wrapped, handshake included, inside its own handler greenlet, so a slow handshake holds up no one.
"""

from __future__ import annotations

import _socket
import sys
from typing import Any, Callable, Optional

from ferrovent import socket as _cooperative
from ferrovent.baseserver import BaseServer
from ferrovent.hub import get_hub

__all__ = ["StreamServer", "DatagramServer"]

_accept = _socket.socket._accept
_recvfrom = _socket.socket.recvfrom
_sendto = _socket.socket.sendto
_Socket = _cooperative.socket

#: SO_REUSEADDR for listeners the server creates (None: leave the option alone, as on Windows).
DEFAULT_REUSE_ADDR = None if sys.platform == "win32" else 1

# The keyword arguments of the stdlib's old ``ssl.wrap_socket`` that configure the context rather than the socket.
_CONTEXT_ARGS = ("keyfile", "certfile", "cert_reqs", "ssl_version", "ca_certs", "ciphers")


class StreamServer(BaseServer):
    """A TCP server (or a Unix stream socket server) calling ``handle(client_socket, address)`` per connection.

    See `BaseServer` for ``listener`` and ``spawn``. ``backlog`` is the listen queue of a socket the server creates
    itself (it must be None when a socket is given). Any other keyword argument turns on TLS: either
    ``ssl_context`` (an ``SSLContext``, preferably ``ferrovent.ssl``'s) plus ``wrap_socket`` arguments, or the
    arguments of the stdlib's old ``ssl.wrap_socket`` (``keyfile``, ``certfile``, ``ca_certs``...).
    """

    backlog = 128
    reuse_addr = DEFAULT_REUSE_ADDR
    #: Seconds a TLS client may take to complete its handshake (None: no limit, as in gevent).
    handshake_timeout: Optional[float] = None

    def __init__(
        self,
        listener: Any,
        handle: Optional[Callable[..., Any]] = None,
        backlog: Optional[int] = None,
        spawn: Any = "default",
        **ssl_args: Any,
    ) -> None:
        BaseServer.__init__(self, listener, handle=handle, spawn=spawn)
        try:
            self.ssl_args: Optional[dict] = None
            if ssl_args:
                self._configure_tls(dict(ssl_args))
            if backlog is not None:
                if getattr(self, "socket", None) is not None:
                    raise TypeError("backlog must be None when a socket instance is passed")
                self.backlog = backlog
        except BaseException:
            self.close()
            raise

    def _configure_tls(self, ssl_args: dict) -> None:
        """Chooses how accepted sockets get wrapped: with the given context, or one built from the old arguments."""
        from ferrovent import ssl as _ssl  # late: TLS is optional, and importing it costs

        ssl_args.setdefault("server_side", True)
        context = ssl_args.pop("ssl_context", None)
        if context is None:
            options = {name: ssl_args.pop(name) for name in _CONTEXT_ARGS if name in ssl_args}
            context = _context_from_options(_ssl, **options)
        self.wrap_socket = context.wrap_socket
        self.ssl_args = ssl_args

    @property
    def ssl_enabled(self) -> bool:
        """True if accepted connections are wrapped in TLS."""
        return self.ssl_args is not None

    def init_socket(self) -> None:
        """Makes the listening socket from ``address`` if none was given, and sets it non-blocking."""
        if getattr(self, "socket", None) is None:
            self.socket = self.get_listener(self.address, self.backlog, self.family)
            self.address = self.socket.getsockname()
        self.socket.setblocking(False)  # accept() is tried first and waited for on EAGAIN
        self._handle = self.wrap_socket_and_handle if self.ssl_args else self.handle

    @classmethod
    def get_listener(cls, address: Any, backlog: Optional[int] = None, family: Optional[int] = None) -> _Socket:
        """A new cooperative socket bound to ``address`` and listening."""
        if backlog is None:
            backlog = cls.backlog
        return _tcp_listener(address, backlog=backlog, reuse_addr=cls.reuse_addr, family=family)

    def do_read(self) -> Optional[tuple]:
        """Accepts one connection: ``(client socket, address)``, or None if none is waiting."""
        listener = self.socket
        try:
            fd, address = _accept(listener)
        except BlockingIOError:
            return None
        return _Socket(listener.family, _socket.SOCK_STREAM, 0, fd), address

    def do_close(self, sock: Any, *args: Any) -> None:
        """Closes the client socket once its handler returned."""
        sock.close()

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        """Handshakes TLS on the accepted socket (in the handler's greenlet), then calls ``handle``."""
        timeout = handshake_timeout = self.handshake_timeout
        if handshake_timeout is not None:
            timeout = client_socket.gettimeout()
            client_socket.settimeout(handshake_timeout)
        # The wrapped socket inherits the timeout; a failure to wrap is the wrapper's error, whatever it was given.
        with self.wrap_socket(client_socket, **self.ssl_args) as tls_socket:
            if handshake_timeout is not None:
                tls_socket.settimeout(timeout)
            return self.handle(tls_socket, address)


class DatagramServer(BaseServer):
    """A UDP server calling ``handle(data, address)`` in a new greenlet per datagram (up to 8 KiB each).

    Reply with ``server.sendto(data, address)``, which is safe to call from many handlers at once.
    """

    reuse_addr = DEFAULT_REUSE_ADDR
    #: The largest datagram read; longer ones are truncated by the kernel.
    max_datagram = 8192

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from ferrovent.lock import Semaphore

        BaseServer.__init__(self, *args, **kwargs)
        self._writelock = Semaphore()

    def init_socket(self) -> None:
        """Makes the bound UDP socket from ``address`` if none was given, and sets it non-blocking."""
        if getattr(self, "socket", None) is None:
            self.socket = self.get_listener(self.address, self.family)
            self.address = self.socket.getsockname()
        self.socket.setblocking(False)

    @classmethod
    def get_listener(cls, address: Any, family: Optional[int] = None) -> _Socket:
        """A new cooperative UDP socket bound to ``address``."""
        return _udp_socket(address, reuse_addr=cls.reuse_addr, family=family)

    def do_read(self) -> Optional[tuple]:
        """Receives one datagram: ``(data, address)``, or None if none is waiting."""
        try:
            return _recvfrom(self.socket, self.max_datagram)
        except BlockingIOError:
            return None

    def sendto(self, *args: Any) -> int:
        """``socket.sendto(data[, flags], address)``, waiting (cooperatively) while the send buffer is full."""
        with self._writelock:
            sock = self.socket
            while True:
                try:
                    return _sendto(sock, *args)
                except BlockingIOError:
                    get_hub().loop.wait_fd(sock.fileno(), True, None, None, True, True)


def _context_from_options(ssl_module: Any, **options: Any) -> Any:
    """A server-side SSLContext configured the way the stdlib's old ``ssl.wrap_socket`` keywords describe."""
    context = ssl_module.SSLContext(options.get("ssl_version", ssl_module.PROTOCOL_TLS_SERVER))
    if options.get("certfile"):
        context.load_cert_chain(options["certfile"], options.get("keyfile"))
    if options.get("ca_certs"):
        context.load_verify_locations(options["ca_certs"])
    if options.get("cert_reqs") is not None:
        context.verify_mode = options["cert_reqs"]
    if options.get("ciphers"):
        context.set_ciphers(options["ciphers"])
    return context


def _bound_socket(address: Any, kind: int, reuse_addr: Optional[int], family: Optional[int]) -> _Socket:
    """A new cooperative socket of ``family`` and ``kind`` bound to ``address`` (errors name the address)."""
    sock = _Socket(family if family is not None else _socket.AF_INET, kind)
    try:
        if reuse_addr is not None and sock.family != getattr(_socket, "AF_UNIX", None):
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, reuse_addr)
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.strerror:
            error.strerror = f"{error.strerror}: {address!r}"
        raise
    return sock


def _tcp_listener(address: Any, backlog: int = 128, reuse_addr: Optional[int] = None, family: Optional[int] = None):
    """A cooperative stream socket bound to ``address`` and listening."""
    sock = _bound_socket(address, _socket.SOCK_STREAM, reuse_addr, family)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _udp_socket(address: Any, reuse_addr: Optional[int] = None, family: Optional[int] = None) -> _Socket:
    """A cooperative datagram socket bound to ``address``."""
    sock = _bound_socket(address, _socket.SOCK_DGRAM, reuse_addr, family)
    sock.setblocking(False)
    return sock
