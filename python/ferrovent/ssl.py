"""Cooperative TLS: the stdlib ``ssl`` module, whose sockets park only the current greenlet.

Every public name of ``ssl`` is here. `SSLContext` is the stdlib's with ``wrap_socket`` returning a
cooperative `SSLSocket`; ``create_default_context``, ``get_server_certificate`` and the other module functions
that build contexts or sockets are the stdlib's own, rebound so that they build ferrovent's.

Design: `SSLSocket` derives from both the stdlib ``ssl.SSLSocket`` and ``ferrovent.socket.socket`` (in that
order), so all of the stdlib's TLS logic is reused as is (``_create``, accept, connect, ``getpeercert``, ALPN,
SNI, sessions, ``sendall``, ``recv_into``...) and its plain-socket calls land on the cooperative socket. The
TLS engine is the stdlib's ``_ssl`` object wrapped directly around the socket, whose C-level timeout is always 0:
OpenSSL reads and writes the fd itself, and when it would block it raises SSLWantReadError/SSLWantWriteError.
The five methods that drive the engine (``read``, ``write``, ``send``, ``do_handshake``, ``unwrap``) turn those
into a wait for the fd in the direction OpenSSL asked for, then try again. No data is copied through Python, as a
MemoryBIO design would need, and a call that does not have to wait costs what the stdlib's costs.

Timeouts are the stdlib's: the socket's timeout bounds each handshake, read and write (a handshake's as a whole);
it raises an error that is both ``socket.timeout`` (what the stdlib raises) and ``ssl.SSLError`` (what gevent
raises), with the stdlib's messages ("The handshake operation timed out").
"""

from __future__ import annotations

import ssl as __ssl__
from time import monotonic as _monotonic
from typing import Any, Callable, Optional

from ferrovent import socket as _cooperative
from ferrovent._core import sock_wait as _sock_wait
from ferrovent._stdlib import copy_public_names, rebind_self_references, rebind_users

_copied = copy_public_names(__ssl__, globals())

# The stdlib's globals as they are now, before any monkey-patching: what its own code must go on seeing.
_STDLIB_GLOBALS = dict(vars(__ssl__))
_SSLError = __ssl__.SSLError
_SSLWantWriteError = __ssl__.SSLWantWriteError
_WANT = (__ssl__.SSLWantReadError, _SSLWantWriteError)
_SSL_ERROR_EOF = __ssl__.SSL_ERROR_EOF
_READ_TIMEOUT = "The read operation timed out"
_WRITE_TIMEOUT = "The write operation timed out"
_HANDSHAKE_TIMEOUT = "The handshake operation timed out"


class _SSLTimeoutError(_SSLError, _cooperative.timeout):
    """A TLS operation ran out of time: ``socket.timeout`` for stdlib code, ``ssl.SSLError`` for gevent code."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SSLSocket(__ssl__.SSLSocket, _cooperative.socket):
    """A TLS socket whose blocking calls (handshake, reads, writes, unwrap) park only the current greenlet.

    Made by `SSLContext.wrap_socket`, as in the stdlib; it has no public constructor.
    """

    def _retry_tls(
        self,
        op: Callable[..., Any],
        args: tuple,
        writable: bool,
        timeout: Optional[float],
        message: Optional[str],
        direction: Optional[bool],
    ) -> Any:
        """After ``op(*args)`` asked to wait for the fd (writable or not): waits, retries, until it is done.

        ``timeout`` bounds the whole retry; on expiry raises ``message`` (None: the read or write message, by the
        direction of the last wait). Waits in ``direction`` (None: either) are exclusive: a second greenlet
        reading (or writing) the same socket gets ConcurrentObjectUseError.
        """
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            if deadline is not None:
                timeout = deadline - _monotonic()
            exclusive = direction is None or direction == writable
            if (timeout is not None and timeout <= 0) or not _sock_wait(self, writable, timeout, exclusive):
                raise _SSLTimeoutError(message or (_WRITE_TIMEOUT if writable else _READ_TIMEOUT))
            try:
                return op(*args)
            except _WANT as want:
                writable = isinstance(want, _SSLWantWriteError)

    def _ragged_eof(self, error: BaseException, buffer: Any) -> Any:
        """An EOF without TLS close_notify reads as a plain end of stream when ``suppress_ragged_eofs`` is set."""
        if isinstance(error, _SSLError) and error.args[0] == _SSL_ERROR_EOF and self.suppress_ragged_eofs:
            return b"" if buffer is None else 0
        raise error

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """Reads up to ``len`` decrypted bytes (into ``buffer`` if given); b"" (or 0) at the end of the stream."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        args = (len,) if buffer is None else (len, buffer)
        try:
            return sslobj.read(*args)
        except _WANT as want:
            if self._timeout == 0.0:
                raise
            writable = isinstance(want, _SSLWantWriteError)
        except _SSLError as error:
            return self._ragged_eof(error, buffer)
        try:
            return self._retry_tls(sslobj.read, args, writable, self._timeout, _READ_TIMEOUT, False)
        except _SSLError as error:
            return self._ragged_eof(error, buffer)

    def write(self, data: Any) -> int:
        """Encrypts and sends all of ``data`` (as one or more TLS records); returns its length."""
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        try:
            return sslobj.write(data)
        except _WANT as want:
            if self._timeout == 0.0:
                raise
            writable = isinstance(want, _SSLWantWriteError)
        return self._retry_tls(sslobj.write, (data,), writable, self._timeout, _WRITE_TIMEOUT, True)

    def send(self, data: Any, flags: int = 0) -> int:
        """Sends ``data`` through TLS (or in the clear once unwrapped); returns how many bytes were sent."""
        if self._sslobj is None:
            return _cooperative.socket.send(self, data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {self.__class__}")
        return self.write(data)

    def do_handshake(self, block: bool = False) -> None:
        """Performs the TLS handshake; the socket's timeout bounds all of it (``block`` forces a wait)."""
        self._check_connected()
        timeout = self._timeout
        if timeout == 0.0 and block:
            timeout = None
        sslobj = self._sslobj
        try:
            return sslobj.do_handshake()
        except _WANT as want:
            if timeout == 0.0:
                raise
            writable = isinstance(want, _SSLWantWriteError)
        return self._retry_tls(sslobj.do_handshake, (), writable, timeout, _HANDSHAKE_TIMEOUT, None)

    def unwrap(self) -> Any:
        """Ends TLS (close_notify both ways) and returns the socket, now talking in the clear."""
        sslobj = self._sslobj
        if not sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        try:
            plain = sslobj.shutdown()
        except _WANT as want:
            if self._timeout == 0.0:
                raise
            writable = isinstance(want, _SSLWantWriteError)
        else:
            self._sslobj = None
            return plain
        plain = self._retry_tls(sslobj.shutdown, (), writable, self._timeout, None, None)
        self._sslobj = None
        return plain


class SSLContext(__ssl__.SSLContext):
    """The stdlib's SSLContext, whose ``wrap_socket`` returns a cooperative `SSLSocket`."""

    sslsocket_class = SSLSocket


for _cls, _std in ((SSLSocket, __ssl__.SSLSocket), (SSLContext, __ssl__.SSLContext)):
    for _name, _member in rebind_self_references(_std, _STDLIB_GLOBALS, __name__).items():
        setattr(_cls, _name, _member)
del _cls, _std, _name, _member

# create_default_context, get_server_certificate and friends: the stdlib's, building ferrovent's contexts,
# sockets and connections.
_rebound = rebind_users(
    __ssl__,
    {
        "SSLContext": SSLContext,
        "SSLSocket": SSLSocket,
        "socket": _cooperative.socket,
        "create_connection": _cooperative.create_connection,
    },
    __name__,
)
globals().update(_rebound)

__implements__ = ["SSLContext", "SSLSocket", *sorted(_rebound)]
__all__ = sorted({*_copied, *__implements__})
