"""BaseServer: what every ferrovent server shares (the accept loop, spawning handlers, starting and stopping).

A server owns a listening socket and one acceptor greenlet. The acceptor takes what the socket has (up to
``max_accept`` connections or datagrams per wake-up, each handed to ``spawn`` at once), and when the socket says
EAGAIN it parks until the listener's next readiness edge: one Rust wait, no watcher objects. Each handler runs
in a greenlet of its own; when it returns or raises, its connection is closed (``do_close``), and an exception
is reported by the hub like any greenlet's (traceback, then ``<greenlet> failed with ExcType``). The acceptor
itself never dies of a handler's error.

Compared with gevent's BaseServer, one deliberate difference: ``stop(timeout)`` waits for (and then kills) the
running handlers whatever ``spawn`` is, not only with a pool, so a graceful stop is always graceful.
"""

from __future__ import annotations

import errno
import socket as _stdlib_socket
import sys
from typing import Any, Callable, Optional, Union

from greenlet import GreenletExit, getcurrent

from ferrovent._core import sleep
from ferrovent.event import Event
from ferrovent.greenlet import Greenlet
from ferrovent.hub import get_hub

__all__ = ["BaseServer", "parse_address"]

Address = Union[tuple, str, int]


class BaseServer:
    """The shared part of `StreamServer` and `DatagramServer`; subclasses provide ``do_read`` and ``init_socket``.

    ``listener`` is an address (see `parse_address`) or a socket already bound (and, for TCP, listening).
    ``handle`` is called once per connection (or datagram); subclasses may define a ``handle`` method instead.
    ``spawn`` says how each handler runs: ``'default'`` (a new Greenlet), a Pool (or anything with ``spawn``;
    when it is full the server stops accepting until a slot frees), an int (a Pool of that size), any callable
    ``spawn(function, *args)``, or None (run inline in the acceptor, which must then not block).
    """

    #: After an accept error, the first pause before trying again; it doubles up to ``max_delay`` (seconds).
    min_delay = 0.01
    max_delay = 1.0
    #: How many connections (or datagrams) the acceptor takes per wake-up before letting handlers run.
    max_accept = 100
    #: How long ``stop()`` lets handlers finish by default (seconds).
    stop_timeout = 1.0
    #: Errors of the listening socket that close the server instead of pausing it.
    fatal_errors = (errno.EBADF, errno.EINVAL, errno.ENOTSOCK)

    def __init__(self, listener: Any, handle: Optional[Callable[..., Any]] = None, spawn: Any = "default") -> None:
        self._stop_event = Event()
        self._stop_event.set()
        self._acceptor: Optional[Greenlet] = None
        self._handlers: set = set()
        self._handlers_done = Event()
        self._handlers_done.set()
        self._handle: Optional[Callable[..., Any]] = None
        self.pool: Any = None
        self.delay = self.min_delay
        self.loop = get_hub().loop
        try:
            self.set_listener(listener)
            self.set_spawn(spawn)
            self.set_handle(handle)
            if self.max_accept < 1:
                raise ValueError(f"max_accept must be a positive int: {self.max_accept!r}")
        except BaseException:
            self.close()
            raise

    # -- configuration -----------------------------------------------------------------------------------

    def __enter__(self) -> BaseServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def set_listener(self, listener: Any) -> None:
        """Takes a bound socket as the listener, or remembers an address to bind in ``init_socket``."""
        if hasattr(listener, "accept") or hasattr(listener, "recvfrom"):
            if hasattr(listener, "do_handshake"):
                raise TypeError(f"Expected a plain socket, not an SSLSocket: {listener!r}")
            self.family = listener.family
            self.address = listener.getsockname()
            self.socket = listener
        else:
            self.family, self.address = parse_address(listener)

    def set_spawn(self, spawn: Any) -> None:
        """Chooses how handlers run (see the class docstring)."""
        self.pool = None
        if spawn == "default":
            self._spawn: Optional[Callable[..., Any]] = Greenlet.spawn
        elif hasattr(spawn, "spawn"):
            self.pool = spawn
            self._spawn = spawn.spawn
        elif isinstance(spawn, int) and not isinstance(spawn, bool):
            from ferrovent.pool import Pool  # late: the pool module is optional for servers that never use one

            self.pool = Pool(spawn)
            self._spawn = self.pool.spawn
        else:
            self._spawn = spawn
        if hasattr(self.pool, "full"):
            self.full = self.pool.full  # type: ignore[method-assign]

    def set_handle(self, handle: Optional[Callable[..., Any]]) -> None:
        """Sets the per-connection handler: ``handle`` if given, else the ``handle`` method."""
        if handle is not None:
            self.handle = handle
        if not hasattr(self, "handle"):
            raise TypeError("'handle' must be provided")
        self._handle = self.handle

    def full(self) -> bool:
        """Whether the server is at capacity (a full pool); while it is, nothing is accepted."""
        return False

    # -- the accept loop ---------------------------------------------------------------------------------

    def do_read(self) -> Optional[tuple]:
        """Takes one connection (or datagram) off the socket: the handler's arguments, or None on EAGAIN."""
        raise NotImplementedError

    def do_close(self, *args: Any) -> None:
        """Releases what ``do_read`` returned once its handler is done (StreamServer closes the socket)."""

    def start_accepting(self) -> None:
        """Starts the acceptor greenlet if it is not running."""
        if self._acceptor is None or self._acceptor.dead:
            self._acceptor = Greenlet.spawn(self._accept_forever)
            self._acceptor.name = f"{type(self).__name__} acceptor"

    def stop_accepting(self) -> None:
        """Stops the acceptor greenlet (running handlers go on)."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None and acceptor is not getcurrent():
            acceptor.kill(block=False)

    def _accept_forever(self) -> None:
        """The acceptor: up to ``max_accept`` items per wake-up, then a yield; a wait only after EAGAIN."""
        wait_fd = self.loop.wait_fd
        fd = self.socket.fileno()
        me = getcurrent()
        while self._acceptor is me:
            for _ in range(self.max_accept):
                if self.full():
                    self._wait_for_room()
                    if self._acceptor is not me:
                        return
                try:
                    args = self.do_read()
                    if args is None:
                        wait_fd(fd, False, None, None, True, True)
                        break
                except Exception as error:
                    if self._acceptor is not me or self._accept_failed(error):
                        return  # closed under us (EBADF from the wait), or a fatal error
                    break
                self.delay = self.min_delay
                try:
                    self.do_handle(*args)
                except Exception:
                    get_hub().handle_error((args[1:], self), *sys.exc_info())
                    self._pause()
                    break
                if self._acceptor is not me:
                    return  # an inline handler (spawn=None) stopped the server
            else:
                sleep(0)  # a busy listener: let the handlers just spawned run before taking more

    def _wait_for_room(self) -> None:
        """Parks until the pool has a free slot (or, for a custom ``full()``, polls it)."""
        wait_available = getattr(self.pool, "wait_available", None)
        if wait_available is not None:
            wait_available()
        else:
            while self.full():
                sleep(self.min_delay)

    def _accept_failed(self, error: Exception) -> bool:
        """Reports an accept error; a fatal one closes the server (True), any other pauses the acceptor."""
        get_hub().handle_error(self, type(error), error, error.__traceback__)
        if self.is_fatal_error(error):
            self.close()
            sys.stderr.write(f"ERROR: {self} failed with {str(error) or repr(error)}\n")
            return True
        self._pause()
        return False

    def _pause(self) -> None:
        """Backs off after an error: sleeps ``delay``, then doubles it (up to ``max_delay``)."""
        delay = self.delay
        self.delay = min(self.max_delay, delay * 2)
        sleep(delay)

    def do_handle(self, *args: Any) -> None:
        """Runs the handler for one item through ``spawn``; the item is closed when the handler is done."""
        spawn = self._spawn
        try:
            if spawn is None:
                _handle_and_close(self, args)
            else:
                spawn(_handle_and_close, self, args)
        except BaseException:
            self.do_close(*args)
            raise

    # -- lifecycle ---------------------------------------------------------------------------------------

    def init_socket(self) -> None:
        """Creates, binds (and for TCP, listens on) the socket if only an address was given."""

    @property
    def started(self) -> bool:
        """True between ``start()`` and ``close()``/``stop()``."""
        return not self._stop_event.is_set()

    @property
    def closed(self) -> bool:
        """True once the listening socket is closed."""
        return getattr(self, "socket", None) is None

    def start(self) -> None:
        """Binds if needed and starts accepting in the background; returns at once."""
        self.init_socket()
        self._stop_event.clear()
        try:
            self.start_accepting()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stops accepting and closes the listening socket; handlers already running go on."""
        self._stop_event.set()
        try:
            self.stop_accepting()
        finally:
            sock = getattr(self, "socket", None)
            self.socket = None
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    def stop(self, timeout: Optional[float] = None) -> None:
        """Closes the listener, lets running handlers finish for ``timeout`` seconds (default ``stop_timeout``),
        then kills those still running and waits up to a second for them to die."""
        self.close()
        if timeout is None:
            timeout = self.stop_timeout
        if getcurrent() in self._handlers:
            return  # a handler stopping its own server cannot wait for itself
        if self._handlers_done.wait(timeout):
            return
        for handler in list(self._handlers):
            kill = getattr(handler, "kill", None)
            if kill is not None:
                kill(block=False)
            else:
                self.loop.throw(handler, GreenletExit())
        self._handlers_done.wait(1.0)

    def serve_forever(self, stop_timeout: Optional[float] = None) -> None:
        """Starts (if needed) and blocks until the server is stopped; then stops it with ``stop_timeout``."""
        if not self.started:
            self.start()
        try:
            self._stop_event.wait()
        finally:
            Greenlet.spawn(self.stop, timeout=stop_timeout).join()

    def is_fatal_error(self, error: BaseException) -> bool:
        """Whether an accept error means the listener is gone for good."""
        return isinstance(error, OSError) and error.errno in self.fatal_errors

    # -- description -------------------------------------------------------------------------------------

    @property
    def server_host(self) -> Optional[str]:
        """The host the server is bound to (None for a Unix socket)."""
        return self.address[0] if isinstance(self.address, tuple) else None

    @property
    def server_port(self) -> Optional[int]:
        """The port the server is bound to (None for a Unix socket)."""
        return self.address[1] if isinstance(self.address, tuple) else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))} {self._formatinfo()}>"

    def __str__(self) -> str:
        return f"<{type(self).__name__} {self._formatinfo()}>"

    def _formatinfo(self) -> str:
        sock = getattr(self, "socket", None)
        parts = []
        if sock is not None:
            try:
                parts.append(f"fileno={sock.fileno()}")
            except OSError as error:
                parts.append(str(error))
        address = getattr(self, "address", None)
        if isinstance(address, tuple) and len(address) == 2:
            parts.append(f"address={address[0]}:{address[1]}")
        else:
            parts.append(f"address={address}")
        handle = self.__dict__.get("handle")
        if handle is not None:
            if getattr(handle, "__self__", None) is self:
                parts.append(f"handle=<bound method {type(self).__name__}.{handle.__name__} of self>")
            else:
                parts.append(f"handle={handle!r}")
        return " ".join(parts)


def _handle_and_close(server: BaseServer, args: tuple) -> Any:
    """The body of every handler greenlet: tracked while it runs, so ``stop()`` can wait for it.

    A plain function, not a bound method, and the usual two arguments passed as a plain call: each parked handler
    keeps on its saved C stack whatever C frames lie under its wait, and CPython 3.11 runs a plain call to a Python
    function in its caller's C frame, where a bound method's call adds a C frame and ``handle(*args)`` a whole new
    interpreter C frame (about 400 bytes per idle connection between them).
    """
    current = getcurrent()
    handlers = server._handlers
    if not handlers:
        server._handlers_done.clear()
    handlers.add(current)
    handle = server._handle
    try:
        if len(args) == 2:
            return handle(args[0], args[1])  # type: ignore[misc]
        return handle(*args)  # type: ignore[misc]
    finally:
        handlers.discard(current)
        if not handlers:
            server._handlers_done.set()
        server.do_close(*args)


def parse_address(address: Address) -> tuple[int, Any]:
    """``(family, address)`` for a listener address.

    Accepted: a tuple (``('', 8080)``, ``('::1', 8080)``), ``'host:port'``, ``':port'``, ``'[v6]:port'``,
    ``'*:port'``, a bare port (int or digits: all interfaces, IPv6 dual-stack), or a Unix socket path (a string
    containing ``/``).
    """
    try:
        return _parse_address(address)
    except ValueError as error:
        raise ValueError(f"Failed to parse address {address!r}: {error}") from None


def _parse_address(address: Address) -> tuple[int, Any]:
    if isinstance(address, tuple):
        if not address[0] or ":" in address[0]:
            return _stdlib_socket.AF_INET6, address
        return _stdlib_socket.AF_INET, address
    if isinstance(address, int) and not isinstance(address, bool):
        return _stdlib_socket.AF_INET6, ("", address)
    if not isinstance(address, str):
        raise TypeError(f"Expected a tuple or a string, got {type(address).__name__}")
    if "/" in address and hasattr(_stdlib_socket, "AF_UNIX"):
        return _stdlib_socket.AF_UNIX, address
    if ":" not in address:
        return _stdlib_socket.AF_INET6, ("", int(address))
    host, port = address.rsplit(":", 1)
    family = _stdlib_socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        family, host = _stdlib_socket.AF_INET6, host[1:-1]
    if host == "*":
        host = ""
    return family, (host, int(port))
