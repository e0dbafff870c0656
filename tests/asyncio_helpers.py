"""Helpers shared by the tests of ferrovent.asyncio (its loop, and the bridges between greenlets and coroutines)."""

from __future__ import annotations

import asyncio

from ferrovent.asyncio import new_event_loop

BOUND = 5.0  # seconds any wait in these tests may take at most


def run(coro):
    """Runs ``coro`` to its result on a fresh ferrovent loop, bounded by BOUND, and closes the loop."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, BOUND))
    finally:
        loop.close()
