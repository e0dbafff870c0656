"""When the Rust fast paths may read an object's attributes from its instance ``__dict__`` first.

The asyncio loop's Rust code reads some of its state (``_stopping``, ``_scheduled``...) with a dict lookup in the
loop's ``__dict__``, falling back to a full attribute lookup when the name is not there. That finds what ``getattr``
would only if the class keeps object's attribute lookup and none of those names is a data descriptor on the class
(which object's lookup finds before the instance's ``__dict__``).
"""

from __future__ import annotations

__all__ = ["dict_first"]


def dict_first(cls: type, names: tuple[str, ...]) -> bool:
    """Whether the lookup of each of ``names`` on an instance of ``cls`` may start with its ``__dict__``, as
    object's lookup does: ``cls`` keeps that lookup, and none of ``names`` is a data descriptor on it."""
    if cls.__getattribute__ is not object.__getattribute__:
        return False
    for name in names:
        found = next((vars(base)[name] for base in cls.__mro__ if name in vars(base)), None)
        if hasattr(type(found), "__set__") or hasattr(type(found), "__delete__"):
            return False
    return True
