"""Cooperative file objects over non-blocking fds (pipes, ttys, sockets): `FileObjectPosix`.

`GreenFileIO` is the raw file: its fd is non-blocking, and a read or write that would block parks the calling
greenlet in the loop until the fd is ready, so other greenlets run meanwhile. `GreenOpenDescriptor` builds the
usual io stack (buffer, text) on it; given a path or a file object rather than an fd, it puts a `GreenFileIO` over
that object's fd and keeps the object, closing it with the stack. Closing wakes any greenlet still waiting on the
fd with OSError(EBADF) before the fd is closed, so a later fd with the same number starts clean.

Regular files never report "would block", so on them this is a plain file: reads and writes block the thread for
as long as the disk takes (`ferrovent.fileobject.FileObjectThread` moves that to a thread).
"""

from __future__ import annotations

import io
import os
from typing import Any

from ferrovent._fileobjectcommon import FileObjectBase, OpenDescriptor, WriteIsWriteallMixin
from ferrovent.hub import get_hub, get_hub_if_exists
from ferrovent.os import make_nonblocking

__all__ = ["GreenFileIO", "GreenOpenDescriptor", "FileObjectPosix"]


class GreenFileIO(io.RawIOBase):
    """A raw file over the non-blocking ``fd``, whose reads and writes park the greenlet instead of blocking.

    ``mode`` says which of reading and writing it allows (as ``open``'s letters); ``name`` is the fd.
    """

    _keep_alive: Any = None  # the object the fd came from: closed with this file

    def __init__(self, fd: int, mode: str = "rb", closefd: bool = True) -> None:
        super().__init__()
        self._fd = fd
        self._closefd = closefd
        self._readable = "r" in mode or "+" in mode
        self._writable = any(letter in mode for letter in "wax+")
        self._seekable: bool | None = None
        self.name = fd
        self.mode = mode
        make_nonblocking(fd)

    def fileno(self) -> int:
        self._checkClosed()
        return self._fd

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        if self._seekable is None:
            try:
                os.lseek(self.fileno(), 0, os.SEEK_CUR)
                self._seekable = True
            except OSError:
                self._seekable = False
        return self._seekable

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fileno(), offset, whence)

    def isatty(self) -> bool:
        return os.isatty(self.fileno())

    def readinto(self, buffer: Any) -> int:
        if not self._readable:
            raise io.UnsupportedOperation("read")
        fd = self.fileno()
        while True:
            try:
                return os.readv(fd, [buffer])
            except BlockingIOError:
                get_hub().loop.wait_fd(fd, False, exclusive=True)

    def readall(self) -> bytes:
        """Everything up to end of file; if the file is closed meanwhile, what was read until then."""
        chunks = []
        while True:
            try:
                chunk = self.read(io.DEFAULT_BUFFER_SIZE * 8)
            except OSError:
                if not self.closed:
                    raise
                chunk = b""
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def write(self, data: Any) -> int:
        if not self._writable:
            raise io.UnsupportedOperation("write")
        fd = self.fileno()
        while True:
            try:
                return os.write(fd, data)
            except BlockingIOError:
                get_hub().loop.wait_fd(fd, True, exclusive=True)

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            hub = get_hub_if_exists()
            if hub is not None:
                hub.loop.closing_fd(self._fd)
            try:
                if self._closefd:
                    os.close(self._fd)
            finally:
                keep_alive, self._keep_alive = self._keep_alive, None
                if hasattr(keep_alive, "close"):
                    keep_alive.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))} fileno={self._fd} mode={self.mode!r}>"


class GreenFileIOWriteall(WriteIsWriteallMixin, GreenFileIO):
    """A GreenFileIO whose ``write`` writes everything (parking as often as it takes)."""


class GreenOpenDescriptor(OpenDescriptor):
    """`OpenDescriptor` whose raw file is a `GreenFileIO`."""

    def _do_open_raw(self) -> GreenFileIO:
        if self.is_fd():
            return GreenFileIO(self._fobj, self.mode, closefd=self.closefd)
        # A path (opened here) or the caller's file object: that object owns the fd and closes it.
        owner = super()._do_open_raw()
        raw = GreenFileIO(owner.fileno(), self.mode, closefd=False)
        raw._keep_alive = owner
        try:
            raw.name = owner.name
        except AttributeError:
            del raw.name
        return raw

    def _make_atomic_write(self, stream: Any, raw: Any) -> Any:
        if type(stream) is GreenFileIO:
            stream.__class__ = GreenFileIOWriteall
            return stream
        return super()._make_atomic_write(stream, raw)


class FileObjectPosix(FileObjectBase):
    """A file object over a non-blocking fd (a pipe, a tty, a socket) whose blocking calls park only the calling
    greenlet. Takes the arguments of ``open``: an fd, a path or an object with ``fileno()``.

    ``fileio`` is the raw file underneath (a ``io.RawIOBase``), for reads that return what is there; mixing
    it with this object's buffered calls gives undefined results. Clearing ``O_NONBLOCK`` on the fd makes every
    call block the whole thread.
    """

    default_bufsize = io.DEFAULT_BUFFER_SIZE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        descriptor = GreenOpenDescriptor(*args, **kwargs)
        super().__init__(descriptor)
        self.fileio = descriptor.opened_raw()

    def _do_close(self, stream: Any, closefd: bool) -> None:
        try:
            stream.close()
            self.fileio.close()  # it knows whether the fd is its to close
        finally:
            self.fileio = None
