"""``gevent._interfaces``: the interfaces gevent's loop, watchers and callbacks provide (``ILoop``, ``IWatcher``,
``ICallback``), as zope.interface interfaces. Integrations (pika's gevent adapter) import them; ferrovent's loop
(``ferrovent.hub.Loop``, ``ferrovent.core.loop``), its watchers and its callback handles provide them, which
``zope.interface.verify.verifyObject`` checks. zope.interface is needed only to import this module.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface, classImplements

__all__ = ["ILoop", "IWatcher", "ICallback"]


class ILoop(Interface):
    """An event loop: watchers are made from it, callbacks scheduled on it; one per hub."""

    default = Attribute("Whether this is the main thread's loop.")
    approx_timer_resolution = Attribute("About how precisely timers fire, in seconds.")

    def run(nowait=False, once=False):
        """Run the loop: until nothing referenced is left, or for one iteration (``once``, ``nowait``)."""

    def now():
        """The loop's cached time, in seconds."""

    def update_now():
        """Refresh the cached time."""

    def destroy():
        """Stop the loop for good."""

    def io(fd, events, ref=True, priority=None):
        """A watcher called while ``fd`` is ready for ``events`` (READ, WRITE)."""

    def closing_fd(fd):
        """Tell the loop ``fd`` is about to be closed."""

    def timer(after, repeat=0.0, ref=True, priority=None):
        """A watcher called ``after`` seconds after it starts, then every ``repeat`` seconds."""

    def signal(signum, ref=True, priority=None):
        """A watcher called when the process gets ``signum``."""

    def idle(ref=True, priority=None):
        """A watcher called when the loop has nothing else to do."""

    def prepare(ref=True, priority=None):
        """A watcher called before each poll for I/O."""

    def check(ref=True, priority=None):
        """A watcher called after each poll for I/O."""

    def fork(ref=True, priority=None):
        """A watcher called in a forked child."""

    def async_(ref=True, priority=None):
        """A watcher called after its thread-safe ``send()``."""

    def child(pid, trace=0, ref=True):
        """A watcher called when child ``pid`` exits."""

    def stat(path, interval=0.0, ref=True, priority=None):
        """A watcher called when ``os.stat(path)`` changes."""

    def run_callback(func, *args):
        """Run ``func(*args)`` in the hub soon; returns an ICallback."""

    def run_callback_threadsafe(func, *args):
        """``run_callback`` from any thread."""


class IWatcher(Interface):
    """A watcher: it calls its callback when its event happens, while it is started."""

    def start(callback, *args, **kwargs):
        """Call ``callback(*args)`` each time the event happens."""

    def stop():
        """Stop calling back; idempotent."""

    def close():
        """Stop for good and release what the watcher holds."""


class ICallback(Interface):
    """A function the hub will run soon."""

    pending = Attribute("Whether it has neither run nor been stopped.")

    def stop():
        """Keep it from running."""

    def close():
        """The same as stop()."""


def _declare():
    from ferrovent import _watchers
    from ferrovent._core import callback
    from ferrovent.core import loop
    from ferrovent.hub import Loop

    classImplements(Loop, ILoop)
    classImplements(loop, ILoop)
    classImplements(_watchers.watcher, IWatcher)
    classImplements(callback, ICallback)


_declare()
