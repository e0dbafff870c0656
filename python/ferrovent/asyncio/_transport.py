"""`SocketTransport`: the stdlib's selector socket transport, reading for ``data_received`` protocols in Rust.

The stdlib's transport reads with ``sock.recv(max_size)``: CPython makes a ``max_size`` (256 KiB) bytes object for
each read and shrinks it, and with glibc that is an mmap, an mremap and a munmap per read unless something earlier
in the process happened to raise malloc's mmap threshold. `_core.AioReadReady`, the reader callback here, reads
into one buffer per thread that it keeps, and hands the protocol a bytes object of the received length; what the
protocol and the loop see is what the stdlib's ``_read_ready`` gives them (its documentation lists it).

Everything else (writing and its flow control, pause/resume, eof, close/abort, sendfile, start_tls) is the
stdlib's, inherited. A BufferedProtocol reads through the stdlib's ``get_buffer`` path, which has no per-read
allocation, and a socket whose ``recv`` is not the plain one (a subclass's own) is read through that ``recv``.
"""

from __future__ import annotations

import _socket
from asyncio import protocols, selector_events
from typing import Any

from ferrovent import _core
from ferrovent import socket as _cooperative_socket

# recv methods that do nothing more than recv(2) on a non-blocking socket: the Rust read does exactly that
_PLAIN_RECVS = (_socket.socket.recv, _cooperative_socket.socket.recv)


class SocketTransport(selector_events._SelectorSocketTransport):
    """The stdlib's socket transport whose reader callback, for ``data_received`` protocols, is Rust's."""

    def __init__(self, loop: Any, sock: Any, protocol: Any, *args: Any, **kwargs: Any) -> None:
        self._reads_in_rust = False
        # before the stdlib's __init__: it registers `self._read_ready` as the reader
        self._read_ready = _core.AioReadReady(self)
        super().__init__(loop, sock, protocol, *args, **kwargs)

    def set_protocol(self, protocol: Any) -> None:
        """As the stdlib's; says whether the new protocol's reads go through Rust."""
        super().set_protocol(protocol)
        self._reads_in_rust = not isinstance(protocol, protocols.BufferedProtocol) and any(
            type(self._sock).recv is recv for recv in _PLAIN_RECVS
        )
