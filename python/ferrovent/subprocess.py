"""Cooperative subprocess: the stdlib's module, with a Popen whose waits and pipes park the greenlet.

``wait()`` waits for the child's exit with `ferrovent.os.wait_child_exit` (a pidfd on Linux); the pipes to the
child are `ferrovent.fileobject` files, buffered as Popen's ``bufsize`` asks; ``communicate()`` moves the data
with one greenlet per pipe. A ferrovent pipe or socket given to a child as its stdin, stdout or stderr is made
blocking first, for the child's sake (and so for its parent too: the flag is shared), as gevent's children do.
``run``, ``call``, ``check_call``, ``check_output``, ``getoutput`` and ``getstatusoutput`` are the stdlib's own
functions, bound to this module's Popen.
"""

from __future__ import annotations

import io
import os
import subprocess as _subprocess
import time
import types
from collections.abc import Sequence
from subprocess import *  # noqa: F403  (every public name of the stdlib module)
from subprocess import CalledProcessError, CompletedProcess, SubprocessError, TimeoutExpired  # noqa: F401
from typing import Any, Callable

from ferrovent._core import sleep
from ferrovent._fileobjectposix import GreenFileIO, GreenOpenDescriptor
from ferrovent.event import AsyncResult
from ferrovent.fileobject import FileObject  # noqa: F401  (gevent's subprocess module offers it)
from ferrovent.greenlet import Greenlet, joinall, killall
from ferrovent.os import wait_child_exit

__implements__ = ["Popen", "call", "check_call", "check_output", "run", "getoutput", "getstatusoutput"]
#: The rest of the stdlib's public names, which are its own objects here.
__imports__ = [name for name in _subprocess.__all__ if name not in __implements__]
__all__ = __implements__ + __imports__

_READ_SIZE = 32768
_WRITE_SIZE = 65536


def _green_pipe(fileobj, writing, bufsize):
    """Replaces one of Popen's pipe file objects with a cooperative one, layered as Popen layered it."""
    if fileobj is None:
        return None
    # Binary here (the text layer is remade below, as Popen made it); Popen's bufsize=1 means line buffering,
    # which only that text layer does. Unbuffered writes write everything, as they do to a blocking pipe.
    buffering = -1 if bufsize == 1 else bufsize
    mode = "wb" if writing else "rb"
    binary = GreenOpenDescriptor(os.dup(fileobj.fileno()), mode, buffering=buffering, atomic_write=writing).opened()
    if isinstance(fileobj, io.TextIOWrapper):
        replacement = io.TextIOWrapper(
            binary,
            encoding=fileobj.encoding,
            errors=fileobj.errors,
            line_buffering=fileobj.line_buffering,
            write_through=fileobj.write_through,
        )
    else:
        replacement = binary
    fileobj.close()
    return replacement


def _raw(pipe):
    """The cooperative raw file under a pipe's text and buffered layers. For a file object Popen did not make (one
    that replaced ``proc.stdin``, say), a raw file over its ``fileno()`` that leaves the fd open."""
    while isinstance(pipe, (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter)):
        pipe = pipe.buffer if isinstance(pipe, io.TextIOWrapper) else pipe.raw
    if isinstance(pipe, GreenFileIO):
        return pipe
    return GreenFileIO(pipe.fileno(), "wb" if pipe.writable() else "rb", closefd=False)


class Popen(_subprocess.Popen):
    """subprocess.Popen whose wait(), communicate() and pipes cooperate with other greenlets.

    It can be waited on as greenlets are (``ferrovent.wait([popen])``, ``iwait``): `rawlink` calls back once the
    child has exited and been reaped. Leaving a ``with`` block stops the greenlets a ``communicate()`` left
    behind, and closes the pipes even while another greenlet of this thread is parked reading one.
    """

    _communicating_greenlets = None  # communicate()'s greenlets, once it started: one per pipe
    _exited = None  # AsyncResult set to the returncode, made by the first rawlink

    def __init__(
        self,
        args: str | bytes | os.PathLike[Any] | Sequence[str | bytes | os.PathLike[Any]],
        bufsize: int | None = -1,
        *more: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(args, bufsize, *more, **kwargs)
        bufsize = -1 if bufsize is None else bufsize
        self.stdin = _green_pipe(self.stdin, True, bufsize)
        self.stdout = _green_pipe(self.stdout, False, bufsize)
        self.stderr = _green_pipe(self.stderr, False, bufsize)

    def _get_handles(self, stdin, stdout, stderr):
        handles = super()._get_handles(stdin, stdout, stderr)
        p2cread, _, _, c2pwrite, _, errwrite = handles
        # The child's stdio must block, as programs expect (gevent's child clears the flag too). A ferrovent pipe
        # or socket passed as stdin/stdout/stderr is non-blocking, and that flag belongs to the open file, which
        # the child shares: it is cleared, for the parent's file object as well.
        for fd in {p2cread, c2pwrite, errwrite} - {-1}:
            if not os.get_blocking(fd):
                os.set_blocking(fd, True)
        return handles

    def rawlink(self, callback: Callable[[Popen], object]) -> None:
        """Calls ``callback(self)`` in the hub once the child has exited (``returncode`` is then set)."""
        if self._exited is None:
            self._exited = AsyncResult()
            self._exit_links = {}
            Greenlet.spawn(self._report_exit)
        relay = self._exit_links[callback] = lambda _result: callback(self)
        self._exited.rawlink(relay)

    def unlink(self, callback: Callable[[Popen], object]) -> None:
        """Removes a callback added by `rawlink`."""
        relay = self._exit_links.pop(callback, None) if self._exited is not None else None
        if relay is not None:
            self._exited.unlink(relay)

    def _report_exit(self):
        self._exited.set(self.wait())

    def __exit__(
        self, exc_type: type[BaseException] | None, value: BaseException | None, traceback: types.TracebackType | None
    ) -> None:
        # communicate()'s greenlets are stopped first; a greenlet of ours parked reading a pipe through its buffered
        # layer holds that layer's lock, which close() would find taken ("reentrant call"): its raw file is closed
        # instead, waking it with EBADF, and it gets to run (and leave the layer) before the stdlib's __exit__.
        if self._communicating_greenlets:
            killall([worker for worker in self._communicating_greenlets if not worker.dead])
        busy = False
        for pipe in (self.stdout, self.stderr):
            if pipe:
                try:
                    pipe.close()
                except RuntimeError:
                    _raw(pipe).close()
                    busy = True
        if busy:
            sleep(0)
        super().__exit__(exc_type, value, traceback)

    def _wait(self, timeout):
        if self.returncode is not None:
            return self.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status = self._try_wait(os.WNOHANG)
            if pid == self.pid:
                self._handle_exitstatus(status)
                return self.returncode
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutExpired(self.args, timeout)
            wait_child_exit(self.pid, remaining)

    # communicate() moves the data as the stdlib's does, through the pipes' fds (their raw files) rather than their
    # buffered layers, one greenlet per pipe. A greenlet waiting on a pipe therefore holds no buffered layer's lock:
    # after a timeout the caller may close the pipes (Popen.__exit__ does) and the waiting greenlets just stop.

    def _communicate(self, input, endtime, orig_timeout):
        if not self._communication_started:
            self._fileobj2output = {pipe: [] for pipe in (self.stdout, self.stderr) if pipe}
            self._save_input(input)
            feeder = [Greenlet.spawn(self._feed_stdin)] if self.stdin else []
            drainers = [Greenlet.spawn(self._drain, pipe) for pipe in self._fileobj2output]
            self._communicating_greenlets = feeder + drainers
        workers = self._communicating_greenlets
        remaining = self._remaining_time(endtime)
        done = joinall(workers, timeout=remaining)
        if len(done) < len(workers):
            # As the stdlib's: the output so far, as bytes (or None if there is none).
            stdout, stderr = (b"".join(self._fileobj2output.get(p, ())) or None for p in (self.stdout, self.stderr))
            raise TimeoutExpired(self.args, orig_timeout, output=stdout, stderr=stderr)
        for worker in workers:
            worker.get()  # re-raise a pipe error, as the stdlib would
        self.wait(timeout=self._remaining_time(endtime))
        return self._collected(self.stdout), self._collected(self.stderr)

    def _collected(self, pipe):
        if pipe is None:
            return None
        data = b"".join(self._fileobj2output[pipe])
        return self._translate_newlines(data, pipe.encoding, pipe.errors) if self.text_mode else data

    def _feed_stdin(self):
        # As the stdlib's: a BrokenPipeError (the child stopped reading) ends the feeding quietly, whether it comes
        # from the flush, a write or the close.
        try:
            self.stdin.flush()
        except BrokenPipeError:
            pass
        if self._input:  # already bytes: _save_input encodes text
            raw = _raw(self.stdin)
            view = memoryview(self._input)
            try:
                while self._input_offset < len(view):
                    chunk = view[self._input_offset : self._input_offset + _WRITE_SIZE]
                    self._input_offset += raw.write(chunk) or 0
            except BrokenPipeError:
                pass
            except (OSError, ValueError):
                if not raw.closed:
                    raise
                return  # closed by the caller meanwhile: there is nothing left to feed
        try:
            self.stdin.close()
        except BrokenPipeError:
            pass

    def _drain(self, pipe):
        chunks = self._fileobj2output[pipe]
        raw = _raw(pipe)
        try:
            while True:
                chunk = raw.read(_READ_SIZE)
                if not chunk:
                    break
                chunks.append(chunk)
        except (OSError, ValueError):
            if not raw.closed:
                raise
            return  # closed by the caller meanwhile (after a timeout): what was read is kept
        pipe.close()


def _with_this_popen(function):
    """The stdlib function's own code, looking names up in this module, so it creates this module's Popen."""
    for name in function.__code__.co_names:  # the stdlib's private helpers it refers to
        if name not in globals() and hasattr(_subprocess, name):
            globals()[name] = getattr(_subprocess, name)
    bound = types.FunctionType(
        function.__code__, globals(), function.__name__, function.__defaults__, function.__closure__
    )
    bound.__kwdefaults__ = function.__kwdefaults__
    bound.__doc__ = function.__doc__
    return bound


run = _with_this_popen(_subprocess.run)
call = _with_this_popen(_subprocess.call)
check_call = _with_this_popen(_subprocess.check_call)
check_output = _with_this_popen(_subprocess.check_output)
getstatusoutput = _with_this_popen(_subprocess.getstatusoutput)
getoutput = _with_this_popen(_subprocess.getoutput)
