"""Name resolution that never blocks the loop: the stdlib's answers, looked up in the hub's thread pool.

A numeric address needs no lookup, so it is answered inline by the system resolver with ``AI_NUMERICHOST``
(which cannot block), starting no thread. ``localhost`` is answered inline too, from a fixed table (below). Any
other name goes to the hub's ``ferrovent.threadpool.ThreadPool`` (`DEFAULT_SIZE` threads, started on first need),
whose result wakes the waiting greenlet through the loop's thread-safe inbox; other greenlets run meanwhile.
Results and exceptions are the stdlib's own, since the stdlib functions compute them. With ``config.resolver =
'block'`` (``GEVENT_RESOLVER=block``) lookups run in the calling thread instead, blocking the loop.

gevent's resolver classes are in the submodules: ``thread.Resolver`` (these functions, the default),
``blocking.Resolver`` (the system resolver called directly, blocking the thread). gevent's ``ares`` and
``dnspython`` resolvers are not part of ferrovent: importing those modules raises ImportError saying so.

``localhost`` (RFC 6761: always the loopback) is not sent to the system resolver, which can go to DNS for it (for
IPv6 when /etc/hosts lists only 127.0.0.1). Its addresses are the loopback ones /etc/hosts gives it (read once),
else 127.0.0.1 and ::1; IPv6 first, as the system resolver sorts them.
"""

from __future__ import annotations

import _socket
import functools
import ipaddress
from typing import Any

from ferrovent._config import config
from ferrovent.hub import get_hub
from ferrovent.monkey import get_original
from ferrovent.resolver.blocking import Resolver as _BlockingResolver
from ferrovent.threadpool import hub_threadpool, is_worker_thread

#: No stdlib module corresponds to this one: all its names are ferrovent's own.
__extensions__ = ["getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo", "getfqdn"]
__all__ = list(__extensions__)

#: The names of ``socket`` this module replaces (gevent's ``socket.__dns__``).
__dns__ = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo", "getfqdn")

# socket.getaddrinfo is the Python wrapper that turns families and types into enums; the rest are _socket's.
_getaddrinfo = get_original("socket", "getaddrinfo")
_gaierror = _socket.gaierror
_LOCALHOST_NAMES = ("localhost", b"localhost")
_HOSTS_FILE = "/etc/hosts"


def _blocking(func, *args):
    """``func(*args)`` in the hub's thread pool; right here in a pool thread (which may block) or when
    ``config.resolver`` says 'block'."""
    if is_worker_thread() or config.resolver is _BlockingResolver:
        return func(*args)
    hub = get_hub()
    if _gaierror not in hub.NOT_ERROR:  # a failed lookup is the caller's business, not an error to report
        hub.NOT_ERROR = (*hub.NOT_ERROR, _gaierror, _socket.herror)
    return hub_threadpool(hub).spawn(func, *args).get()


def _is_localhost(host: Any) -> bool:
    return isinstance(host, (str, bytes)) and host.lower() in _LOCALHOST_NAMES


@functools.cache
def _localhost_addresses() -> tuple[str, ...]:
    """The loopback addresses /etc/hosts gives ``localhost``, IPv6 first; 127.0.0.1 and ::1 if it gives none."""
    found = []
    try:
        with open(_HOSTS_FILE, encoding="utf-8", errors="replace") as hosts:
            for line in hosts:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and "localhost" in (name.lower() for name in fields[1:]):
                    found.append(fields[0])
    except OSError:
        pass
    loopback = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        if address.is_loopback and text not in loopback:
            loopback.append(text)
    if not loopback:
        loopback = ["::1", "127.0.0.1"]
    return tuple(sorted(loopback, key=lambda text: ":" not in text))


def _localhost_ipv4() -> list[str]:
    return [a for a in _localhost_addresses() if ":" not in a] or ["127.0.0.1"]


def _localhost_addrinfo(port, family, type, proto, flags) -> list:
    addresses = list(_localhost_addresses())
    if family == _socket.AF_INET:
        addresses = _localhost_ipv4()
    elif family == _socket.AF_INET6:
        addresses = [a for a in addresses if ":" in a] or ["::1"]
    results: list = []
    first_error = None
    for address in addresses:
        try:
            results += _getaddrinfo(address, port, family, type, proto, flags | _socket.AI_NUMERICHOST)
        except _gaierror as error:  # e.g. AI_ADDRCONFIG without IPv6: that family drops out
            first_error = first_error or error
    if not results:
        raise first_error
    if flags & _socket.AI_CANONNAME:  # the system resolver names the host on the first entry only
        results = [
            (af, kind, proto_, "localhost" if i == 0 else "", sockaddr)
            for i, (af, kind, proto_, _, sockaddr) in enumerate(results)
        ]
    return results


def getaddrinfo(
    host: str | bytes | None,
    port: str | bytes | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list:
    """``socket.getaddrinfo``: numeric hosts and localhost inline, names in the thread pool."""
    if _is_localhost(host):
        return _localhost_addrinfo(port, family, type, proto, flags)
    try:
        return _getaddrinfo(host, port, family, type, proto, flags | _socket.AI_NUMERICHOST)
    except _gaierror as error:
        # EAI_NONAME: not a numeric address, so a name to look up. Anything else is the stdlib's answer too:
        # the system resolver checks the service, family and flags before it looks at the host.
        if error.errno != _socket.EAI_NONAME or flags & _socket.AI_NUMERICHOST:
            raise
    return _blocking(_getaddrinfo, host, port, family, type, proto, flags)


def _needs_lookup(name) -> bool:
    """False for a numeric address (and for a bad argument, so that the stdlib raises its own error inline)."""
    try:
        _socket.getaddrinfo(name, None, 0, 0, 0, _socket.AI_NUMERICHOST)
    except _gaierror as error:
        return error.errno == _socket.EAI_NONAME
    except (TypeError, ValueError):  # UnicodeError is a ValueError
        return False
    return False


def gethostbyname(hostname: str) -> str:
    """``socket.gethostbyname``: numeric hosts and localhost inline, names in the thread pool."""
    if _is_localhost(hostname):
        return _localhost_ipv4()[0]
    if _needs_lookup(hostname):
        return _blocking(_socket.gethostbyname, hostname)
    return _socket.gethostbyname(hostname)


def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    """``socket.gethostbyname_ex``: numeric hosts and localhost inline, names in the thread pool."""
    if _is_localhost(hostname):
        return "localhost", [], _localhost_ipv4()
    if _needs_lookup(hostname):
        return _blocking(_socket.gethostbyname_ex, hostname)
    return _socket.gethostbyname_ex(hostname)


def gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    """``socket.gethostbyaddr``: a reverse lookup, always in the thread pool."""
    return _blocking(_socket.gethostbyaddr, ip_address)


def getnameinfo(sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
    """``socket.getnameinfo``: inline with ``NI_NUMERICHOST`` (no lookup), else in the thread pool."""
    if flags & _socket.NI_NUMERICHOST:
        return _socket.getnameinfo(sockaddr, flags)
    return _blocking(_socket.getnameinfo, sockaddr, flags)


def _fqdn(name: str) -> str:
    """What ``socket.getfqdn`` computes, with the original functions (this runs in a pool thread)."""
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        name = _socket.gethostname()
    try:
        hostname, aliases, _ = _socket.gethostbyaddr(name)
    except OSError:
        return name
    return next((candidate for candidate in (hostname, *aliases) if "." in candidate), hostname)


def getfqdn(name: str = "") -> str:
    """``socket.getfqdn``: the reverse lookup runs in the thread pool."""
    return _blocking(_fqdn, name)
