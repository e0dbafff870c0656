"""Small integer names for live objects (greenlets' ``minimal_ident``), handed back for reuse when an object dies.

Each object gets the smallest number not held by a live object at the time it first asks, so the numbers of a
long-running program stay as small as its count of live greenlets.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any
from weakref import ref

__all__ = ["IdentRegistry"]


class _NumberedRef(ref):
    """A weak reference that remembers the number its object held."""

    __slots__ = ("number",)


class IdentRegistry:
    """Maps live objects (weakly referenceable, hashed by identity or uniquely) to small non-negative integers."""

    def __init__(self) -> None:
        self._numbers: dict[int, _NumberedRef] = {}  # id(obj) -> its reference, holding its number
        self._freed: list[int] = []  # numbers of dead objects, smallest first

    def get_ident(self, obj: Any) -> int:
        """The number of ``obj``, given it now if it has none."""
        held = self._numbers.get(id(obj))
        if held is not None and held() is obj:
            return held.number
        number = heappop(self._freed) if self._freed else len(self._numbers)
        reference = _NumberedRef(obj, self._release(id(obj)))
        reference.number = number
        self._numbers[id(obj)] = reference
        return number

    def _release(self, key: int):
        def released(reference: _NumberedRef) -> None:
            if self._numbers.get(key) is reference:
                del self._numbers[key]
                heappush(self._freed, reference.number)

        return released

    def __len__(self) -> int:
        return len(self._numbers)
