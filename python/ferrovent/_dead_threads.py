"""Turns greenlet's *optional* clean-up after a thread's death off, since it can free an object still in use.

When a thread that ran greenlets ends, greenlet tidies its state later, from a pending call run by whichever thread
next runs Python code. The optional part of that tidying guesses whether the dead thread's main greenlet leaked: if
one reference to it is left and ``gc.get_referrers`` finds no holder, greenlet drops that reference. The guess is
wrong when the holder is another greenlet of the dead thread (a hub that never started, whose parent is that main
greenlet) that a collection running at that moment has set apart as garbage: such objects are in no list
``get_referrers`` reads. The pending call runs there whenever the collection runs Python code (a weakref callback, a
``__del__``), and the main greenlet is then freed while the collected greenlet still holds it: the process crashes.
Every ferrovent thread leaves its hub to the collector (the hub and its loop refer to each other), so ferrovent
meets this wherever threads come and go.

``greenlet._greenlet.enable_optional_cleanup(False)`` is greenlet's documented way to skip the guess. Its cost: a
main greenlet that really was leaked stays leaked, and ``get_clocks_used_doing_optional_cleanup()`` returns None.
``FERROVENT_DEAD_THREAD_GUARD=0`` (also ``false``, ``no``, ``off``) leaves greenlet's default.
"""

from __future__ import annotations

from greenlet import _greenlet

from ferrovent._switches import switched_off

__all__ = ["guard_dead_threads"]


def guard_dead_threads() -> None:
    """Turns greenlet's optional clean-up off, unless the environment keeps it."""
    if not switched_off("FERROVENT_DEAD_THREAD_GUARD"):
        _greenlet.enable_optional_cleanup(False)
