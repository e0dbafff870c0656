"""The asyncio loop's Rust fast path (call_soon's handles, the ready queue's run) keeps asyncio's behaviour: the
same observations on ferrovent's loop, with the fast path on and off (FERROVENT_ASYNCIO_FAST=0), as on the
default loop."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import socket
import subprocess
import sys
import time

import ferrovent.asyncio
from ferrovent.asyncio import _loop
from ferrovent.asyncio._lookup import dict_first

VAR = contextvars.ContextVar("VAR", default="unset")


def observe(new_loop) -> list:
    """What a user sees of call_soon and the running of callbacks, as JSON-able values."""
    seen: list = []
    loop = new_loop()
    errors: list = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        handle = loop.call_soon(seen.append, "first")
        timer = loop.call_later(0, seen.append, "timer")
        # the handle's class may be ferrovent's subclass of asyncio.Handle (test_asyncio_handle_class.py)
        seen.append([type(handle).__name__, isinstance(handle, asyncio.Handle), type(timer) is asyncio.TimerHandle])

        def queue_more() -> None:
            seen.append("queue_more")
            loop.call_soon(seen.append, "queued while running: next iteration")

        def fail() -> None:
            raise ValueError("boom")

        loop.call_soon(queue_more)
        failing = loop.call_soon(fail)
        loop.call_soon(seen.append, "after the failure")
        loop.call_soon(seen.append, "cancelled").cancel()
        context = contextvars.copy_context()
        context.run(VAR.set, "given")
        loop.call_soon(lambda: seen.append(VAR.get()), context=context)
        VAR.set("current")
        loop.call_soon(lambda: (seen.append(VAR.get()), VAR.set("changed by a callback")))
        loop.call_soon(lambda: seen.append(VAR.get()))
        VAR.set("unset")
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.run_until_complete(asyncio.sleep(0))
        seen.append([(c["message"], repr(c["exception"]), c["handle"] is failing) for c in errors])

        loop.call_soon(seen.append, "before the interrupt")
        loop.call_soon(lambda: (_ for _ in ()).throw(KeyboardInterrupt))
        loop.call_soon(seen.append, "left queued by the interrupt")
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            seen.append(["interrupted", len(loop._ready)])

        seen.append(loop.get_debug())
        loop.set_debug(True)
        seen.append(loop.get_debug())
        traced = loop.call_soon(seen.append, "debug")
        seen.append(traced._source_traceback[-1].name)
        # debug mode's iteration notes the handle running (its slow-callback warning names it)
        loop.call_soon(lambda: seen.append(loop._current_handle is not None))
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.set_debug(False)
        loop.call_soon(lambda: seen.append(loop._current_handle is not None))
        loop.call_soon(loop.stop)
        loop.run_forever()

        future = loop.create_future()
        seen.append([type(future) is asyncio.Future, future.get_loop() is loop, future.done()])
        before = time.monotonic()
        now = loop.time()
        seen.append(before <= now <= time.monotonic())
    finally:
        loop.close()
    try:
        loop.call_soon(seen.append, "closed")
    except RuntimeError as exc:
        seen.append(str(exc))
    return seen


def observe_tasks(new_loop) -> list:
    """What a user sees of create_task: the task, its name and context, a task factory, debug mode's creation
    traceback, a closed loop."""
    seen: list = []
    loop = new_loop()

    async def report(label: str) -> list:
        return [label, VAR.get(), asyncio.current_task().get_name().startswith("Task-")]

    try:
        task = loop.create_task(report("plain"))
        seen.append([type(task) is asyncio.Task, task.get_loop() is loop])
        tasks = [task, loop.create_task(report("named"), name="given")]
        if sys.version_info >= (3, 11):  # create_task's context
            context = contextvars.copy_context()
            context.run(VAR.set, "in a context")
            tasks.append(loop.create_task(report("context"), context=context))
        seen.append([t.get_name() == "given" for t in tasks])
        seen.append(loop.run_until_complete(asyncio.gather(*tasks)))

        made: list = []

        def factory(loop, coro, **kwargs):
            made.append(sorted(kwargs))
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        by_factory = loop.create_task(report("factory"), name="from the factory")
        seen.append([made, by_factory.get_name(), loop.run_until_complete(by_factory)])
        loop.set_task_factory(None)

        loop.set_debug(True)

        def create_here() -> asyncio.Task:
            return loop.create_task(report("debug"))

        traced = create_here()
        seen.append(traced._source_traceback[-1].name)  # the frame that called create_task
        seen.append(loop.run_until_complete(traced))
        loop.set_debug(False)
    finally:
        loop.close()
    never_run = report("closed")
    try:
        loop.create_task(never_run)
    except RuntimeError as exc:
        seen.append(str(exc))
    finally:
        never_run.close()
    return seen


def test_tasks_are_created_on_ferrovents_loop_as_on_the_default_loop():
    assert observe_tasks(ferrovent.asyncio.new_event_loop) == observe_tasks(asyncio.new_event_loop)


def test_callbacks_behave_on_ferroventss_loop_as_on_the_default_loop():
    assert observe(ferrovent.asyncio.new_event_loop) == observe(asyncio.new_event_loop)


def test_the_fast_path_is_used_where_allowed():
    loop = ferrovent.asyncio.new_event_loop()
    try:
        assert (loop._fast is not None) == _loop.FAST_PATH
        # the Rust create_task takes asyncio's signature of 3.11 on
        assert ("create_task" in vars(loop)) == (_loop.FAST_PATH and sys.version_info >= (3, 11))
        if sys.version_info[:2] in _loop._FAST_PATH_PYTHONS:
            assert _loop.FAST_PATH or os.environ.get("FERROVENT_ASYNCIO_FAST")
    finally:
        loop.close()


def test_with_the_fast_path_switched_off_callbacks_behave_the_same():
    script = (
        "import json, ferrovent.asyncio, test_asyncio_fast_path as t\n"
        "loop = ferrovent.asyncio.new_event_loop(); assert loop._fast is None; loop.close()\n"
        "new_loop = ferrovent.asyncio.new_event_loop\n"
        "print(json.dumps([t.observe(new_loop), t.observe_tasks(new_loop)]))\n"
    )
    environment = dict(os.environ, FERROVENT_ASYNCIO_FAST="0", PYTHONPATH=os.path.dirname(__file__))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=environment)
    assert out.returncode == 0, out.stderr
    expected = [observe(asyncio.new_event_loop), observe_tasks(asyncio.new_event_loop)]
    assert json.loads(out.stdout) == json.loads(json.dumps(expected))


def test_a_replaced_handle_init_or_run_is_used(monkeypatch):
    made, ran = [], []
    own_init, own_run = asyncio.Handle.__init__, asyncio.Handle._run

    def init(self, *args, **kwargs):
        made.append(self)
        own_init(self, *args, **kwargs)

    def run(self):
        ran.append(self)
        own_run(self)

    loop = ferrovent.asyncio.new_event_loop()
    loop.call_soon(print).cancel()  # a handle made before: the loop has found Handle.__init__ asyncio's own
    monkeypatch.setattr(asyncio.Handle, "__init__", init)
    monkeypatch.setattr(asyncio.Handle, "_run", run)
    try:
        seen = []
        handle = loop.call_soon(seen.append, 1)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert seen == [1] and handle in made and handle in ran


def test_create_future_makes_asyncios_future_of_the_moment(monkeypatch):
    class Future(asyncio.Future):
        pass

    monkeypatch.setattr(asyncio.futures, "Future", Future)  # asyncio's create_future looks it up at each call
    loop = ferrovent.asyncio.new_event_loop()
    try:
        future = loop.create_future()
        assert type(future) is Future and future.get_loop() is loop
    finally:
        loop.close()


def test_a_loop_class_that_defines_its_state_is_read_through_it():
    class AlwaysDebug(ferrovent.asyncio.EventLoop):
        @property
        def _debug(self) -> bool:
            return True

        @_debug.setter
        def _debug(self, value: bool) -> None:
            self.__dict__["_debug"] = value  # kept under the same name, which the property hides

    loop = AlwaysDebug()
    try:
        assert loop.get_debug()
        handle = loop.call_soon(lambda: None)
        assert handle._source_traceback is not None  # made by debug mode's call_soon
        ran_in_debug = []
        loop.call_soon(lambda: ran_in_debug.append(loop._current_handle is not None))
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert ran_in_debug == [True]
    finally:
        loop.close()


def test_the_loops_state_is_read_from_its_dict_only_where_the_lookup_would_find_it_there():
    class Plain:
        _buffer = None  # a class attribute: the instance's own comes first

    class Guarded(Plain):
        _conn_lost = property(lambda self: 0)

    class Looked(Plain):
        def __getattribute__(self, name: str):
            return super().__getattribute__(name)

    names = ("_conn_lost", "_buffer")
    assert dict_first(Plain, names)
    assert not dict_first(Guarded, names)
    assert not dict_first(Looked, names)
    assert dict_first(_loop.EventLoop, _loop._LOOP_STATE)


def test_a_replaced_clock_is_the_loops_clock(monkeypatch):
    loop = ferrovent.asyncio.new_event_loop()
    try:
        monkeypatch.setattr(time, "monotonic", lambda: 1234.5)  # asyncio's time() reads time.monotonic at each call
        assert loop.time() == 1234.5
        fired = []
        loop.call_at(1234.5, fired.append, "due")  # due by the replaced clock: the next iteration runs it
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert fired == ["due"]
    finally:
        loop.close()


def flags_seen(new_loop) -> list:
    """What call_soon, call_at, create_task and get_debug do after the loop's _debug and _closed are assigned without
    set_debug/close, given values that are not bools, and deleted."""
    seen: list = []
    loop = new_loop()

    def attempt(call) -> object:
        try:
            return call()
        except Exception as exc:  # the exception's type is what is compared
            return type(exc).__name__

    try:
        loop._debug = 1
        seen.append([loop.get_debug(), loop.call_soon(print)._source_traceback is not None])
        loop._debug = []
        seen.append([loop.get_debug(), loop.call_soon(print)._source_traceback is not None])
        loop._debug = False
        loop._closed = "yes"
        seen.append([attempt(lambda: loop.call_soon(print)), loop.is_closed(), attempt(lambda: loop.call_at(0, print))])
        loop._closed = None
        seen.append([attempt(lambda: type(loop.call_soon(print)).__name__), loop.is_closed()])
        seen.append(attempt(lambda: type(loop.call_at(0, print)).__name__))
        del loop._debug
        seen.append([attempt(loop.get_debug), attempt(lambda: loop.call_soon(print)), "_debug" in vars(loop)])
        loop._debug = True
        loop.call_soon(loop.stop)
        loop.run_forever()
        seen.append([loop.get_debug(), loop.call_soon(print)._source_traceback is not None])
        loop._ready.clear()
    finally:
        loop.close()
    seen.append([loop.is_closed(), attempt(lambda: loop.call_soon(print)), attempt(lambda: loop.call_later(1, print))])
    coroutine = asyncio.sleep(0)
    try:
        loop.create_task(coroutine)
    except RuntimeError as exc:
        seen.append(str(exc))
    coroutine.close()
    return seen


def test_the_loops_flags_however_assigned_are_what_call_soon_sees():
    assert flags_seen(ferrovent.asyncio.new_event_loop) == flags_seen(asyncio.new_event_loop)


def test_call_soon_replaced_on_the_instance_or_overridden_by_a_subclass_is_what_runs():
    from unittest import mock

    class Counting(ferrovent.asyncio.EventLoop):
        def call_soon(self, callback, *args, context=None):
            seen.append("subclass")
            return super().call_soon(callback, *args, context=context)

    seen: list = []
    loop = Counting()
    try:
        loop.call_soon(seen.append, "ran")
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert seen == ["subclass", "subclass", "ran"]
    finally:
        loop.close()
    loop = ferrovent.asyncio.new_event_loop()
    try:
        own = loop.call_soon
        with mock.patch.object(loop, "call_soon", wraps=own) as patched:
            asyncio.Handle.cancel(loop.call_soon(print))
            assert patched.call_count == 1
        assert loop.call_soon == own  # the patch undone
        loop.call_soon = lambda *args, **kwargs: seen.append("replaced")
        loop.call_soon(print)
        assert seen[-1] == "replaced"
    finally:
        loop.close()


def test_a_ready_fds_callbacks_are_those_of_its_registration_now():
    """The loop dispatches a ready fd to the reader and writer its registration holds at the select: each add or
    remove of one (which replaces the selector key) is what the next select sees, as on the default loop."""

    async def dispatched() -> list:
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        seen: list = []
        try:
            right.send(b"x")  # `left` is readable and writable from now on
            loop.add_reader(left, seen.append, "reader 1")
            await asyncio.sleep(0)
            loop.add_writer(left, seen.append, "writer")
            await asyncio.sleep(0)
            loop.add_reader(left, seen.append, "reader 2")
            await asyncio.sleep(0)
            loop.remove_writer(left)
            await asyncio.sleep(0)
            loop.remove_reader(left)
            await asyncio.sleep(0)
            return seen
        finally:
            left.close()
            right.close()

    def run(new_loop) -> list:
        loop = new_loop()
        try:
            return loop.run_until_complete(dispatched())
        finally:
            loop.close()

    seen = run(ferrovent.asyncio.new_event_loop)
    assert seen == run(asyncio.new_event_loop)
    # each step changes the registration before the callbacks queued at its select run: a replaced reader or a
    # removed writer is cancelled by then, so each callback runs once, the writer only while registered
    assert seen == ["reader 1", "writer", "reader 2"]
