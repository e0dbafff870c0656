"""Cooperative sockets: the stdlib ``socket`` module, except that blocking parks only the calling greenlet.

Every public name of ``socket`` is here. The socket class is a subclass of the stdlib's, so it is everything a
``socket.socket`` is, and the stdlib's Python-level methods (``makefile``, ``dup``, ``sendfile``'s fallback,
``__repr__``) run unchanged on top of the methods overridden here.

How blocking works: the file descriptor is always non-blocking underneath (the C-level timeout is 0), and the
timeout the user set is kept in Python. An I/O method first tries the system call; only when it fails with
EAGAIN does it park in the loop until the fd's next readiness edge (``loop.wait_fd``) and retry. ``recv``,
``recv_into``, ``send``, ``sendall`` and ``accept`` do all of that in one Rust call (rust/sockops.rs: the system
call, the wait, the timeout, EINTR and the stdlib's errors), with no exception raised for EAGAIN and no per-wait
objects.
``settimeout``, ``setblocking`` and ``setdefaulttimeout`` behave exactly as the stdlib's: ``None`` blocks (the
greenlet), ``0`` raises BlockingIOError, a number raises ``socket.timeout`` ("timed out") once it has passed; for
``sendall`` and ``connect`` the timeout bounds the whole call, as in the stdlib.

Two greenlets waiting to read (or to write) the same socket at once is an error (ConcurrentObjectUseError), as in
gevent. Closing a socket wakes the greenlets waiting on it with OSError(EBADF).

Extensions, as in gevent: `wait_read`, `wait_write`, `wait_readwrite`, `wait` (on a watcher) and `cancel_wait`;
on the socket, ``ref`` (false: its waits do not keep the loop alive) and ``send(..., timeout=)`` (this call's own
timeout instead of the socket's).
"""

from __future__ import annotations

import _socket
import socket as __socket__
from errno import EAGAIN, EALREADY, EBADF, EINPROGRESS, EWOULDBLOCK
from functools import partial
from operator import index as _index
from os import strerror as _strerror
from time import monotonic as _monotonic
from typing import Any, Optional

from ferrovent import resolver as _resolver
from ferrovent import selectors as _cooperative_selectors
from ferrovent._core import sock_accept as _accept
from ferrovent._core import sock_recv as _recv
from ferrovent._core import sock_recv_into as _recv_into
from ferrovent._core import sock_send as _send
from ferrovent._core import sock_sendall as _sendall
from ferrovent._stdlib import copy_public_names, rebind, rebind_users
from ferrovent.exceptions import ConcurrentObjectUseError
from ferrovent.hub import Hub, get_hub
from ferrovent.os import _forget_fd
from ferrovent.select import _wait_any
from ferrovent.timeout import Timeout

copy_public_names(__socket__, globals(), extra=("_GLOBAL_DEFAULT_TIMEOUT",))

_timeout_error = __socket__.timeout
_NONE: Any = object()

# The C methods, looked up once: the hot paths call them directly.
_sock_sendto = _socket.socket.sendto
_sock_connect = _socket.socket.connect
_sock_connect_ex = _socket.socket.connect_ex
_sock_fileno = _socket.socket.fileno
_sock_settimeout = _socket.socket.settimeout
_sock_gettimeout = _socket.socket.gettimeout
_sock_close = _socket.socket.close
_sock_family = _socket.socket.family.__get__
_sock_type = _socket.socket.type.__get__
_sock_proto = _socket.socket.proto.__get__
_sock_finalize = _socket.socket.__del__
_getdefaulttimeout = _socket.getdefaulttimeout
_inet_pton = _socket.inet_pton
_IP_FAMILIES = (_socket.AF_INET, _socket.AF_INET6)
# A call given this flag never blocks, whatever the socket's timeout: it raises BlockingIOError, as in the stdlib.
_MSG_DONTWAIT = getattr(_socket, "MSG_DONTWAIT", 0)
_CONNECTING = (EINPROGRESS, EALREADY, EWOULDBLOCK)
_INF = float("inf")  # settimeout's bound, made once: some clients set the timeout around every read


def _resolve(sock: socket, address: Any) -> Any:
    """``address`` with its host name resolved without blocking the loop; numeric hosts pass through as given.

    Only AF_INET/AF_INET6 (host, port[, flowinfo, scope_id]) tuples are resolved; the C socket would otherwise
    call the system resolver itself, blocking the whole thread.
    """
    family = _sock_family(sock)
    if family not in _IP_FAMILIES or type(address) is not tuple or len(address) < 2:
        return address
    host = address[0]
    if type(host) is not str or host in ("", "<broadcast>"):
        return address
    try:
        _inet_pton(family, host)
        return address
    except (OSError, ValueError):
        pass
    resolved = _resolver.getaddrinfo(host, None, family)[0][4]
    return (resolved[0], address[1], *address[2:])


class socket(__socket__.socket):
    """A stdlib socket whose blocking calls park only the current greenlet."""

    __slots__ = ("_timeout", "_unreferenced")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: Optional[int] = None) -> None:
        super().__init__(family, type, proto, fileno)
        self._timeout = _sock_gettimeout(self)  # the default timeout, as the C socket just set it
        self._unreferenced = False  # read by every wait (rust/sockops.rs): set, so reading it never raises
        _sock_settimeout(self, 0.0)

    def __del__(self) -> None:
        # A socket dropped without close() is closed by the C finalizer; the loop must forget the fd first, or a
        # new fd with the same number would inherit its registration.
        try:
            _forget_fd(_sock_fileno(self))
        except Exception:  # interpreter shutdown: module globals may be gone, and the fd dies with the process
            pass
        _sock_finalize(self)

    # -- timeouts, emulated ------------------------------------------------------------------------------

    def settimeout(self, value: Optional[float]) -> None:
        """Sets the timeout of blocking calls: None blocks, 0.0 never blocks, else seconds (as the stdlib)."""
        if value is None:
            self._timeout = None
        elif type(value) in (float, int) and 0 <= value < _INF:
            self._timeout = float(value)
        else:  # let the C socket validate odd values and produce the stdlib's exact errors
            _sock_settimeout(self, value)
            value = _sock_gettimeout(self)
            _sock_settimeout(self, 0.0)
            self._timeout = value

    def gettimeout(self) -> Optional[float]:
        """The timeout in seconds, or None."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """``setblocking(True)`` is ``settimeout(None)``, ``setblocking(False)`` is ``settimeout(0.0)``."""
        self._timeout = None if _index(flag) else 0.0

    def getblocking(self) -> bool:
        """False only when the timeout is 0.0."""
        return self._timeout != 0.0

    @property
    def timeout(self) -> Optional[float]:
        """The timeout, as ``gettimeout()`` returns it."""
        return self._timeout

    @property
    def closed(self) -> bool:
        """True once the socket is closed."""
        return self._closed

    @property
    def hub(self) -> Hub:
        """The hub its waits park in: the calling thread's."""
        return get_hub()

    @property
    def _sock(self) -> socket:
        """gevent's sockets wrap the C-level socket object here, and some libraries reach for it; a ferrovent
        socket is that object itself."""
        return self

    @property
    def ref(self) -> bool:
        """True (the default) if a greenlet waiting on this socket keeps the loop running; set it to False for a
        socket whose waits alone should not keep the program alive."""
        return not getattr(self, "_unreferenced", False)

    @ref.setter
    def ref(self, value: bool) -> None:
        self._unreferenced = not value

    # -- waiting ------------------------------------------------------------------------------------------

    def _wait_and_retry(self, op: Any, writable: bool, *args: Any, timeout: Any = _NONE) -> Any:
        """After ``op`` failed with EAGAIN: waits for the fd, retries, and so on until it succeeds or times out
        (after the socket's timeout, or ``timeout`` if given)."""
        if timeout is _NONE:
            timeout = self._timeout
        wait_fd = get_hub().loop.wait_fd
        fd = _sock_fileno(self)
        referenced = self.ref
        if timeout is None:
            while True:
                wait_fd(fd, writable, None, None, referenced, True)
                try:
                    return op(self, *args)
                except BlockingIOError:
                    pass
        deadline = _monotonic() + timeout
        while True:
            if not wait_fd(fd, writable, timeout, None, referenced, True):
                raise _timeout_error("timed out")
            try:
                return op(self, *args)
            except BlockingIOError:
                timeout = deadline - _monotonic()
                if timeout <= 0:
                    raise _timeout_error("timed out") from None

    # -- receiving ----------------------------------------------------------------------------------------
    # recv, recv_into, send, sendall and accept are in Rust (rust/sockops.rs); the rest come from _cooperative_method.

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receives up to ``bufsize`` bytes; b"" at end of stream."""
        return _recv(self, bufsize, flags, self._timeout)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receives into ``buffer``; returns the number of bytes received."""
        return _recv_into(self, buffer, nbytes, flags, self._timeout)

    def accept(self) -> tuple[socket, Any]:
        """Waits for a connection; returns a new cooperative socket and the peer's address."""
        fd, address = _accept(self, self._timeout)
        sock = socket(_sock_family(self), _sock_type(self), _sock_proto(self), fd)
        # As the stdlib: the new socket gets the default timeout, but blocks if there is none and self has one.
        if _getdefaulttimeout() is None and self._timeout:
            sock._timeout = None
        return sock, address

    # -- sending ------------------------------------------------------------------------------------------

    def send(self, data: Any, flags: int = 0, timeout: Any = _NONE) -> int:
        """Sends some of ``data``; returns how many bytes were sent. ``timeout``, if given, replaces the socket's
        timeout for this call."""
        return _send(self, data, flags, self._timeout if timeout is _NONE else timeout)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Sends all of ``data``; the timeout bounds the whole call. On error, how much was sent is unknown."""
        return _sendall(self, data, flags, self._timeout)

    def sendto(self, data: Any, *flags_and_address: Any) -> int:
        """Sends ``data`` to an address: ``sendto(data, address)`` or ``sendto(data, flags, address)``."""
        args = (data, *flags_and_address)
        if len(args) in (2, 3):  # other counts: the C method raises the stdlib's TypeError
            args = (*args[:-1], _resolve(self, args[-1]))
        try:
            return _sock_sendto(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0 or (len(args) == 3 and args[1] & _MSG_DONTWAIT):
                raise
        return self._wait_and_retry(_sock_sendto, True, *args)

    # -- connecting ---------------------------------------------------------------------------------------

    def connect(self, address: Any) -> None:
        """Connects to ``address``, resolving a host name without blocking the loop; the timeout bounds it all."""
        address = _resolve(self, address)
        if self._timeout == 0.0:
            return _sock_connect(self, address)
        timeout = self._timeout
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            error = _sock_connect_ex(self, address)
            if error == 0:
                return None
            if error not in _CONNECTING:
                raise OSError(error, _strerror(error))
            if deadline is not None:
                timeout = deadline - _monotonic()
                if timeout <= 0:
                    raise _timeout_error("timed out")
            if not get_hub().loop.wait_fd(_sock_fileno(self), True, timeout, None, self.ref, True):
                raise _timeout_error("timed out")
            if error != EAGAIN:  # in progress: writable means done, and SO_ERROR says how it went
                error = self.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
                if error:
                    raise OSError(error, _strerror(error))
                return None
            # EAGAIN (a Unix socket whose listener's backlog is full): nothing started; try again.

    def connect_ex(self, address: Any) -> int:
        """As ``connect``, but returns an errno (0 on success; EAGAIN on timeout, like the stdlib)."""
        try:
            socket.connect(self, address)  # this class's connect: a subclass's (SSLSocket's) calls connect_ex
        except _timeout_error:
            return EAGAIN
        except _socket.gaierror:
            raise
        except OSError as exc:
            if exc.errno:
                return exc.errno
            raise
        return 0

    # -- closing ------------------------------------------------------------------------------------------

    def _real_close(self, _ss: Any = _socket.socket) -> None:
        _forget_fd(_sock_fileno(self))
        _sock_close(self)

    def detach(self) -> int:
        """Hands the fd over (the socket becomes closed without closing it); its waiters get EBADF."""
        _forget_fd(_sock_fileno(self))
        return super().detach()


def _cooperative_method(op: Any, writable: bool, flags_at: Optional[int]) -> Any:
    """A method calling the C method ``op``, waiting and retrying on EAGAIN (for the calls that are less hot).

    ``flags_at``: the position of the ``flags`` argument, if it can be given positionally.
    """

    def method(self: socket, *args: Any, **kwargs: Any) -> Any:
        call = partial(op, **kwargs) if kwargs else op
        try:
            return call(self, *args)
        except BlockingIOError:
            if self._timeout == 0.0:
                raise
            flags = args[flags_at] if flags_at is not None and len(args) > flags_at else kwargs.get("flags", 0)
            if flags & _MSG_DONTWAIT:
                raise
        return self._wait_and_retry(call, writable, *args)

    method.__name__ = method.__qualname__ = op.__name__
    method.__doc__ = op.__doc__
    return method


for _name, _writable, _flags_at in (
    ("recvfrom", False, 1),
    ("recvfrom_into", False, 2),
    ("recvmsg", False, 2),
    ("recvmsg_into", False, 2),
    ("sendmsg", True, 2),
    ("sendmsg_afalg", True, None),
):
    if hasattr(_socket.socket, _name):
        setattr(socket, _name, _cooperative_method(getattr(_socket.socket, _name), _writable, _flags_at))
del _name, _writable, _flags_at

SocketType = socket

# The stdlib's own sendfile() waits with selectors.PollSelector between os.sendfile() calls: run it against
# ferrovent's selectors, where that wait is cooperative.
socket._sendfile_use_sendfile = rebind(
    __socket__.socket._sendfile_use_sendfile,
    {**vars(__socket__), "selectors": _cooperative_selectors},
    __name__,
)

# getaddrinfo, gethostbyname... (gevent's socket.__dns__): the resolver's, which never block the loop.
_dns = {name: getattr(_resolver, name) for name in _resolver.__dns__}
globals().update(_dns)

# create_connection, create_server, socketpair, fromfd, has_dualstack_ipv6: the stdlib's, building these sockets.
_rebound = rebind_users(__socket__, {"socket": socket, "SocketType": socket, **_dns}, __name__)
globals().update(_rebound)


# -- gevent's extensions -----------------------------------------------------------------------------------


class cancel_wait_ex(OSError):
    """What `cancel_wait` raises by default in the waiting greenlets: EBADF, as if the fd had been closed."""

    def __init__(self) -> None:
        super().__init__(EBADF, "File descriptor was closed in another greenlet")


def _timeout_exception(timeout: Optional[float], timeout_exc: Any) -> Any:
    """The exception a wait raises when ``timeout`` passes: socket.timeout unless the caller chose another."""
    if timeout is None:
        return None
    if timeout_exc is _NONE:
        return _timeout_error("timed out")
    if timeout_exc is None:
        return Timeout(timeout)
    return timeout_exc() if isinstance(timeout_exc, type) else timeout_exc


def wait_read(fileno: int, timeout: Optional[float] = None, timeout_exc: Any = _NONE) -> None:
    """Parks the current greenlet until ``fileno`` is readable (at once if it already is).

    After ``timeout`` seconds raises ``timeout_exc`` (default ``socket.timeout("timed out")``).
    """
    get_hub().loop.wait_read(fileno, timeout, _timeout_exception(timeout, timeout_exc))


def wait_write(fileno: int, timeout: Optional[float] = None, timeout_exc: Any = _NONE) -> None:
    """Parks the current greenlet until ``fileno`` is writable (at once if it already is); as `wait_read`."""
    get_hub().loop.wait_write(fileno, timeout, _timeout_exception(timeout, timeout_exc))


def wait_readwrite(fileno: int, timeout: Optional[float] = None, timeout_exc: Any = _NONE) -> None:
    """Parks the current greenlet until ``fileno`` is readable or writable; as `wait_read`."""
    if not _wait_any(((fileno, False, True), (fileno, True, True)), timeout):
        raise _timeout_exception(timeout, timeout_exc)


def wait(io: Any, timeout: Optional[float] = None, timeout_exc: Any = _NONE) -> None:
    """Parks the current greenlet until the watcher ``io`` (not started; see ``ferrovent.hub.Hub.wait``) fires.

    After ``timeout`` seconds raises ``timeout_exc`` (default ``socket.timeout("timed out")``). A watcher that
    already has a callback is in use by another greenlet: ConcurrentObjectUseError.
    """
    if io.callback is not None:
        raise ConcurrentObjectUseError(f"This socket is already used by another greenlet: {io.callback!r}")
    expiry = _timeout_exception(timeout, timeout_exc)
    timer = Timeout._start_new_or_dummy(timeout, expiry)
    try:
        get_hub().wait(io)
    finally:
        timer.close()


def cancel_wait(fileno: Any, error: Any = cancel_wait_ex) -> None:
    """Wakes every greenlet waiting on ``fileno`` (an fd or an object with ``fileno()``) by raising ``error``.

    gevent takes a watcher here; ferrovent has no watcher objects, so it takes the fd.
    """
    fd = fileno if isinstance(fileno, int) else fileno.fileno()
    get_hub().loop.cancel_wait(fd, error() if isinstance(error, type) else error)


__implements__ = ["socket", "SocketType", *sorted(_rebound), *_resolver.__dns__]
__extensions__ = ["cancel_wait", "wait", "wait_read", "wait_write", "wait_readwrite"]
__all__ = sorted({*__socket__.__all__, *__implements__, *__extensions__})
