"""ferrovent: gevent's API with the event loop written in Rust.

``import ferrovent as gevent``: spawn greenlets, sleep, join, time out, exactly as with gevent; the reactor
underneath (fd table, timers, ready queue) is Rust on mio.
"""

from sys import getswitchinterval, setswitchinterval

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


def idle(priority=0):
    """Waits until the loop has nothing else ready to run."""
    get_hub().loop.park_until_idle()


def kill(greenlet, exception=GreenletExit):
    """Kills ``greenlet`` without waiting for it to die (a raw greenlet or a Greenlet)."""
    if hasattr(greenlet, "kill"):
        greenlet.kill(exception=exception, block=False)
    else:
        get_hub().loop.throw(greenlet, exception() if isinstance(exception, type) else exception)
