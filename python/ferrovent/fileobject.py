"""Cooperative file objects, as gevent's ``fileobject`` module offers them.

Each class takes the arguments of ``open`` (``fobj`` an fd, a path or an object with ``fileno()``; ``mode``,
``buffering``, ``encoding``, ``errors``, ``newline``, ``closefd``; gevent's older ``bufsize`` and ``close`` too)
and gives a file object whose ``io`` is the io stack underneath:

- `FileObjectPosix`: non-blocking fds (pipes, ttys, sockets); a call that would block parks only its greenlet.
- `FileObjectThread`: every call runs in the hub's thread pool; works for any file, regular files included.
- `FileObjectBlock`: calls the file directly and so blocks the thread; for testing.

`FileObject` is the default, `FileObjectPosix`.
"""

from __future__ import annotations

from ferrovent._fileobjectcommon import FileObjectBlock, FileObjectThread
from ferrovent._fileobjectposix import FileObjectPosix

__all__ = ["FileObjectPosix", "FileObjectThread", "FileObjectBlock", "FileObject"]

FileObject = FileObjectPosix
