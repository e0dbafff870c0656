"""A Python prompt over TCP into the running program, for debugging (gevent's ``gevent.backdoor``).

``BackdoorServer(('127.0.0.1', 5001), banner="hello", locals={'app': app}).serve_forever()``, then
``telnet 127.0.0.1 5001`` (or ``nc``): each connection gets an interactive console (``code.InteractiveConsole``)
running in a greenlet of its own, with its own copy of ``locals``. There is no authentication: anyone who can
connect can do anything the process can, so bind it to 127.0.0.1 or a Unix socket only.

While a connection's greenlet runs, ``sys.stdin``, ``sys.stdout`` and ``sys.stderr`` are that connection (what
the console prints, ``print`` calls, tracebacks, ``input()``); every other greenlet still sees the program's own
streams. gevent swaps the ``sys`` attributes each time the greenlet is switched in; ferrovent switches greenlets
from Rust, past any Python-level ``switch``, so instead, while a connection is open, the three ``sys`` attributes
are stand-ins that forward each call to the stream of the greenlet making it.
"""

from __future__ import annotations

import builtins
import socket
import sys
from code import InteractiveConsole
from typing import Any, Optional

from greenlet import getcurrent

from ferrovent.pool import Pool
from ferrovent.server import StreamServer

__all__ = ["BackdoorServer"]

_STREAMS = ("stdin", "stdout", "stderr")


class _ConnectionStream:
    """One connection as a text stream: writes go straight to the socket (so the user sees them without a flush),
    lines are read through the socket's text file with CRLF turned into LF. Closing it leaves the connection open
    (``quit()`` closes ``sys.stdin``); the server closes the connection when the console ends."""

    encoding = "utf-8"
    softspace = None

    def __init__(self, conn: socket.socket, reader: Any) -> None:
        self.conn = conn
        self.reader = reader

    def write(self, data: Any) -> int:
        if not isinstance(data, bytes):
            data = str(data).encode(self.encoding)
        self.conn.sendall(data)
        return len(data)

    def readline(self, *size: int) -> str:
        try:
            return self.reader.readline(*size).replace("\r\n", "\n")
        except UnicodeError:
            return ""

    def fileno(self) -> int:
        return self.conn.fileno()

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)


class _PerGreenletStream:
    """Stands in for ``sys.<name>``: forwards to the current greenlet's connection, else to ``fallback`` (the
    stream that was there when the first connection opened)."""

    def __init__(self, name: str, fallback: Any) -> None:
        self._name = name
        self._fallback = fallback

    def _target(self) -> Any:
        stream = _connection_streams.get(getcurrent())
        return self._fallback if stream is None else stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def write(self, data: Any) -> Any:
        return self._target().write(data)

    def __repr__(self) -> str:
        return f"<backdoor per-greenlet {self._name} over {self._fallback!r}>"


_connection_streams: dict = {}  # greenlet -> the stream of the connection it serves


def _redirect(glet: Any, stream: _ConnectionStream) -> None:
    """Makes ``stream`` the standard streams of ``glet``, putting the stand-ins in ``sys`` if they are not there."""
    _connection_streams[glet] = stream
    for name in _STREAMS:
        current = getattr(sys, name)
        if not isinstance(current, _PerGreenletStream):
            setattr(sys, name, _PerGreenletStream(name, current))


def _unredirect(glet: Any) -> None:
    """Ends ``glet``'s redirection; the last one to end puts the program's streams back (unless replaced since)."""
    _connection_streams.pop(glet, None)
    if _connection_streams:
        return
    for name in _STREAMS:
        current = getattr(sys, name)
        if isinstance(current, _PerGreenletStream):
            setattr(sys, name, current._fallback)


class _Console(InteractiveConsole):
    """An interactive console reading its lines from (and writing its prompts to) one connection."""

    def __init__(self, namespace: dict, stream: _ConnectionStream) -> None:
        InteractiveConsole.__init__(self, namespace)
        self.stream = stream

    def raw_input(self, prompt: str = "") -> str:
        self.stream.write(prompt)
        line = self.stream.readline()
        if not line:
            raise EOFError
        return line[:-1] if line.endswith("\n") else line

    def write(self, data: str) -> None:
        self.stream.write(data)


class BackdoorServer(StreamServer):
    """A `StreamServer` that gives each connection an interactive Python console.

    ``locals``: names every console starts with (each connection gets its own copy). ``banner``: text printed to
    each new connection (default: the interpreter's usual banner). Other keyword arguments go to `StreamServer`.
    The consoles run in a `Pool`, so ``stop()`` ends them too.
    """

    def __init__(
        self, listener: Any, locals: Optional[dict] = None, banner: Optional[str] = None, **server_args: Any
    ) -> None:
        StreamServer.__init__(self, listener, spawn=Pool(), **server_args)
        namespace = {"__doc__": None, "__name__": "__console__"}
        if locals:
            namespace.update(locals)
        self.locals = namespace
        self.banner = banner
        self.stderr = sys.stderr

    def _create_interactive_locals(self) -> dict:
        """A fresh namespace for one console: ``locals`` plus the builtins (as the module, which prints briefly)."""
        namespace = dict(self.locals)
        namespace["builtins"] = builtins
        namespace["__builtins__"] = builtins
        return namespace

    def handle(self, conn: socket.socket, _address: Any) -> None:
        """Runs one console on ``conn`` until the user quits or disconnects."""
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        except OSError:  # a Unix socket has no Nagle to turn off
            pass
        reader = conn.makefile(mode="r")
        stream = _ConnectionStream(conn, reader)
        me = getcurrent()
        _redirect(me, stream)
        try:
            _Console(self._create_interactive_locals(), stream).interact(banner=self.banner, exitmsg="")
        except SystemExit:  # quit(), exit() or sys.exit() at the prompt ends this console only
            pass
        finally:
            _unredirect(me)
            reader.close()
            conn.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(f"USAGE: {sys.argv[0]} PORT [banner]")
    else:
        BackdoorServer(
            ("127.0.0.1", int(sys.argv[1])), banner=sys.argv[2] if len(sys.argv) > 2 else None, locals={}
        ).serve_forever()
