"""gevent's blocking resolver: the system resolver, called directly."""

from __future__ import annotations

import _socket
import socket as _stdlib_socket
from typing import Any

__all__ = ["Resolver"]


class Resolver:
    """Name resolution by the system resolver, called in the calling thread: it is NOT cooperative (a slow lookup
    blocks every greenlet of the thread) and costs the least. For debugging, or where the system resolver
    answers from a local cache."""

    def __init__(self, hub: Any = None) -> None:
        pass

    def close(self) -> None:
        """Nothing to release."""

    gethostbyname = staticmethod(_socket.gethostbyname)
    gethostbyname_ex = staticmethod(_socket.gethostbyname_ex)
    # The stdlib's wrapper, which gives families and types as enums (as socket.getaddrinfo does).
    getaddrinfo = staticmethod(_stdlib_socket.getaddrinfo)
    gethostbyaddr = staticmethod(_socket.gethostbyaddr)
    getnameinfo = staticmethod(_socket.getnameinfo)
