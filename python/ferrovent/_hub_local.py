"""``gevent._hub_local``: gevent's private module holding the calling thread's hub, which code written against
gevent's internals (and gevent's own tests) imports.

The hub itself lives in `ferrovent.hub`; this module gives gevent's names for it, and for the loop kept per thread
when a hub is destroyed without its loop, for the thread's next hub to run (`get_loop`, `set_loop`).
"""

from __future__ import annotations

from ferrovent.hub import Hub, get_hub, get_hub_if_exists, get_loop, set_hub, set_loop

__all__ = ["get_hub", "get_hub_noargs", "get_hub_if_exists", "get_hub_class", "set_hub", "get_loop", "set_loop"]

get_hub_noargs = get_hub


def get_hub_class() -> type[Hub]:
    """The class of the hubs `get_hub` makes."""
    return Hub
