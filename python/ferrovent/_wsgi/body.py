"""The request and response bodies of the WSGI server: ``wsgi.input`` (`Input`, `UpgradeInput`) and
``wsgi.file_wrapper`` (`FileWrapper`)."""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterator
from typing import Any, Optional

from ferrovent._core import ChunkedDecoder, HttpParseError
from ferrovent._wsgi.conn import ClientError, ClientGone, Connection, ConnectionReader, FileSource, InvalidClientInput

__all__ = ["BODY_READ", "Input", "EMPTY_INPUT", "UpgradeInput", "FileWrapper"]

#: How much one receive asks for while reading a body.
BODY_READ = 256 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Input:
    """``wsgi.input``: the request body, read from the connection only as far as the application asks.

    Framed by Content-Length or by the chunked coding; reads past the end return b"". A body that ends early or
    is badly framed raises an OSError (and the server answers 400); a client too slow to send raises
    ``socket.timeout``. With ``Expect: 100-continue`` the interim ``100 Continue`` is sent on the first read
    (none if the application never reads: a body the client sent anyway is then dropped if it is all received
    with the response, else the connection closes).

    Body bytes are taken from the connection a block at a time into ``_block``, and handed out from position
    ``_pos`` on: each call copies only the bytes it returns, however small the reads.
    """

    __slots__ = ("_conn", "_left", "_decoder", "_block", "_pos", "_continue")

    def __init__(
        self, rfile: Any, content_length: Optional[int], socket: Any = None, chunked_input: bool = False
    ) -> None:
        """gevent's signature: the body is read from ``rfile`` (the server passes its `Connection`; any binary
        file works), ``content_length`` bytes of it (None: none), or chunked. Given a ``socket``, the interim
        ``100 Continue`` is sent to it before the first read."""
        self._conn = rfile if rfile is None or type(rfile) is Connection else FileSource(rfile, socket)
        self._left = content_length or 0  # Content-Length bytes not yet taken from the stream (unused when chunked)
        self._decoder = ChunkedDecoder() if chunked_input else None
        self._block = b""  # body bytes taken from the stream (decoded, if chunked)
        self._pos = 0  # how much of _block was handed out
        self._continue = socket is not None

    @property
    def rfile(self) -> Optional[ConnectionReader]:
        """The connection's byte stream under the body (None for a body that is not read from a connection), as
        gevent's ``Input.rfile``: WebSocket libraries find the socket through it (``rfile.raw._sock``)."""
        conn = self._conn
        return ConnectionReader(conn, None) if type(conn) is Connection else None

    # -- primitives --

    def _send_continue(self) -> None:
        """Sends the interim 100 Continue the client asked for, before the first read of the body (as gevent does,
        even when some of the body is already received)."""
        self._continue = False
        conn = self._conn
        try:
            conn.send(_CONTINUE)
        except ClientError as error:
            raise conn.input_failed(error) from error

    def _fill(self) -> bool:
        """Takes the next block of the body from the connection; False at the body's end."""
        if self._continue:
            self._send_continue()
        conn = self._conn
        decoder = self._decoder
        if decoder is None:
            left = self._left
            if left <= 0:
                return False
            data = conn.buffer or conn.receive_body(min(left, BODY_READ))
            if len(data) > left:
                conn.buffer = data[left:]
                data = data[:left]
            else:
                conn.buffer = b""
            self._left = left - len(data)
        else:
            data = b""
            while not data:
                if decoder.done:
                    return False
                raw = conn.buffer or conn.receive_body(BODY_READ)
                try:
                    data, used = decoder.decode(raw)
                except HttpParseError as error:
                    failure = InvalidClientInput(errno.EPROTO, f"invalid chunked body: {error.reason}")
                    raise conn.input_failed(failure) from None
                conn.buffer = raw[used:] if used < len(raw) else b""
        self._block = data
        self._pos = 0
        return True

    def _take(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body (fewer if fewer are at hand); b"" once the body is over."""
        pos = self._pos
        block = self._block
        if pos >= len(block):
            if limit <= 0 or not self._fill():
                return b""
            pos = 0
            block = self._block
        end = pos + limit
        if end >= len(block):
            self._pos = len(block)
            return block if pos == 0 else block[pos:]
        self._pos = end
        return block[pos:end]

    def _exhausted(self) -> bool:
        """True when the whole body has been handed out."""
        if self._pos < len(self._block):
            return False
        if self._decoder is not None:
            return self._decoder.done
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
        if size is None or size < 0:
            block = self._block
            pos = self._pos
            newline = block.find(b"\n", pos)
            if newline >= 0:  # the common case: the whole line is in the current block
                self._pos = newline + 1
                return block[pos : newline + 1]
            return self._readline(sys.maxsize)
        return self._readline(size)

    def _readline(self, limit: int) -> bytes:
        pieces = []
        have = 0
        while have < limit:
            pos = self._pos
            block = self._block
            if pos >= len(block):
                if not self._fill():
                    break
                pos = 0
                block = self._block
            stop = min(len(block), pos + limit - have)
            newline = block.find(b"\n", pos, stop)
            end = stop if newline < 0 else newline + 1
            pieces.append(block if pos == 0 and end == len(block) else block[pos:end])
            have += end - pos
            self._pos = end
            if newline >= 0:
                break
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readlines(self, hint: Optional[int] = None) -> list[bytes]:
        """The remaining lines (all of them; ``hint`` is accepted and, as PEP 3333 allows, ignored)."""
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        block = self._block
        pos = self._pos
        newline = block.find(b"\n", pos)
        if newline >= 0:  # as in readline: the whole line is in the current block
            self._pos = newline + 1
            return block[pos : newline + 1]
        line = self._readline(sys.maxsize)
        if not line:
            raise StopIteration
        return line

    def _can_finish(self, budget: int) -> bool:
        """Whether `_discard` with ``budget`` will end the body, as far as can be told now, without waiting:
        asked when the response head leaves, so that a connection to be closed says so in that head.

        A client waiting for its 100 Continue may hold the body back: only bytes already received count then (a
        client may send the body without waiting). A chunked body is decoded as far as its bytes are already
        received, its rest being of unknown size.
        """
        decoder = self._decoder
        if decoder is None:
            if self._continue:
                return self._left <= min(budget, len(self._conn.buffer))
            return self._left <= budget
        conn = self._conn
        while not decoder.done and conn.buffer:
            try:
                data, used = decoder.decode(conn.buffer)
            except HttpParseError:
                return False  # the read after the response reports it
            conn.buffer = conn.buffer[used:]
            if len(self._block) - self._pos + len(data) > budget:
                return False
            self._block = self._block[self._pos :] + data
            self._pos = 0
        return decoder.done and len(self._block) - self._pos <= budget

    def _discard(self, budget: int) -> bool:
        """Reads and drops what is left of the body, if at most ``budget`` bytes; True if the body is over."""
        if self._continue:
            if not self._can_finish(budget):
                return False  # the client may be waiting for our 100 Continue: it may never send the body
            self._continue = False  # the whole body is received: dropping it needs no 100 Continue
        while budget > 0:
            data = self._take(min(budget, BODY_READ))
            if not data:
                return True
            budget -= len(data)
        return self._exhausted()


#: ``wsgi.input`` of every request without a body: always at its end, so one object serves them all.
EMPTY_INPUT = Input(None, 0)


class UpgradeInput(Input):
    """``wsgi.input`` of a request with an ``Upgrade`` header: its body framed like any other until the application
    answers ``101``; from then on the connection's bytes as they come, unframed and with no timeout.

    After the switch, ``read(n)`` returns what is available, at most ``n`` bytes, waiting only when nothing is; b""
    at the end of the stream.
    """

    __slots__ = ("_raw",)

    def __init__(
        self, rfile: Any, content_length: Optional[int], socket: Any = None, chunked_input: bool = False
    ) -> None:
        Input.__init__(self, rfile, content_length, socket, chunked_input)
        self._raw = False

    def switch_protocols(self) -> None:
        """The 101 response left: the stream now belongs to the application's protocol."""
        self._raw = True

    def _fill(self) -> bool:
        if not self._raw:
            return Input._fill(self)
        conn = self._conn
        data = conn.buffer
        if data:
            conn.buffer = b""
        else:
            try:
                data = conn.io.recv(BODY_READ, None)
            except ClientGone:
                return False
            if not data:
                return False
        self._block = data
        self._pos = 0
        return True

    def read(self, size: Optional[int] = -1) -> bytes:
        if not self._raw:
            return Input.read(self, size)
        return self._take(sys.maxsize if size is None or size < 0 else size)


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
        """Closes the wrapped file-like object if it has a ``close`` (the server calls it after the response)."""
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
