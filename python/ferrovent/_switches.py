"""The environment switches that turn ferrovent's optimisations and guards off.

Each switch is read once, by the module whose behaviour it governs, when that module decides what to do. The
variable set to ``0``, ``false``, ``no`` or ``off`` (any case, surrounding spaces ignored) switches it off; any other
value, or none, leaves it on. rust/cpython/mod.rs reads its own switches with the same words.
"""

from __future__ import annotations

import os

__all__ = ["switched_off"]

_OFF = frozenset(("0", "false", "no", "off"))


def switched_off(variable: str) -> bool:
    """Whether the environment variable ``variable`` turns its switch off."""
    return os.environ.get(variable, "").strip().lower() in _OFF
