"""ferrovent.selectors: the stdlib's selectors, whose select() blocks only the calling greenlet."""

from __future__ import annotations

import os
import selectors as stdlib_selectors
import time

import ferrovent
import pytest
from ferrovent import selectors, socket

from tests.io_helpers import fd_waits

pytestmark = pytest.mark.timeout(20)

SELECTORS = [
    name
    for name in ("SelectSelector", "PollSelector", "EpollSelector", "KqueueSelector", "DevpollSelector")
    if hasattr(stdlib_selectors, name)
]


def test_names():
    public = [
        name
        for name in dir(stdlib_selectors)
        if not name.startswith("_") and not isinstance(getattr(stdlib_selectors, name), type(os))
    ]
    assert [name for name in public if not hasattr(selectors, name)] == []
    assert set(selectors.__implements__) == {"DefaultSelector", *SELECTORS}
    assert selectors.DefaultSelector.__mro__[1:].count(stdlib_selectors.DefaultSelector) == 1
    for name in SELECTORS:
        assert issubclass(getattr(selectors, name), getattr(stdlib_selectors, name))


@pytest.mark.parametrize("name", [*SELECTORS, "DefaultSelector"])
def test_select_waits_cooperatively_and_reports_keys(name):
    waits = fd_waits()
    a, b = socket.socketpair()
    selector = getattr(selectors, name)()
    with a, b, selector:
        key = selector.register(a, selectors.EVENT_READ, data="payload")
        assert selector.select(0) == []
        start = time.monotonic()
        assert selector.select(0.03) == []
        assert time.monotonic() - start >= 0.029
        others_ran = []
        ferrovent.spawn(others_ran.append, "ran")
        ferrovent.spawn_later(0.02, b.sendall, b"x")
        assert selector.select(5) == [(key, selectors.EVENT_READ)]
        assert others_ran == ["ran"]
        assert selector.select() == [(key, selectors.EVENT_READ)]  # still readable: level truth
        selector.modify(a, selectors.EVENT_READ | selectors.EVENT_WRITE)
        assert selector.select(0)[0][1] == selectors.EVENT_READ | selectors.EVENT_WRITE
        selector.unregister(a)
        assert selector.get_map() == {}
    assert fd_waits() == waits


@pytest.mark.parametrize("name", [n for n in SELECTORS if n not in ("SelectSelector", "PollSelector")])
def test_a_selector_with_its_own_fd_forgets_it_on_close(name):
    """Its fd was waited on in the loop; a later fd with the same number must not inherit that."""
    a, b = socket.socketpair()
    with a, b:
        selector = getattr(selectors, name)()
        selector.register(a, selectors.EVENT_READ)
        assert selector.select(0.01) == []
        number = selector.fileno()
        selector.close()
        selector.close()  # twice is harmless, as the stdlib's
        c, d = socket.socketpair()
        with c, d:
            assert number in (c.fileno(), d.fileno())
            reused, peer = (c, d) if c.fileno() == number else (d, c)
            ferrovent.spawn_later(0.01, peer.sendall, b"y")
            reused.settimeout(2)
            assert reused.recv(1) == b"y"
