"""What ``python -m ferrovent info`` prints: the versions, the poller, the CPython-internals optimisations, the
monkey-patch state and a hub's counters. `info_lines` gives the same lines to a running program (a backdoor
session, a debug endpoint), where the patch state and the counters say the most.
"""

from __future__ import annotations

import platform
import sys
from typing import Any, Optional

import greenlet

from ferrovent import _core

__all__ = ["info_lines", "print_info"]

#: The names of the stdlib modules monkey-patching can replace, in `ferrovent.monkey.patch_all`'s order.
_PATCHABLE = ("os", "time", "_thread", "threading", "socket", "select", "selectors", "ssl", "subprocess", "signal")


def _switch_state(on: Optional[bool], switches: str) -> str:
    if on is None:
        return f"not known yet (learnt when the first Greenlet starts; {switches} turns it off)"
    return "on" if on else f"off ({switches}, or this CPython is outside the allow-list)"


def _patch_state() -> str:
    from ferrovent import monkey

    patched = [name for name in _PATCHABLE if monkey.is_module_patched(name)]
    others = sorted(set(monkey.saved) - set(_PATCHABLE) - {monkey._PATCH_ALL_SETTINGS})
    return ", ".join(patched + others) if patched or others else "nothing patched"


def _hub_counters(hub: Any) -> list[str]:
    loop = getattr(hub, "loop", None)
    if loop is None:
        return ["  (the hub is destroyed)"]
    monitor = hub.periodic_monitoring_thread
    longest = (
        f"at least {monitor.longest_block:.3f} s" if monitor is not None else "not watched (config.monitor_thread off)"
    )
    return [
        f"  greenlets parked:   {loop.parked_count}",
        f"  fds registered:     {loop.registered_fd_count}",
        f"  timers pending:     {loop.timer_count}",
        f"  ready to run:       {loop.ready_count}",
        f"  loop iterations:    {loop.iteration}",
        f"  longest block seen: {longest}",
    ]


def info_lines(hub: Any = None) -> list[str]:
    """The report, for ``hub`` (default: the calling thread's hub, if it has one)."""
    if hub is None:
        from ferrovent.hub import get_hub_if_exists

        hub = get_hub_if_exists()
    small_stacks = _switch_state(_core.small_frame_stacks(), "FERROVENT_SMALL_STACKS=0 or FERROVENT_ARENA_CACHE=0")
    lines = [
        f"ferrovent {_core.__version__}",
        f"greenlet {greenlet.__version__}",
        f"{platform.python_implementation()} {platform.python_version()} ({sys.platform}, {platform.machine()})",
        f"poller: {_core.POLLER}",
        "CPython-internals optimisations:",
        f"  small frame stacks: {small_stacks}",
        f"  arena cache:        {_switch_state(_core.arena_cache(), 'FERROVENT_ARENA_CACHE=0')}",
        f"monkey-patched: {_patch_state()}",
    ]
    if hub is None:
        return [*lines, "hub: none in this thread yet"]
    return [*lines, f"hub: {hub!r}", *_hub_counters(hub)]


def print_info(hub: Any = None, file: Any = None) -> None:
    """Prints `info_lines` to ``file`` (default stdout)."""
    print("\n".join(info_lines(hub)), file=file if file is not None else sys.stdout)
