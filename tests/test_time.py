"""ferrovent.time: the stdlib's time module with a cooperative sleep."""

from __future__ import annotations

import os
import time as stdlib_time

import ferrovent
import pytest
from ferrovent import time

pytestmark = pytest.mark.timeout(20)


def test_every_public_name_and_the_cooperative_sleep():
    public = [name for name in dir(stdlib_time) if not name.startswith("_")]
    assert [name for name in public if not hasattr(time, name)] == []
    assert time.__implements__ == ["sleep"]
    assert time.sleep is ferrovent.sleep
    assert time.monotonic is stdlib_time.monotonic
    assert not any(isinstance(getattr(time, name), type(os)) for name in time.__all__)


def test_sleep_lets_others_run():
    order = []
    ferrovent.spawn(order.append, "other")
    start = stdlib_time.monotonic()
    time.sleep(0.02)
    assert order == ["other"]
    assert stdlib_time.monotonic() - start >= 0.019
