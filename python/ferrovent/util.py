"""Small utilities: ``wrap_errors`` (return chosen exceptions instead of raising them) and ``format_run_info`` /
``print_run_info`` (a dump of every thread's and every greenlet's stack, for debugging a stuck program)."""

from __future__ import annotations

import functools
import gc
import sys
import threading
import traceback
from _thread import get_ident
from typing import IO, Any, Callable, Optional, Union

from greenlet import getcurrent, greenlet

__all__ = ["wrap_errors", "format_run_info", "print_run_info"]

_RULE = "*" * 80


class wrap_errors:
    """Wraps ``func`` so that the exceptions in ``errors`` are returned instead of raised.

    Useful for a greenlet whose expected failures should not be reported as errors by the hub:
    ``spawn(wrap_errors((OSError, ValueError), fetch), url)``. ``str``, ``repr`` and other attributes are the
    wrapped function's.
    """

    def __init__(
        self, errors: Union[type[BaseException], tuple[type[BaseException], ...]], func: Callable[..., Any]
    ) -> None:
        self.__errors = errors
        self.__func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__func(*args, **kwargs)
        except self.__errors as ex:
            return ex

    def __str__(self) -> str:
        return str(self.__func)

    def __repr__(self) -> str:
        return repr(self.__func)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func, name)


def _ancestry(glet: Any) -> tuple[Any, int]:
    """The root of ``glet``'s parent chain (a thread's main greenlet: one thread's greenlets share it) and its
    depth below that root."""
    depth = 0
    while glet.parent is not None:
        glet = glet.parent
        depth += 1
    return glet, depth


def _describe(glet: Any) -> str:
    try:
        return repr(glet)
    except Exception:  # a broken __repr__ must not stop the dump
        return object.__repr__(glet)


def _state(glet: Any, current: Any) -> str:
    if glet is current:
        return "current"
    if glet.dead:
        return "dead"
    if not glet:
        return "not started"
    return "suspended"


def _format_threads(lines: list[str], thread_stacks: bool, limit: Optional[int], current_ident: int) -> None:
    lines += [_RULE, "* Threads"]
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        current = ") (CURRENT" if ident == current_ident else ""
        lines += [_RULE, f"Thread 0x{ident:x} ({names.get(ident)}{current})\n"]
        lines.append("".join(traceback.format_stack(frame, limit)) if thread_stacks else "\t...stack elided...")


def _format_greenlets(lines: list[str], greenlet_stacks: bool, limit: Optional[int]) -> None:
    lines += [_RULE, "* Greenlets", _RULE]
    current = getcurrent()
    our_root = _ancestry(current)[0]
    found = [(obj, *_ancestry(obj)) for obj in gc.get_objects() if isinstance(obj, greenlet)]
    # This thread's greenlets first; within a thread, the main greenlet, then the hub, then the others.
    found.sort(key=lambda entry: (entry[1] is not our_root, id(entry[1]), entry[2]))
    for glet, root, _ in found:
        lines.append(f"{_describe(glet)} ({_state(glet, current)})")
        if glet.parent is not None:
            lines.append(f" : Parent: {_describe(glet.parent)}")
        if not greenlet_stacks or root is not our_root:
            continue  # another thread's stacks are not ours to read consistently
        frame = sys._getframe(2) if glet is current else glet.gr_frame
        if frame is not None:
            lines.extend("   " + line for line in "".join(traceback.format_stack(frame, limit)).splitlines())


def format_run_info(
    thread_stacks: bool = True,
    greenlet_stacks: bool = True,
    limit: Optional[int] = None,
    current_thread_ident: Optional[int] = None,
) -> list[str]:
    """Lines describing every OS thread (with its stack) and every greenlet (state, parent and stack).

    Greenlets are found through the garbage collector, so none is missed. ``limit`` is passed to
    ``traceback.format_stack``. The output is for people; its exact form may change.
    """
    lines: list[str] = []
    _format_threads(lines, thread_stacks, limit, get_ident() if current_thread_ident is None else current_thread_ident)
    _format_greenlets(lines, greenlet_stacks, limit)
    return lines


def print_run_info(
    thread_stacks: bool = True,
    greenlet_stacks: bool = True,
    limit: Optional[int] = None,
    file: Optional[IO[str]] = None,
) -> None:
    """Prints ``format_run_info()`` to ``file`` (default: stderr)."""
    stream = sys.stderr if file is None else file
    for line in format_run_info(thread_stacks, greenlet_stacks, limit):
        print(line, file=stream)
