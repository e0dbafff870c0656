"""Runs one of CPython's ``test.test_asyncio`` modules as ``__main__`` and records each test's outcome.

    python child.py RESULTS_PATH test.test_asyncio.test_tasks

The record is gevent_suite's (``tests/gevent_suite/child.py``: one JSON line per event). With
``FERROVENT_ASYNCIO_SUITE=ferrovent`` ferrovent's loop is made asyncio's default before the module is imported:
its policy is set, and the stdlib's default policy makes ferrovent loops too, since the test modules put a fresh
default policy back after their tests. Every ferrovent loop created adds a ``ferrovent-loop`` event naming the test
that was running, so the report can say which tests ran on ferrovent's loop and which built a loop class of their
own (``asyncio.SelectorEventLoop(...)``, the test utilities' ``TestLoop``) and so never touched it. With
``FERROVENT_ASYNCIO_SUITE_STAND_IN=1`` (``runner --stand-in``), ``asyncio.SelectorEventLoop(selector)`` makes a
ferrovent loop as well, so the transport, socket and server tests that build that class run on ferrovent's loop.
"""

from __future__ import annotations

import os
import runpy
import sys
import unittest

from tests.gevent_suite.child import _append, recording_result_class


def _stand_in_for_selector_event_loop(loop_class: type) -> None:
    """``asyncio.SelectorEventLoop(selector)`` makes a ferrovent loop: the selector given is closed unused."""

    class StandIn(loop_class):
        def __init__(self, selector=None):
            if selector is not None:
                selector.close()
            super().__init__()

    import asyncio
    import asyncio.unix_events

    asyncio.SelectorEventLoop = asyncio.unix_events.SelectorEventLoop = StandIn


def _use_ferrovent_loops(path: str, running: list[str]) -> None:
    import asyncio
    import asyncio.unix_events

    from ferrovent.asyncio import EventLoop, EventLoopPolicy

    recorded = set()
    plain_init = EventLoop.__init__

    def recording_init(self, *args, **kwargs):
        test = running[0]
        if test not in recorded:
            recorded.add(test)
            _append(path, event="ferrovent-loop", id=test)
        plain_init(self, *args, **kwargs)

    EventLoop.__init__ = recording_init
    asyncio.unix_events._UnixDefaultEventLoopPolicy._loop_factory = EventLoop
    asyncio.set_event_loop_policy(EventLoopPolicy())
    if os.environ.get("FERROVENT_ASYNCIO_SUITE_STAND_IN") == "1":
        _stand_in_for_selector_event_loop(EventLoop)


def main() -> None:
    results_path, module_name = sys.argv[1], sys.argv[2]
    del sys.argv[1:]  # the module sees a command line of its own name only, as under ``python -m``
    sys.path[0] = ""  # as under ``python -m``: the working directory, not this file's directory
    running = ["<module>"]  # the test running now, for the ferrovent-loop events
    recording = recording_result_class(results_path)

    class NamingResult(recording):
        def startTest(self, test):
            running[0] = test.id()
            super().startTest(test)

    if os.environ.get("FERROVENT_ASYNCIO_SUITE") == "ferrovent":
        _use_ferrovent_loops(results_path, running)
    unittest.TextTestRunner.resultclass = NamingResult
    _append(results_path, event="process", module=module_name)
    runpy.run_module(module_name, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
