"""Signals and the loop: the stdlib's signal module, with handlers that may block.

The hub runs Python-level signal handlers when its poll is interrupted, so they run in the hub, where a blocking
call is impossible. `signal_handler` runs its handler in a new greenlet instead (gevent's API), and the
``signal.signal`` installed by ``monkey.patch_signal`` does the same for handlers that arrive while the hub runs; a
handler that arrives while another greenlet runs is called right there, as the stdlib would.

What such a handler raises is raised in the main greenlet, where the stdlib raises it (in the main thread): the
call the main greenlet is blocked in (``recv``, ``sendall``, ``select``, ``sleep``...) ends with it. A handler that
returns lets that call go on, as PEP 475 has it. As for any error the hub hands to the main greenlet, the hub
reports it on stderr first (gevent's ``Hub.handle_error`` with no context).
"""

from __future__ import annotations

import signal as _signal
import sys
from signal import *  # noqa: F403  (every public name of the stdlib module)
from typing import TYPE_CHECKING, Any, Callable

from greenlet import GreenletExit, getcurrent

from ferrovent.hub import get_hub

if TYPE_CHECKING:
    from types import FrameType

    from typing_extensions import TypeAlias

    # What ``signal.signal`` takes as a handler: a function of (signal number, frame), ``SIG_DFL``/``SIG_IGN``, None.
    _Handler: TypeAlias = "Callable[[int, FrameType | None], Any] | int | None"

__implements__ = ["signal", "getsignal"]
__all__ = [name for name in dir(_signal) if not name.startswith("_")] + ["signal_handler"]

_std_signal = _signal.signal
_std_getsignal = _signal.getsignal
_PLAIN = (_signal.SIG_DFL, _signal.SIG_IGN, _signal.default_int_handler, None)


def _spawn(function, *args, **kwargs):
    from ferrovent.greenlet import Greenlet  # imported late: greenlet imports the hub, which the hub's users import

    return Greenlet.spawn(function, *args, **kwargs)


class _GreenHandler:
    """Wraps a handler given to ``signal.signal``: run it in a new greenlet when it would otherwise run in the hub."""

    __slots__ = ("handler",)

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, signalnum, frame):
        if getcurrent() is get_hub():
            _spawn(_raising_in_main, self.handler, signalnum, frame)
        else:
            self.handler(signalnum, frame)


def _raising_in_main(handler, *args, **kwargs):
    """Runs a handler the hub received; what it raises goes to the main greenlet (the hub's parent)."""
    try:
        handler(*args, **kwargs)
    except GreenletExit:
        raise  # this greenlet was killed: nothing for the main greenlet
    except BaseException:
        get_hub().handle_error(None, *sys.exc_info())


def signal(signalnum: int, handler: _Handler) -> _Handler:
    """As ``signal.signal`` (same arguments, returns the previous handler, raises the same errors), but a Python
    handler that fires while the hub runs gets a greenlet of its own, so it may block."""
    wrapped = handler if handler in _PLAIN or not callable(handler) else _GreenHandler(handler)
    previous = _std_signal(signalnum, wrapped)
    return previous.handler if isinstance(previous, _GreenHandler) else previous


def getsignal(signalnum: int) -> _Handler:
    """As ``signal.getsignal``: the handler as it was given."""
    current = _std_getsignal(signalnum)
    return current.handler if isinstance(current, _GreenHandler) else current


# signal number -> the signal_handler objects registered for it, and the handler that was there before them
_registered: dict[int, list] = {}
_replaced: dict[int, object] = {}


_FOREVER = 10.0 * 365 * 24 * 3600  # a ten-year timer: the keep-alive of a referenced signal_handler


def _nothing():
    pass


def _dispatch(signalnum, frame):
    for registration in list(_registered.get(signalnum, ())):
        registration._start()


class signal_handler:
    """Calls ``handler(*args, **kwargs)`` in a new greenlet each time the process gets ``signalnum``; what it
    raises is raised in the main greenlet, as for ``signal.signal`` handlers (see the module's notes).

    It does not keep the loop alive unless ``ref`` is set to True. `cancel()` stops it; once every handler of a
    signal is cancelled, the signal's previous handler is restored.
    """

    _keepalive = None  # while ``ref`` is true: a referenced timer that never fires, owned by this handler's loop

    #: The class of the greenlet each delivery runs in (None: ``ferrovent.Greenlet``).
    greenlet_class = None

    def __init__(self, signalnum: int, handler: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(handler):
            raise TypeError("signal handler must be callable.")
        self.signalnum = signalnum
        self.handler = handler
        self.args = args
        self.kwargs = kwargs
        registrations = _registered.setdefault(signalnum, [])
        if not registrations:
            _replaced[signalnum] = _std_signal(signalnum, _dispatch)
        registrations.append(self)

    def _start(self):
        if self.greenlet_class is None:
            _spawn(self.handle)
        else:
            self.greenlet_class(self.handle).start()

    def handle(self) -> None:
        """Calls the handler (in the greenlet of one delivery); what it raises goes to the main greenlet."""
        _raising_in_main(self.handler, *self.args, **self.kwargs)

    @property
    def ref(self) -> bool:
        """Whether waiting for this signal keeps the loop (and ``join``, ``wait()``...) running; False by default."""
        return self._keepalive is not None

    @ref.setter
    def ref(self, value: bool) -> None:
        if bool(value) == self.ref:
            return
        if value:
            loop = get_hub().loop
            self._keepalive = (loop, loop.call_later(_FOREVER, _nothing))
        else:
            loop, timer = self._keepalive
            self._keepalive = None
            loop.cancel_timer(timer)

    def cancel(self) -> None:
        """Stops calling the handler for this signal (harmless when already cancelled); when it was the signal's
        last ``signal_handler``, puts back the handler that was there before the first."""
        self.ref = False
        registrations = _registered.get(self.signalnum, [])
        if self in registrations:
            registrations.remove(self)
            if not registrations:
                _std_signal(self.signalnum, _replaced.pop(self.signalnum))
        self.handler = self.args = self.kwargs = None
