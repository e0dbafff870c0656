"""Cooperative file objects for pipes and other non-seekable fds.

A `GreenFileIO` is a raw file whose fd is non-blocking: a read or write that would block parks the calling greenlet
until the fd is ready, so other greenlets run meanwhile. `FileObject` wraps it in the usual buffered or text layer,
with the arguments of `open()`.
"""

from __future__ import annotations

import io
import os

from ferrovent.hub import get_hub

__all__ = ["GreenFileIO", "FileObject", "FileObjectPosix"]


class GreenFileIO(io.RawIOBase):
    """A raw, unseekable file over ``fd`` whose reads and writes park the greenlet instead of blocking."""

    def __init__(self, fd: int, mode: str = "rb", closefd: bool = True):
        super().__init__()
        self._fd = fd
        self._closefd = closefd
        self._readable = "r" in mode or "+" in mode
        self._writable = any(c in mode for c in "wax+")
        self.mode = mode
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self._fd

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return os.isatty(self.fileno())

    def readinto(self, buffer) -> int:
        fd = self.fileno()
        while True:
            try:
                return os.readv(fd, [buffer])
            except BlockingIOError:
                get_hub().loop.wait_fd(fd, False, exclusive=True)

    def readall(self) -> bytes:
        chunks = []
        while True:
            chunk = self.read(io.DEFAULT_BUFFER_SIZE * 8)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def write(self, data) -> int:
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
            get_hub().loop.closing_fd(self._fd)
            if self._closefd:
                os.close(self._fd)


def FileObject(
    fd: int,
    mode: str = "r",
    bufsize: int = -1,
    close: bool = True,
    encoding=None,
    errors=None,
    newline=None,
    line_buffering: bool = False,
    write_through: bool = False,
):
    """Opens ``fd`` cooperatively, layered as ``open(fd, mode, bufsize, ...)`` would layer it."""
    raw_mode = mode.replace("t", "").replace("b", "") + "b"
    raw = GreenFileIO(fd, raw_mode, closefd=close)
    if bufsize == 0:
        if "b" not in mode:
            raise ValueError("can't have unbuffered text I/O")
        return raw
    size = io.DEFAULT_BUFFER_SIZE if bufsize in (-1, 1) else bufsize
    if raw.readable() and raw.writable():
        buffered = io.BufferedRWPair(raw, raw, size)
    elif raw.writable():
        buffered = io.BufferedWriter(raw, size)
    else:
        buffered = io.BufferedReader(raw, size)
    if "b" in mode:
        return buffered
    return io.TextIOWrapper(
        buffered,
        encoding=encoding,
        errors=errors,
        newline=newline,
        line_buffering=line_buffering or bufsize == 1,
        write_through=write_through,
    )


#: gevent's name for the same thing.
FileObjectPosix = FileObject
