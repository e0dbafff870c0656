"""What every gevent file object shares: reading ``open()``'s arguments, and the wrapper around the io stack.

`OpenDescriptor` interprets the arguments of ``open`` (plus gevent's older ``bufsize``/``close`` spellings) the
way ``open`` does, and builds the usual io stack over a raw file: a buffer unless unbuffered, then a
``TextIOWrapper`` unless binary. ``fobj`` may be an fd, a path or an object with ``fileno()``; a subclass supplies
a different raw file (`ferrovent._fileobjectposix` makes it cooperative). With ``atomic_write``, an unbuffered
writer's ``write`` writes everything it is given, as a blocking pipe's does (subprocess's ``bufsize=0`` pipes).

`FileObjectBase` wraps that stack: it puts the stack's own bound methods (``read``, ``write``, ...) on the instance,
so a call costs what it costs on the stack, forwards any other attribute, and remembers the ``name`` after close.
`FileObjectBlock` adds nothing (it blocks, as a plain file does); `FileObjectThread` runs each call in the hub's
thread pool, one call at a time unless told otherwise, so a blocking file never blocks the loop.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import warnings
from typing import Any, Callable, Optional

from ferrovent.hub import get_hub
from ferrovent.lock import DummySemaphore, Semaphore

__all__ = ["OpenDescriptor", "FileObjectBase", "FileObjectBlock", "FileObjectThread", "FileObjectClosed"]


class FileObjectClosed(IOError):
    """An operation on a file object that was closed (EBADF, as the OS says for a closed fd)."""

    def __init__(self) -> None:
        super().__init__(errno.EBADF, "Bad file descriptor (FileObject was closed)")


class WriteallMixin:
    """Adds ``writeall(data)``: writes all of ``data`` (retrying short writes), returns ``len(data)``."""

    def writeall(self, value: Any) -> int:
        view = memoryview(value).cast("B")
        total = len(view)
        while view:
            written = super().write(view)
            view = view[written or 0 :]
        return total


class WriteIsWriteallMixin(WriteallMixin):
    """``write`` never writes short: it is ``writeall``."""

    def write(self, value: Any) -> int:
        return self.writeall(value)


class FileIO(io.FileIO):
    """The raw file `OpenDescriptor` opens: a subclass, so that ``atomic_write`` can change its class."""


class WriteallFileIO(WriteIsWriteallMixin, FileIO):
    """A FileIO whose ``write`` writes everything."""


_MODE_LETTERS = frozenset("axrwb+tU")


def _prefer(new_name: str, new: Any, old_name: str, old: Any, default: Any) -> Any:
    """The value given under the current keyword or its older spelling (not both), else ``default``."""
    if new is not None and old is not None:
        raise TypeError(f"Cannot specify both {new_name}={new} and {old_name}={old}")
    if new is not None:
        return new
    return default if old is None else old


class OpenDescriptor:
    """``open()``'s arguments, checked as ``open()`` checks them, and the io stack they describe (`opened`).

    ``bufsize`` and ``close`` are gevent's older names for ``buffering`` and ``closefd``. A path is always closed
    with the file. 'U' (universal newlines, removed from ``open()`` in Python 3.11) is still accepted for reading.
    """

    default_buffer_size = io.DEFAULT_BUFFER_SIZE

    def __init__(
        self,
        fobj: Any,
        mode: str = "r",
        bufsize: Optional[int] = None,
        close: Optional[bool] = None,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
        buffering: Optional[int] = None,
        closefd: Optional[bool] = None,
        atomic_write: bool = False,
    ) -> None:
        closefd = _prefer("closefd", closefd, "close", close, True)
        buffering = _prefer("buffering", buffering, "bufsize", bufsize, -1)
        if not hasattr(fobj, "fileno"):
            if not isinstance(fobj, int):
                fobj = os.fspath(fobj)
            if isinstance(fobj, (str, bytes)):
                closefd = True  # we open it, so we close it
        self._check_types(mode, buffering, encoding, errors)
        letters = set(mode)
        if letters - _MODE_LETTERS or len(mode) > len(letters):
            raise ValueError(f"invalid mode: {mode!r}")
        self.creating, self.reading, self.writing = "x" in letters, "r" in letters, "w" in letters
        self.appending, self.updating = "a" in letters, "+" in letters
        self.text, self.binary, self.universal = "t" in letters, "b" in letters, "U" in letters
        self.can_write = self.creating or self.writing or self.appending or self.updating
        if self.universal:
            if self.can_write:
                raise ValueError("mode U cannot be combined with 'x', 'w', 'a', or '+'")
            self.reading = True
        self._check_mode(encoding, errors, newline, buffering)
        self._fobj = fobj
        self.fileio_mode = "".join(
            letter
            for letter, wanted in zip(
                "xrwa+", (self.creating, self.reading, self.writing, self.appending, self.updating)
            )
            if wanted
        )
        self.mode = self.fileio_mode + ("t" if self.text else "") + ("b" if self.binary else "")
        self.can_read = self.reading or self.updating
        # Neither 't' nor 'b' and no codec: the platform's str (on Python 3, text).
        self.native = not (self.text or self.binary or encoding or errors)
        self.buffering = buffering
        self.encoding = encoding
        self.errors = errors
        self.newline = newline
        self.closefd = closefd
        self.atomic_write = atomic_write
        self._opened: Any = None
        self._opened_raw: Any = None

    @staticmethod
    def _check_types(mode: Any, buffering: Any, encoding: Any, errors: Any) -> None:
        for name, value, kind in (("mode", mode, str), ("buffering", buffering, int)):
            if not isinstance(value, kind):
                raise TypeError(f"invalid {name}: {value!r}")
        for name, value in (("encoding", encoding), ("errors", errors)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"invalid {name}: {value!r}")

    def _check_mode(self, encoding: Any, errors: Any, newline: Any, buffering: int) -> None:
        if self.text and self.binary:
            raise ValueError("can't have text and binary mode at once")
        if self.creating + self.reading + self.writing + self.appending > 1:
            raise ValueError("can't have read/write/append mode at once")
        if not (self.creating or self.reading or self.writing or self.appending):
            raise ValueError("must have exactly one of read/write/append mode")
        if self.binary:
            for name, value in (("an encoding", encoding), ("an errors", errors), ("a newline", newline)):
                if value is not None:
                    raise ValueError(f"binary mode doesn't take {name} argument")
            if buffering == 1:
                warnings.warn(
                    "line buffering (buffering=1) isn't supported in binary mode, the default buffer size will be used",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def is_fd(self) -> bool:
        """Whether the object to open is a file descriptor."""
        return isinstance(self._fobj, int)

    def opened(self) -> Any:
        """The whole io stack (raw, buffer, text), made on first call; the raw file is closed if that fails."""
        if self._opened is None:
            raw = self.opened_raw()
            try:
                self._opened = self._wrapped(raw)
            except BaseException:
                raw.close()
                raise
        return self._opened

    def opened_raw(self) -> Any:
        """The raw file at the bottom of the stack, made on first call."""
        if self._opened_raw is None:
            self._opened_raw = self._do_open_raw()
        return self._opened_raw

    def _do_open_raw(self) -> Any:
        if hasattr(self._fobj, "fileno"):
            return self._fobj  # the caller's object: used as it is
        return FileIO(self._fobj, self.fileio_mode, self.closefd)

    def _raw_object_is_new(self, raw: Any) -> bool:
        return raw is not self._fobj

    @staticmethod
    def is_buffered(stream: Any) -> bool:
        """Whether ``stream`` buffers by itself (a buffered or text io object, or one with a ``buffer``)."""
        return isinstance(stream, (io.BufferedIOBase, io.TextIOBase)) or getattr(stream, "buffer", None) is not None

    @classmethod
    def buffer_size_for_stream(cls, stream: Any) -> int:
        """The fd's preferred block size, as ``open()`` picks it; the default where it has none."""
        try:
            size = os.fstat(stream.fileno()).st_blksize
        except (OSError, AttributeError):
            return cls.default_buffer_size
        return size if size > 1 else cls.default_buffer_size

    def _buffer_class(self) -> type:
        if self.updating:
            return io.BufferedRandom
        if self.creating or self.writing or self.appending:
            return io.BufferedWriter
        return io.BufferedReader

    def _wrapped(self, raw: Any) -> Any:
        """``raw`` with the buffer and text layers the mode asks for (none it already has)."""
        if self.binary and isinstance(raw, io.TextIOBase):
            raise ValueError("Unable to perform binary IO on top of text IO stream")
        buffering = self.buffering
        line_buffering = buffering == 1 or (buffering < 0 and raw.isatty())
        if line_buffering or buffering < 0:
            buffering = self.buffer_size_for_stream(raw)
        stream = raw
        if buffering and not self.is_buffered(raw):
            stream = self._buffer_class()(raw, buffering)
        if not self.binary and not isinstance(raw, io.TextIOBase):
            stream = io.TextIOWrapper(stream, self.encoding, self.errors, self.newline, line_buffering)
        if stream is not raw or self._raw_object_is_new(raw):
            try:
                stream.mode = self.mode
            except (AttributeError, TypeError):  # the buffered layers' mode is their raw file's, read-only
                pass
        if self.atomic_write and not self.is_buffered(stream) and not isinstance(stream, WriteIsWriteallMixin):
            stream = self._make_atomic_write(stream, raw)
        return stream

    def _make_atomic_write(self, stream: Any, raw: Any) -> Any:
        """Gives the unbuffered ``stream`` a ``write`` that writes everything, by changing its class."""
        if stream is raw and not self._raw_object_is_new(raw):
            return stream  # the caller's own object: not ours to change
        if type(stream) is not FileIO:
            raise NotImplementedError(f"cannot make writes to {stream!r} atomic")
        stream.__class__ = WriteallFileIO
        return stream


class _ClosedIO:
    """Stands for the io stack after close: keeps its ``name``, answers anything else with FileObjectClosed."""

    __slots__ = ("name",)

    def __init__(self, stream: Any) -> None:
        try:
            self.name = stream.name
        except AttributeError:
            pass

    def __getattr__(self, name: str) -> Any:
        if name == "name":
            raise AttributeError(name)
        raise FileObjectClosed

    def __bool__(self) -> bool:
        return False


class FileObjectBase:
    """A file object over the io stack an `OpenDescriptor` opens; the subclasses say how calls reach it."""

    #: The stack's methods a file object offers as its own (those the stack has).
    _delegate_methods = (
        "flush",
        "fileno",
        "writable",
        "readable",
        "seek",
        "seekable",
        "tell",
        "read",
        "readline",
        "readlines",
        "read1",
        "readinto",
        "write",
        "writeall",
        "writelines",
        "truncate",
    )

    _io: Any = None

    def __init__(self, descriptor: OpenDescriptor) -> None:
        self._io = descriptor.opened()
        self._close = descriptor.closefd
        self._do_delegate_methods()

    @property
    def io(self) -> Any:
        """The io stack this object wraps. Setting it wraps another one."""
        return self._io

    @io.setter
    def io(self, stream: Any) -> None:
        self._io = stream
        self._do_delegate_methods()

    def _do_delegate_methods(self) -> None:
        for name in self._delegate_methods:
            if hasattr(type(self), name):
                continue  # the class has its own
            method = getattr(self._io, name, None)
            if method is not None:
                setattr(self, name, self._wrap_method(method))
            else:
                self.__dict__.pop(name, None)

    def _wrap_method(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """How a method of the stack is offered (as it is, here)."""
        return method

    @property
    def closed(self) -> bool:
        """True once the file object is closed."""
        return isinstance(self._io, _ClosedIO)

    def close(self) -> None:
        """Closes the file object (and the file, if it owns it); a second close does nothing."""
        if self.closed:
            return
        stream, self._io = self._io, _ClosedIO(self._io)
        try:
            self._do_close(stream, self._close)
        finally:
            for name in self._delegate_methods:
                self.__dict__.pop(name, None)

    def _do_close(self, stream: Any, closefd: bool) -> None:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_io":
            raise AttributeError(name)
        return getattr(self._io, name)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ""
        return f"<{type(self).__name__} at {hex(id(self))} {state}_fobj={self._io!r}{self._extra_repr()}>"

    def _extra_repr(self) -> str:
        return ""

    def __enter__(self) -> FileObjectBase:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __iter__(self) -> FileObjectBase:
        return self

    def __next__(self) -> Any:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __bool__(self) -> bool:
        return True


class FileObjectBlock(FileObjectBase):
    """A file object that calls the file directly: it blocks the whole thread, as a plain file does.

    Takes the arguments of ``open``; for testing and for files known never to block.
    """

    def __init__(self, fobj: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(OpenDescriptor(fobj, *args, **kwargs))

    def _do_close(self, stream: Any, closefd: bool) -> None:
        stream.close()


def _close_catching(stream: Any) -> Optional[BaseException]:
    try:
        stream.close()
    except Exception as error:
        return error
    return None


class FileObjectThread(FileObjectBase):
    """A file object whose every operation runs in a thread pool (the hub's by default), so that only the calling
    greenlet waits for it; works with any file, regular files included.

    Takes the arguments of ``open``, and ``threadpool`` (the pool to use) and ``lock``: True (the default)
    runs one operation at a time, False lets them overlap, or pass a semaphore of your own. Closing flushes and
    (with ``closefd``) closes in the pool too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        lock = kwargs.pop("lock", True)
        threadpool = kwargs.pop("threadpool", None)
        descriptor = OpenDescriptor(*args, **kwargs)
        self.threadpool = threadpool or get_hub().threadpool
        if lock is True:
            lock = Semaphore()
        elif not lock:
            lock = DummySemaphore()
        if not hasattr(lock, "__enter__"):
            raise TypeError(f"Expected a Semaphore or boolean, got {type(lock)!r}")
        self.lock = lock
        # Shared with the wrapped methods, which must not refer to self (no cycle): None once closed.
        self._live = [None]
        super().__init__(descriptor)

    def _do_delegate_methods(self) -> None:
        super()._do_delegate_methods()
        self._live[0] = self._io

    def _wrap_method(self, method: Callable[..., Any]) -> Callable[..., Any]:
        live, lock, pool = self._live, self.lock, self.threadpool

        @functools.wraps(method)
        def in_pool(*args: Any, **kwargs: Any) -> Any:
            if live[0] is None:
                raise FileObjectClosed  # without a trip to the pool
            with lock:
                return pool.apply(method, args, kwargs)

        return in_pool

    def _do_close(self, stream: Any, closefd: bool) -> None:
        self._live[0] = None
        try:
            with self.lock:
                self.threadpool.apply(stream.flush)
        finally:
            if closefd:
                # Not under the lock: a close must not wait behind a read that may never end. Its error is raised
                # here, not reported by the pool as well.
                error = self.threadpool.apply(_close_catching, (stream,))
                if error is not None:
                    raise error

    def _extra_repr(self) -> str:
        return f" threadpool={self.threadpool!r}"
