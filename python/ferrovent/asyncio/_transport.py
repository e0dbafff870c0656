"""`SocketTransport`: the stdlib's selector socket transport, reading for ``data_received`` protocols and writing
when nothing is buffered in Rust.

The stdlib's transport reads with ``sock.recv(max_size)``: CPython makes a ``max_size`` (256 KiB) bytes object for
each read and shrinks it, and with glibc that is an mmap, an mremap and a munmap per read unless something earlier
in the process happened to raise malloc's mmap threshold. `_core.AioReadReady`, the reader callback here, reads
into one buffer per thread that it keeps, and hands the protocol a bytes object of the received length; what the
protocol and the loop see is what the stdlib's ``_read_ready`` gives them (its documentation lists it).

``write`` (a Rust method, `_core.install_aio_transport`, that makes no object per call) sends a ``bytes`` at once
when nothing is buffered, as the stdlib's does first, without its Python frame; every other case, and data the
socket did not take at once, goes to the stdlib's ``write``. ``is_closing`` is a Rust method too (a streams
writer's ``drain`` asks it at each call).

Both read the transport's state (``_conn_lost``, ``_buffer``, ``_sock``...) at each call, as the stdlib's methods do.
The class keeps that state in ``__slots__``, which the Rust side reads in place while the class's lookup of those
names finds its slots (a property put in a slot's place is honoured); the stdlib's code reads and sets them as
before, through the slots' descriptors.

Everything else (buffered writes and their flow control, pause/resume, eof, close/abort, sendfile, start_tls) is
the stdlib's, inherited. A BufferedProtocol reads through the stdlib's ``get_buffer`` path, which has no per-read
allocation, and a socket whose ``recv``, ``send`` or ``fileno`` is not the plain one (a subclass's own) is read or
written through its own.
"""

from __future__ import annotations

import _socket
from asyncio import protocols, selector_events
from typing import Any

from ferrovent import _core
from ferrovent import socket as _cooperative_socket

__all__ = ["SocketTransport"]

# methods that do nothing more than recv(2) or send(2) on a non-blocking socket, as the Rust read and write do
_PLAIN_RECVS = (_socket.socket.recv, _cooperative_socket.socket.recv)
_PLAIN_SENDS = (_socket.socket.send, _cooperative_socket.socket.send)
# the fileno of both: the Rust read and write call it directly, without looking it up on the socket
_PLAIN_FILENO = _socket.socket.fileno


def _is_one_of(method: Any, plain: tuple) -> bool:
    return any(method is candidate for candidate in plain)


class SocketTransport(selector_events._SelectorSocketTransport):
    """The stdlib's socket transport whose reader callback (for ``data_received`` protocols) and ``write`` (when
    nothing is buffered) are Rust's."""

    # the state the Rust read and write read at each call (``_conn_lost``, ``_sock``, ``_buffer``...), and nothing else
    __slots__ = _core.AIO_TRANSPORT_STATE

    def __init__(self, loop: Any, sock: Any, protocol: Any, waiter: Any = None, extra: Any = None, server: Any = None):
        # The stdlib's class has ``_sock = None`` for its ``__del__``, in case its ``__init__`` fails part way; the slot
        # hides that, so it is set first. The flags say no until ``set_protocol`` (which that ``__init__`` calls).
        self._sock = None
        self._reads_in_rust = self._writes_in_rust = False
        super().__init__(loop, sock, protocol, waiter, extra, server)

    @property
    def _read_ready(self) -> _core.AioReadReady:  # type: ignore[override]
        # What the stdlib registers as the reader (on connection and on resume_reading). A new one each time, as a
        # bound method would be: the registration keeps the transport alive, and no cycle keeps it longer.
        return _core.AioReadReady(self)

    def set_protocol(self, protocol: Any) -> None:
        """As the stdlib's; says whether the new protocol's reads go through Rust."""
        super().set_protocol(protocol)
        sock_type = type(self._sock)  # NoneType once closed; tests give mocks
        plain_fileno = getattr(sock_type, "fileno", None) is _PLAIN_FILENO
        self._writes_in_rust = plain_fileno and _is_one_of(getattr(sock_type, "send", None), _PLAIN_SENDS)
        self._reads_in_rust = (
            plain_fileno
            and not isinstance(protocol, protocols.BufferedProtocol)
            and _is_one_of(getattr(sock_type, "recv", None), _PLAIN_RECVS)
        )


_core.install_aio_transport(SocketTransport)
