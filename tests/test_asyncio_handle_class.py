"""The handles ferrovent's loop makes in Rust (ferrovent.asyncio._handle.Handle, a subclass of asyncio.Handle with
a direct GC traverse and dealloc) behave as asyncio.Handle's own: compared, observation by observation, with an
asyncio.Handle made of the same values; and everything they hold is still seen by the collector. The whole file
runs again with the class switched off (FERROVENT_ASYNCIO_HANDLE_CLASS=0), where the handles are asyncio.Handle."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import gc
import os
import pickle
import subprocess
import sys
import weakref

import ferrovent.asyncio
import pytest
from ferrovent.asyncio import _handle, _loop

SWITCHED_OFF = os.environ.get("FERROVENT_ASYNCIO_HANDLE_CLASS") == "0"


class Box:
    """Something a handle's arguments can hold, that can hold the handle back (a cycle), and be weakly referenced."""

    handle: object = None

    def hold(self) -> Box:
        return self


@pytest.fixture
def loop():
    loop = ferrovent.asyncio.new_event_loop()
    yield loop
    loop.close()


def callback(*args):
    return args


def twin(loop, handle):
    """An asyncio.Handle made by asyncio's own __init__ with the values `handle` holds."""
    return asyncio.Handle(handle._callback, handle._args, loop, handle._context)


def outcome(call):
    try:
        return ("returned", call())
    except Exception as exc:  # the exception's type and message are what is compared
        return (type(exc), str(exc))


def test_the_class_is_ferrovents_subclass_named_handle_where_allowed(loop):
    handle = loop.call_soon(callback)
    made = _handle.Handle is not None
    assert made == (loop._fast is not None and not SWITCHED_OFF and sys.version_info[:2] in _handle._CHECKED_PYTHONS)
    assert isinstance(handle, asyncio.Handle)
    if made:
        assert type(handle) is _handle.Handle and type(handle).__mro__[1:] == asyncio.Handle.__mro__
        assert (type(handle).__name__, type(handle).__qualname__) == ("Handle", "Handle")
        assert type(handle).__module__ == "ferrovent.asyncio._handle"
        assert type(handle).__doc__ == asyncio.Handle.__doc__
    else:
        assert type(handle) is asyncio.Handle
    if sys.version_info[:2] in _handle._CHECKED_PYTHONS and _loop.FAST_PATH:
        assert made or SWITCHED_OFF


def test_repr_cancel_and_run_are_asyncios(loop):
    seen = []
    handle = loop.call_soon(seen.append, "ran")
    other = twin(loop, handle)
    assert repr(handle) == repr(other) and str(handle) == str(other)
    assert handle.cancelled() is other.cancelled() is False
    if hasattr(asyncio.Handle, "get_context"):
        assert handle.get_context() is handle._context
    handle._run()
    assert seen == ["ran"]
    handle.cancel()
    other.cancel()
    assert handle.cancelled() and repr(handle) == repr(other)
    assert handle._callback is None and handle._args is None
    loop.run_until_complete(asyncio.sleep(0))
    assert seen == ["ran"]


def test_attributes_slots_and_comparisons_are_asyncios(loop):
    handle = loop.call_soon(callback, 1)
    other = twin(loop, handle)
    assert not hasattr(handle, "__dict__")
    assert outcome(lambda: setattr(handle, "extra", 1)) == outcome(lambda: setattr(other, "extra", 1))
    assert outcome(lambda: handle.extra) == outcome(lambda: other.extra)
    assert outcome(lambda: handle < other) == outcome(lambda: other < twin(loop, handle))
    assert handle == handle and handle != other and hash(handle) != hash(other)
    assert sys.getsizeof(handle) == sys.getsizeof(other)
    handle._repr = "set"  # a slot is still writable
    assert handle._repr == "set"
    timer = loop.call_later(10, callback)
    assert type(timer) is asyncio.TimerHandle and timer < loop.call_later(20, callback) and timer == timer


def test_pickling_and_copying_fail_or_succeed_as_for_asyncios(loop):
    handle = loop.call_soon(callback, 1)
    other = twin(loop, handle)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        mine, asyncios = (functools.partial(pickle.dumps, made, protocol) for made in (handle, other))
        assert outcome(mine) == outcome(asyncios)
    copied = copy.copy(handle)
    assert type(copied) is type(handle) and repr(copied) == repr(copy.copy(other))
    made = type(handle)(callback, (2,), loop)
    assert type(made) is type(handle) and made._run() is None and made._args == (2,)


def test_methods_patched_on_asyncio_handle_or_on_the_class_are_what_runs(loop, monkeypatch):
    handle = loop.call_soon(callback)
    monkeypatch.setattr(asyncio.Handle, "__repr__", lambda self: "patched")
    monkeypatch.setattr(asyncio.Handle, "cancelled", lambda self: "asked")
    assert repr(handle) == "patched" and handle.cancelled() == "asked"
    assert repr(loop.call_soon(callback)) == "patched"
    ran = []
    own_run = asyncio.Handle._run
    # on ferrovent's class (asyncio.Handle's when switched off), which the fast path then leaves to run it
    monkeypatch.setattr(type(handle), "_run", lambda self: (ran.append(self), own_run(self))[1])
    queued = loop.call_soon(callback)
    loop.run_until_complete(asyncio.sleep(0))
    assert handle in ran and queued in ran


def test_class_assignment_and_subclassing_are_as_for_asyncios(loop):
    class Slotted(asyncio.Handle):
        __slots__ = ()

    handle = loop.call_soon(callback, 1)
    own = type(handle)
    handle.__class__ = Slotted
    assert type(handle) is Slotted and handle._args == (1,)
    handle.__class__ = own
    assert type(handle) is own and repr(handle) == repr(twin(loop, handle))
    if own is not asyncio.Handle:
        with pytest.raises(TypeError):
            type("Sub", (own,), {})  # not subclassable: asyncio.Handle is, as before


def test_a_del_given_to_asyncio_handle_runs_for_the_loops_handles(loop, monkeypatch):
    deleted = []
    monkeypatch.setattr(asyncio.Handle, "__del__", lambda self: deleted.append(self._args), raising=False)
    loop.call_soon(callback, "gone")
    loop.run_until_complete(asyncio.sleep(0))
    assert ("gone",) in deleted


def test_the_collector_sees_what_a_handle_holds(loop):
    handle = loop.call_soon(callback, 1)
    other = twin(loop, handle)
    assert gc.is_tracked(handle)
    assert gc.get_referents(handle)[:-1] == gc.get_referents(other)[:-1]
    assert gc.get_referents(handle)[-1] is type(handle) and gc.get_referents(other)[-1] is asyncio.Handle


def test_a_cycle_through_a_handles_args_is_collected(loop):
    gc.collect()
    gc.disable()
    try:
        box = Box()
        box.handle = loop.call_soon(callback, box)  # handle -> args -> box -> handle
        gone = weakref.ref(box)
        handle_gone = weakref.ref(box.handle)
        loop.run_until_complete(asyncio.sleep(0))  # the handle ran and left the ready queue
        del box
        assert gone() is not None  # only the collector can free a cycle
        gc.collect()
        assert gone() is None and handle_gone() is None
    finally:
        gc.enable()


def test_a_cycle_through_a_handles_callback_and_context_is_collected(loop):
    var = contextvars.ContextVar("var")
    gc.collect()
    gc.disable()
    try:
        box = Box()
        context = contextvars.copy_context()
        box.handle = loop.call_soon(box.hold, context=context)  # handle -> bound method -> box -> handle
        context.run(var.set, box.handle)  # handle -> context -> handle
        gone = weakref.ref(box)
        handle_gone = weakref.ref(box.handle)
        loop.run_until_complete(asyncio.sleep(0))
        del box, context
        gc.collect()
        assert gone() is None and handle_gone() is None
    finally:
        gc.enable()


def test_weak_references_and_their_callbacks(loop):
    handle = loop.call_soon(callback, 1)
    called = []
    ref = weakref.ref(handle, called.append)
    assert ref() is handle
    loop.run_until_complete(asyncio.sleep(0))
    del handle
    assert ref() is None and called == [ref]


def test_a_handle_kept_alive_only_by_a_weakref_callback(loop):
    box = Box()
    handle = loop.call_soon(callback, "late")
    ran = []
    # only the callback's closure holds the handle once the loop has run it
    keeper = weakref.ref(box, lambda _ref, handle=handle: ran.append(handle._run() or handle._args))
    handle_gone = weakref.ref(handle)
    loop.run_until_complete(asyncio.sleep(0))
    del handle
    assert handle_gone() is not None
    del box
    assert ran == [("late",)]
    del keeper
    assert handle_gone() is None


def test_a_long_chain_of_handles_is_freed_without_exhausting_the_stack(loop):
    first = handle = loop.call_soon(callback)
    for _ in range(200_000):
        handle = loop.call_soon(handle)  # each handle the callback of the next (asyncio does not check callbacks)
    gone = weakref.ref(first)
    loop._ready.clear()
    del first, handle
    assert gone() is None


def test_the_same_with_the_class_switched_off():
    if SWITCHED_OFF:
        pytest.skip("already switched off")
    environment = dict(os.environ, FERROVENT_ASYNCIO_HANDLE_CLASS="0")
    tests_dir = os.path.dirname(os.path.dirname(__file__))
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", "not switched_off"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment, cwd=tests_dir)
    assert out.returncode == 0, out.stdout + out.stderr
