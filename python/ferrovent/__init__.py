"""ferrovent: gevent's API with the event loop written in Rust.

``import ferrovent as gevent``: spawn greenlets, sleep, join, time out, exactly as with gevent; the reactor
underneath (fd table, timers, ready queue) is Rust on mio. Where ferrovent deliberately behaves otherwise than
gevent, docs/differences.md says so and why.
"""

from __future__ import annotations

from sys import getswitchinterval, setswitchinterval
from typing import TYPE_CHECKING

from greenlet import GreenletExit, getcurrent

from ferrovent._config import config
from ferrovent._core import __version__, sleep
from ferrovent._gevent_alias import install_as_gevent
from ferrovent.exceptions import (
    BlockingSwitchOutError,
    ConcurrentObjectUseError,
    HubDestroyed,
    InvalidSwitchError,
    InvalidThreadUseError,
    LoopExit,
)
from ferrovent.greenlet import Greenlet, iwait, joinall, killall, spawn_raw, wait
from ferrovent.hub import fork, get_hub, reinit
from ferrovent.signal import signal_handler
from ferrovent.timeout import Timeout, with_timeout

if TYPE_CHECKING:
    from greenlet import greenlet as RawGreenlet

__all__ = [
    "__version__",
    "BlockingSwitchOutError",
    "ConcurrentObjectUseError",
    "Greenlet",
    "GreenletExit",
    "HubDestroyed",
    "InvalidSwitchError",
    "InvalidThreadUseError",
    "LoopExit",
    "Timeout",
    "config",
    "fork",
    "get_hub",
    "getcurrent",
    "getswitchinterval",
    "idle",
    "install_as_gevent",
    "iwait",
    "joinall",
    "kill",
    "killall",
    "reinit",
    "setswitchinterval",
    "signal_handler",
    "sleep",
    "spawn",
    "spawn_later",
    "spawn_raw",
    "wait",
    "with_timeout",
]

spawn = Greenlet.spawn
spawn_later = Greenlet.spawn_later


def idle(priority: int = 0) -> None:
    """Waits until the loop has nothing else ready to run, then returns.

    ``priority`` is accepted for gevent's signature and ignored (the loop has one idle phase).
    """
    get_hub().loop.park_until_idle()


def kill(greenlet: RawGreenlet, exception: type[BaseException] | BaseException = GreenletExit) -> None:
    """Kills ``greenlet`` (a Greenlet or a raw greenlet) without waiting for it to die.

    The ``exception`` (a class or an instance; ``GreenletExit`` by default) is raised in it by the hub, so it lands
    after this returns; a Greenlet that has not started never runs. See ``Greenlet.kill`` to wait for the death.
    """
    if hasattr(greenlet, "kill"):
        greenlet.kill(exception=exception, block=False)
    else:
        get_hub().loop.throw(greenlet, exception() if isinstance(exception, type) else exception)
