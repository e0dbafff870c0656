"""The public names and classes agree with stock gevent.

Import-only checks, so both implementations run in this process: nothing here creates a hub or switches.
"""

from __future__ import annotations

import importlib
import sys

import greenlet
import pytest

FUNCTIONS = [
    "spawn",
    "spawn_later",
    "spawn_raw",
    "sleep",
    "idle",
    "getcurrent",
    "get_hub",
    "joinall",
    "kill",
    "killall",
    "wait",
    "iwait",
    "with_timeout",
    "getswitchinterval",
    "setswitchinterval",
]
GREENLET_METHODS = [
    "start",
    "start_later",
    "join",
    "get",
    "kill",
    "throw",
    "link",
    "link_value",
    "link_exception",
    "rawlink",
    "unlink",
    "ready",
    "successful",
    "__enter__",
    "__exit__",
]
GREENLET_PROPERTIES = ["value", "exception", "dead", "started", "name"]
TIMEOUT_METHODS = ["start", "start_new", "cancel", "close", "__enter__", "__exit__"]
EXCEPTION_BASES = {
    "LoopExit": Exception,
    "BlockingSwitchOutError": AssertionError,
    "ConcurrentObjectUseError": AssertionError,
    "InvalidSwitchError": AssertionError,
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_exists(impl, name):
    assert callable(getattr(impl, name))


def test_greenlet_class(impl):
    assert issubclass(impl.Greenlet, greenlet.greenlet)
    assert impl.GreenletExit is greenlet.GreenletExit
    for name in GREENLET_METHODS:
        assert callable(getattr(impl.Greenlet, name)), name
    for name in GREENLET_PROPERTIES:  # on the class: an instance would create a hub in this process
        assert hasattr(impl.Greenlet, name), name


def test_timeout_class(impl):
    # Timeout is a BaseException so that `except Exception` in user code cannot swallow it.
    assert issubclass(impl.Timeout, BaseException)
    assert not issubclass(impl.Timeout, Exception)
    for name in TIMEOUT_METHODS:
        assert callable(getattr(impl.Timeout, name)), name
    assert impl.Timeout().pending is False  # a Timeout without seconds never starts a timer


@pytest.mark.parametrize("name, base", EXCEPTION_BASES.items())
def test_exception_hierarchy(impl, name, base):
    cls = getattr(importlib.import_module(f"{impl.__name__}.exceptions"), name)
    assert issubclass(cls, base)
    assert not issubclass(cls, greenlet.GreenletExit)


def test_switch_interval_is_the_interpreters(impl):
    before = impl.getswitchinterval()
    try:
        impl.setswitchinterval(0.002)
        assert impl.getswitchinterval() == pytest.approx(0.002)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        impl.setswitchinterval(before)
    assert impl.getswitchinterval() == pytest.approx(before)
