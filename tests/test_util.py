"""ferrovent.util: wrap_errors, format_run_info and print_run_info."""

from __future__ import annotations

import _thread
import io

import ferrovent
import pytest
from ferrovent.util import format_run_info, print_run_info, wrap_errors

pytestmark = pytest.mark.timeout(10)


def parse(text):
    """Turns ``text`` into an int."""
    return int(text)


def test_wrap_errors_returns_the_listed_exceptions():
    wrapped = wrap_errors((ValueError, KeyError), parse)
    assert wrapped("5") == 5
    assert isinstance(wrapped("x"), ValueError)
    with pytest.raises(TypeError):
        wrapped(None)
    assert wrapped.__name__ == "parse" and wrapped.__doc__ == parse.__doc__
    assert repr(wrapped) == repr(parse) and str(wrapped) == str(parse)
    assert wrapped.__module__ == parse.__module__


def test_wrap_errors_keeps_a_greenlet_from_being_reported_as_failed():
    g = ferrovent.spawn(wrap_errors(ValueError, parse), "nope")
    assert isinstance(g.get(), ValueError) and g.successful()


def parked_in_a_named_function(ready):
    ready.set()
    ferrovent.sleep(10)


def test_format_run_info_shows_threads_and_every_greenlets_stack():
    from ferrovent.event import Event

    ready = Event()
    g = ferrovent.spawn(parked_in_a_named_function, ready)
    ready.wait()
    started, release = _thread.allocate_lock(), _thread.allocate_lock()
    started.acquire()
    release.acquire()

    def in_thread():
        started.release()
        release.acquire()

    _thread.start_new_thread(in_thread, ())
    started.acquire()
    try:
        text = "\n".join(format_run_info())
    finally:
        release.release()
        g.kill()
    assert "* Threads" in text and "* Greenlets" in text
    assert "(CURRENT)" in text and "in_thread" in text
    assert "parked_in_a_named_function" in text  # the parked greenlet's stack, found through gc
    assert f"+--- {g!r}" in text and "Running:" in text  # a child of the main greenlet, which spawned it
    assert "Parent: <Hub" in text


def test_format_run_info_can_leave_stacks_out():
    text = "\n".join(format_run_info(thread_stacks=False, greenlet_stacks=False))
    assert "stack elided" in text
    assert "test_format_run_info_can_leave_stacks_out" not in text


def test_print_run_info_writes_the_same_lines():
    out = io.StringIO()
    print_run_info(file=out, limit=2)
    assert out.getvalue().startswith("*" * 80 + "\n* Threads\n")
