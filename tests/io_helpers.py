"""Helpers shared by the cooperative I/O tests (ferrovent side)."""

from __future__ import annotations

import ferrovent


def fd_waits() -> int:
    """The loop's parked fd waits, once greenlets that just finished one have had their turn to leave.

    Tests compare it before and after (other tests in the process may have left waits of their own).
    """
    ferrovent.sleep(0)
    return ferrovent.get_hub().loop.fd_waiter_count
