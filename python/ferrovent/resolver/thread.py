"""gevent's thread resolver: ferrovent's own lookups (`ferrovent.resolver`), as a resolver object."""

from __future__ import annotations

from ferrovent import resolver as _lookups
from ferrovent.hub import Hub, get_hub

__all__ = ["Resolver"]


class Resolver:
    """Name resolution that blocks only the calling greenlet: numeric addresses and ``localhost`` are answered
    inline, other names by the system resolver in the hub's thread pool. Results and errors are the stdlib's.
    A failed lookup is the caller's business: the hub does not report it.
    """

    def __init__(self, hub: Hub | None = None) -> None:
        self.hub = get_hub() if hub is None else hub
        self.pool = self.hub.threadpool

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} at {hex(id(self))} pool={self.pool!r}>"

    def close(self) -> None:
        """Nothing to release: the pool is the hub's."""

    gethostbyname = staticmethod(_lookups.gethostbyname)
    gethostbyname_ex = staticmethod(_lookups.gethostbyname_ex)
    getaddrinfo = staticmethod(_lookups.getaddrinfo)
    gethostbyaddr = staticmethod(_lookups.gethostbyaddr)
    getnameinfo = staticmethod(_lookups.getnameinfo)

    def getfqdn(self, name: str = "") -> str:
        """``socket.getfqdn``, its reverse lookup in the thread pool."""
        return _lookups.getfqdn(name)
