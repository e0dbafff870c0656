"""The WSGI server's logs: a ``log``/``error_log`` argument made into something with ``write``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["NoopLog", "LoggingLogAdapter", "make_log"]


class NoopLog:
    """The log when logging is turned off (``log=None``)."""

    def write(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def writelines(self, *args: Any, **kwargs: Any) -> None:
        pass


class LoggingLogAdapter:
    """Makes a ``logging.Logger`` usable as the server's ``log`` or ``error_log`` (writes at ``level``).

    Other attributes are the logger's: read, set and deleted on it."""

    __slots__ = ("_logger", "_level")

    def __init__(self, logger: Any, level: int = 20) -> None:
        self._logger = logger
        self._level = level

    def write(self, msg: str) -> None:
        """Logs ``msg`` (one trailing newline dropped) at the adapter's level."""
        if msg and msg.endswith("\n"):
            msg = msg[:-1]
        self._logger.log(self._level, msg)

    def flush(self) -> None:
        """Nothing to flush: the logger's handlers do their own."""

    def writelines(self, lines: Iterable[str]) -> None:
        """Logs each line, as ``write``."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in LoggingLogAdapter.__slots__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._logger, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._logger, name)


def make_log(target: Any, level: int) -> Any:
    """``"default"``: stderr; None: no log; a ``logging.Logger``: adapted at ``level``; else ``target`` itself."""
    if target == "default":
        return sys.stderr
    if target is None:
        return NoopLog()
    if not hasattr(target, "write") and hasattr(target, "log"):
        return LoggingLogAdapter(target, level)
    return target
