"""The exceptions ferrovent raises, named and shaped as gevent's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from greenlet import GreenletExit

from ferrovent._core import (
    BlockingSwitchOutError,
    ConcurrentObjectUseError,
    InvalidSwitchError,
    InvalidThreadUseError,
)

if TYPE_CHECKING:
    from ferrovent.hub import Hub

__all__ = [
    "LoopExit",
    "BlockingSwitchOutError",
    "InvalidSwitchError",
    "ConcurrentObjectUseError",
    "InvalidThreadUseError",
    "HubDestroyed",
]


class LoopExit(Exception):
    """Raised in the waiting greenlet when the loop has nothing left that could ever wake it.

    Typical causes: waiting on a greenlet or event that nothing will finish or set, or a deadlock.
    """

    @property
    def hub(self) -> Hub | None:
        """The hub whose loop ran out, when the hub raised this."""
        return self.args[1] if len(self.args) >= 2 else None

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class HubDestroyed(GreenletExit):
    """Raised in a hub's greenlet when the hub is destroyed."""

    def __init__(self, destroy_loop: bool | None) -> None:
        super().__init__(destroy_loop)
        self.destroy_loop = destroy_loop
