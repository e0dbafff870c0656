"""``gevent._hub_local``: gevent's private module holding the calling thread's hub, which code written against
gevent's internals (and gevent's own tests) imports.

The hub itself lives in `ferrovent.hub`; this module gives gevent's names for it. gevent also keeps, per thread, a
loop left over by a hub destroyed without its loop, for the thread's next hub to run. A ferrovent loop runs only in
the hub made for it, so no loop is ever kept: `get_loop` is always None, and `set_loop` takes only None.
"""

from __future__ import annotations

from ferrovent.hub import Hub, get_hub, get_hub_if_exists, set_hub

__all__ = ["get_hub", "get_hub_noargs", "get_hub_if_exists", "get_hub_class", "set_hub", "get_loop", "set_loop"]

get_hub_noargs = get_hub


def get_hub_class() -> type[Hub]:
    """The class of the hubs `get_hub` makes."""
    return Hub


def get_loop():
    """The loop kept for the thread's next hub: never any on ferrovent."""
    return None


def set_loop(loop) -> None:
    """Forgets the loop kept for the thread's next hub (None); refuses to keep one."""
    if loop is not None:
        raise ValueError("ferrovent keeps no loop for a thread's next hub: a loop runs only in the hub made for it")
