"""ferrovent.event: Event and AsyncResult, including wake order, links, kills, timeouts and other OS threads."""

from __future__ import annotations

import _thread
import io
import time
import traceback

import ferrovent
import pytest
from ferrovent.event import AsyncResult, Event
from ferrovent.exceptions import BlockingSwitchOutError, LoopExit
from greenlet import getcurrent

pytestmark = pytest.mark.timeout(10)


def waiter(event, log, name):
    """Waits on ``event`` and records ``(name, what wait returned)``."""
    log.append((name, event.wait()))


# -- Event -------------------------------------------------------------------------------------------------------


def test_flag_state_and_aliases():
    event = Event()
    assert not event.is_set() and not event.isSet() and not event.ready()
    event.set()
    assert event.is_set() and event.isSet() and event.ready()
    assert event.wait() is True
    event.clear()
    assert not event.is_set()
    assert "clear" in repr(event)


def test_wait_times_out_with_false():
    start = time.monotonic()
    assert Event().wait(0.02) is False
    assert time.monotonic() - start >= 0.015


def test_waiters_wake_in_the_order_they_waited_and_before_later_spawns():
    event, log = Event(), []
    greenlets = [ferrovent.spawn(waiter, event, log, n) for n in range(5)]
    ferrovent.sleep(0)
    event.set()
    ferrovent.spawn(log.append, "spawned after set")
    ferrovent.joinall(greenlets)
    ferrovent.sleep(0)
    assert log == [(n, True) for n in range(5)] + ["spawned after set"]


def test_set_then_clear_still_wakes_the_waiters_with_true():
    event, log = Event(), []
    greenlets = [ferrovent.spawn(waiter, event, log, n) for n in range(3)]
    ferrovent.sleep(0)
    event.set()
    event.clear()
    ferrovent.joinall(greenlets)
    assert log == [(0, True), (1, True), (2, True)]
    assert not event.is_set()


def test_a_waiter_that_starts_during_the_wake_up_of_a_set_then_clear_is_woken_too():
    # As in gevent: the wake-up runs behind the greenlets already queued, and takes every waiter it then finds.
    event, log = Event(), []
    early = ferrovent.spawn(waiter, event, log, "early")
    ferrovent.sleep(0)
    late = [
        ferrovent.spawn(waiter, event, log, "late"),
        ferrovent.spawn(lambda: log.append(("timeout", event.wait(ferrovent.Timeout(5))))),
    ]
    event.set()
    event.clear()
    after = ferrovent.spawn(lambda: log.append(("after", event.wait(0.01))))  # starts after the wake-up: waits
    ferrovent.joinall([early, *late, after], raise_error=True)
    assert log == [("early", True), ("late", True), ("timeout", True), ("after", False)]


def test_a_late_waiter_on_a_set_event_runs_after_the_woken_ones():
    event, log = Event(), []
    blocked = [ferrovent.spawn(waiter, event, log, n) for n in range(2)]
    ferrovent.sleep(0)
    event.set()
    assert event.wait() is True  # the flag is set, but the two woken waiters go first
    log.append("late")
    ferrovent.joinall(blocked)
    assert log == [(0, True), (1, True), "late"]


def test_killing_a_waiter_unlinks_it():
    event = Event()
    g = ferrovent.spawn(event.wait)
    ferrovent.sleep(0)
    assert event.linkcount() == 1
    g.kill()
    assert event.linkcount() == 0
    event.set()
    ferrovent.sleep(0)
    assert g.dead


def test_a_stray_wake_does_not_end_a_wait():
    event, log = Event(), []
    g = ferrovent.spawn(waiter, event, log, "w")
    ferrovent.sleep(0)
    ferrovent.get_hub().loop.wake(g, "not from the event")
    ferrovent.sleep(0)
    assert log == [] and not g.dead
    event.set()
    g.join()
    assert log == [("w", True)]


def test_rawlink_runs_in_the_hub_after_set_and_unlink_cancels():
    event, calls = Event(), []

    def callback(source):
        calls.append((source, getcurrent() is ferrovent.get_hub()))

    def cancelled(source):
        calls.append("cancelled one ran")

    event.rawlink(callback)
    event.rawlink(cancelled)
    event.set()
    assert calls == []  # never inline
    event.unlink(cancelled)  # after set, before the hub ran it
    ferrovent.sleep(0)
    assert calls == [(event, True)]
    assert event.linkcount() == 0


def test_rawlink_on_a_set_event_is_called_soon_and_twice_linked_runs_once():
    event, calls = Event(), []
    event.set()
    event.rawlink(calls.append)
    ferrovent.sleep(0)
    assert calls == [event]
    event.clear()
    record = calls.append  # the same callable object, linked twice
    event.rawlink(record)
    event.rawlink(record)
    event.set()
    ferrovent.sleep(0)
    assert calls == [event, event]


def test_rawlink_rejects_non_callables():
    with pytest.raises(TypeError):
        Event().rawlink(42)


def test_a_failing_callback_is_reported_and_the_others_still_run():
    hub = ferrovent.get_hub()
    event, calls, stream = Event(), [], io.StringIO()

    def broken(source):
        raise ValueError("broken callback")

    event.rawlink(broken)
    event.rawlink(calls.append)
    saved, hub.exception_stream = hub.exception_stream, stream
    try:
        event.set()
        ferrovent.sleep(0)
    finally:
        hub.exception_stream = saved
    assert calls == [event]
    assert "ValueError: broken callback" in stream.getvalue()
    assert "failed with ValueError" in stream.getvalue()


def test_waiting_in_the_hub_is_refused():
    event, errors = Event(), []

    def in_hub():
        try:
            event.wait()
        except BlockingSwitchOutError as e:
            errors.append(e)

    ferrovent.get_hub().loop.run_callback(in_hub)
    ferrovent.sleep(0)
    assert len(errors) == 1
    assert event.linkcount() == 0


def test_waiting_forever_on_an_event_nobody_can_set_raises_loop_exit():
    with pytest.raises(LoopExit):
        Event().wait()


def test_a_thread_sets_an_event_a_greenlet_waits_on():
    event = Event()
    _thread.start_new_thread(lambda: (time.sleep(0.02), event.set()), ())
    assert event.wait(5) is True


# -- AsyncResult -------------------------------------------------------------------------------------------------


def test_value_reaches_every_waiter_in_order():
    result, log = AsyncResult(), []

    def getter(name):
        log.append((name, result.get()))

    greenlets = [ferrovent.spawn(getter, n) for n in range(3)]
    ferrovent.sleep(0)
    assert not result.ready() and not result.successful() and result.value is None
    result.set("v")
    ferrovent.joinall(greenlets)
    assert log == [(0, "v"), (1, "v"), (2, "v")]
    assert result.ready() and result.done() and result.successful()
    assert result.value == "v" and result.exception is None and result.exc_info == ()
    assert result.get_nowait() == "v" and result.result() == "v" and result.wait() == "v"


def test_unset_get_raises_timeout():
    result = AsyncResult()
    with pytest.raises(ferrovent.Timeout):
        result.get(block=False)
    with pytest.raises(ferrovent.Timeout):
        result.get_nowait()
    with pytest.raises(ferrovent.Timeout) as info:
        result.get(timeout=0.01)
    assert info.value.seconds == 0.01
    assert result.wait(0.01) is None
    assert result.linkcount() == 0


def raise_it():
    raise KeyError("inner")


def test_set_exception_is_raised_by_get_with_its_traceback():
    result = AsyncResult()
    try:
        raise_it()
    except KeyError as e:
        result.set_exception(e, exc_info=(type(e), e, e.__traceback__))
    assert result.ready() and not result.successful()
    assert isinstance(result.exception, KeyError)
    assert result.exc_info[0] is KeyError
    assert result.wait() is None
    with pytest.raises(KeyError) as info:
        result.get()
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "raise_it"


def test_set_exception_without_exc_info_and_with_a_class():
    result = AsyncResult()
    result.set_exception(ValueError("plain"))
    with pytest.raises(ValueError, match="plain"):
        result.get()
    result = AsyncResult()
    result.set_exception(ValueError)
    with pytest.raises(ValueError):
        result.get()


def test_futures_interface():
    result = AsyncResult()
    assert result.cancel() is False and result.cancelled() is False
    result.set_result(5)
    assert result.result(timeout=1) == 5 and result.done()
    assert "value=5" in repr(result)


def test_async_result_as_a_link_target():
    ok, failed = AsyncResult(), AsyncResult()
    ferrovent.spawn(lambda: 7).link(ok)
    g = ferrovent.spawn(raise_it)
    g.link(failed)
    assert ok.get() == 7
    with pytest.raises(KeyError):
        failed.get()
    assert failed.exception is g.exception
    raw = AsyncResult()
    ferrovent.spawn(lambda: "raw").rawlink(raw)
    assert raw.get() == "raw"


def test_set_from_another_os_thread_wakes_the_waiting_greenlet():
    hub = ferrovent.get_hub()
    result, others = AsyncResult(), []

    def in_thread():
        time.sleep(0.05)
        result.set(42)
        hub.loop.run_callback_threadsafe(hub.loop.remove_ref)

    hub.loop.add_ref()  # the thread's result is outstanding work: the loop must not run out meanwhile
    ferrovent.spawn(others.append, "other greenlets keep running")
    _thread.start_new_thread(in_thread, ())
    assert result.get() == 42
    assert others == ["other greenlets keep running"]


def test_set_exception_from_another_os_thread():
    result = AsyncResult()
    _thread.start_new_thread(lambda: (time.sleep(0.02), result.set_exception(OSError("from thread"))), ())
    with pytest.raises(OSError, match="from thread"):
        result.get(timeout=5)


def test_many_threads_each_resolve_their_own_result():
    results = [AsyncResult() for _ in range(8)]
    for i, result in enumerate(results):
        _thread.start_new_thread(result.set, (i,))
    assert [result.get(timeout=5) for result in results] == list(range(8))


# -- the line: order, overtaken timeouts, other threads ------------------------------------------------------------


def spin_until(deadline: float) -> None:
    """Lets real time pass without yielding, so the loop finds several timers due at once."""
    while time.monotonic() < deadline:
        pass


def test_callbacks_and_waiters_run_in_the_order_they_joined():
    event, log = Event(), []
    first = ferrovent.spawn(waiter, event, log, "first waiter")
    ferrovent.sleep(0)
    event.rawlink(lambda source: log.append("callback"))
    second = ferrovent.spawn(waiter, event, log, "second waiter")
    ferrovent.sleep(0)
    event.set()
    ferrovent.joinall([first, second])
    assert log == [("first waiter", True), "callback", ("second waiter", True)]


def test_a_set_that_overtakes_the_timeout_still_counts():
    event, log = Event(), []
    loop = ferrovent.get_hub().loop
    loop.call_later(0, event.set)  # due before the waiter's timeout, run in the same loop turn
    g = ferrovent.spawn(lambda: log.append(event.wait(0.01)))
    ferrovent.sleep(0)  # g is parked with its timeout armed
    spin_until(time.monotonic() + 0.05)  # both timers are due now: the set's runs first, then the timeout's
    g.join()
    assert log == [True] and event.linkcount() == 0


def test_a_set_from_another_thread_reaches_a_greenlet_on_its_way_into_the_line():
    hub = ferrovent.get_hub()
    event = Event()
    assert event.wait(0) is False  # the hub owns the event now
    # Another OS thread sets it while no greenlet is in the line yet, as if between a greenlet's look at the flag
    # and its wait: the thread must still have the owner's loop run the notification.
    done = _thread.allocate_lock()
    done.acquire()
    _thread.start_new_thread(lambda: (event.set(), done.release()), ())
    done.acquire()
    assert event._links.wait(hub.loop, 5) is True  # the greenlet that had looked too early is woken
