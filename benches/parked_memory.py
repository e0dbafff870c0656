"""What memory parked greenlets take, as scenarios.py's memory bench and memory_parts.py read it: the process's
resident set, and a batch of greenlets each parked in a long sleep inside a Python function."""

from __future__ import annotations

import os
from types import ModuleType

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident set size, in bytes (Linux's /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def park_greenlets(lib: ModuleType, count: int) -> list:
    """`count` greenlets of `lib` (gevent or ferrovent), returned once every one is asleep for an hour."""
    started = 0

    def park() -> None:
        nonlocal started
        started += 1
        lib.sleep(3600)

    parked = [lib.spawn(park) for _ in range(count)]
    lib.sleep(0)
    lib.sleep(0)
    if started != count:
        raise RuntimeError(f"only {started} of {count} greenlets reached their sleep")
    return parked
