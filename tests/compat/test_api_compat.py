"""The smaller public names of gevent (issue 10, part 2), run on stock gevent and on ferrovent in fresh processes.

``gevent.hub``'s Waiter and re-exports, a Timeout instance given as ``timeout=``, ``iwait`` as a context manager,
spawn callbacks and spawn-tree locals, ``local.all_local_dicts_for_greenlet``, ``util.assert_switches``,
``socket.wait`` / ``ref`` / ``send(timeout=)``, ``signal_handler.ref`` and ``gevent.backdoor``. As in
test_server_compat.py, this file is also the script the runner executes (``import ferrovent`` there gives the
implementation under test); both implementations must produce the expected trace, and ferrovent's must equal
gevent's.
"""

from __future__ import annotations

import errno
import functools
import importlib
import json
import os
import signal as std_signal
import sys
from pathlib import Path
from typing import Any, Callable

if __name__ == "__main__":  # run as a script: make the ``tests`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest

from tests.compat.runner import Result, check_agreement, print_trace, run_script_scenario
from tests.compat.scenarios import Scenario

API_SCENARIOS: dict[str, Scenario] = {}


def api_scenario(expected: list, reports: tuple[str, ...] = ()) -> Callable:
    def register(func: Callable[[Any, list], None]) -> Callable[[Any, list], None]:
        API_SCENARIOS[func.__name__] = Scenario(func, json.loads(json.dumps(expected)), tuple(reports))
        return func

    return register


def module(lib, name: str):
    return importlib.import_module(f"{lib.__name__}.{name}")


# --- gevent.hub -----------------------------------------------------------------------------------------------


@api_scenario(
    expected=[
        ["kept before get", 1],
        ["switched from the hub", 2],
        ["thrown from the hub", "ValueError", "late"],
        ["switch outside the hub", "AssertionError"],
        ["re-exports", True],
        ["_get_hub is the hub", True],
    ]
)
def hub_waiter_and_names(lib, trace):
    hub_module = module(lib, "hub")
    hub = lib.get_hub()
    waiter = hub_module.Waiter()
    waiter.switch(1)
    trace.append(["kept before get", waiter.get()])

    waiter = hub_module.Waiter()
    hub.loop.run_callback(waiter.switch, 2)
    trace.append(["switched from the hub", waiter.get()])

    waiter = hub_module.Waiter()
    hub.loop.run_callback(waiter.throw, ValueError("late"))
    try:
        waiter.get()
    except ValueError as error:
        trace.append(["thrown from the hub", type(error).__name__, str(error)])

    waiter = hub_module.Waiter()
    getter = lib.spawn(waiter.get)
    lib.sleep(0)  # the getter now waits: only the hub may switch into it
    try:
        waiter.switch(3)
    except AssertionError as error:
        trace.append(["switch outside the hub", type(error).__name__])
    hub.loop.run_callback(waiter.switch, 3)
    getter.join()

    names = ("sleep", "kill", "spawn_raw", "iwait", "wait", "signal", "reinit", "get_hub", "getcurrent")
    trace.append(["re-exports", all(callable(getattr(hub_module, name)) for name in names)])
    trace.append(["_get_hub is the hub", hub_module._get_hub() is hub])


# --- a Timeout instance as timeout= ---------------------------------------------------------------------------


@api_scenario(
    expected=[
        ["Event.wait", False, "pending after", False],
        ["AsyncResult.wait", None],
        ["AsyncResult.get raises it", True],
        ["Queue.get raises it", True],
        ["Queue.put raises it", True],
        ["Queue.peek raises it", True],
        ["Channel.get raises it", True],
        ["Queue.join", False],
        ["Group.join", False],
        ["Greenlet.join returns", True],
        ["Greenlet.get raises it", True],
        ["Semaphore.acquire", False],
        ["RLock.acquire", False],
        ["its own exception", "KeyError"],
        ["ready: no timer started", True, False],
    ]
)
def timeout_instance_as_timeout(lib, trace):
    event_module, queue_module, lock_module = module(lib, "event"), module(lib, "queue"), module(lib, "lock")
    Timeout = lib.Timeout

    timeout = Timeout(0.01)
    trace.append(["Event.wait", event_module.Event().wait(timeout=timeout), "pending after", timeout.pending])
    trace.append(["AsyncResult.wait", event_module.AsyncResult().wait(timeout=Timeout(0.01))])

    def raised_by(call):
        timeout = Timeout(0.01)
        try:
            call(timeout)
        except Timeout as fired:
            return fired is timeout
        return "nothing raised"

    trace.append(["AsyncResult.get raises it", raised_by(lambda t: event_module.AsyncResult().get(timeout=t))])
    trace.append(["Queue.get raises it", raised_by(lambda t: queue_module.Queue().get(timeout=t))])
    full = queue_module.Queue(1)
    full.put(1)
    trace.append(["Queue.put raises it", raised_by(lambda t: full.put(2, timeout=t))])
    trace.append(["Queue.peek raises it", raised_by(lambda t: queue_module.Queue().peek(timeout=t))])
    trace.append(["Channel.get raises it", raised_by(lambda t: queue_module.Channel().get(timeout=t))])
    trace.append(["Queue.join", full.join(timeout=Timeout(0.01))])
    group = module(lib, "pool").Group()
    group.spawn(lib.sleep, 10)
    trace.append(["Group.join", group.join(timeout=Timeout(0.01))])
    group.kill()

    sleeper = lib.spawn(lib.sleep, 10)
    sleeper.join(timeout=Timeout(0.01))
    trace.append(["Greenlet.join returns", not sleeper.ready()])
    trace.append(["Greenlet.get raises it", raised_by(lambda t: sleeper.get(timeout=t))])
    sleeper.kill()

    semaphore = lock_module.Semaphore(0)
    trace.append(["Semaphore.acquire", semaphore.acquire(timeout=Timeout(0.01))])
    held = lock_module.RLock()
    lib.spawn(held.acquire).join()  # another greenlet holds it
    trace.append(["RLock.acquire", held.acquire(timeout=Timeout(0.01))])

    try:
        event_module.Event().wait(timeout=Timeout(0.01, KeyError))
    except KeyError as error:
        trace.append(["its own exception", type(error).__name__])

    done = event_module.Event()
    done.set()
    unused = Timeout(0.01)
    trace.append(["ready: no timer started", done.wait(timeout=unused), unused.pending])


# --- greenlets: iwait, spawn callbacks, the spawn tree --------------------------------------------------------


@api_scenario(
    expected=[
        ["first ready", "b"],
        ["links left after the with", 0],
        ["both ready: the first, the other still linked", True, 1],
        ["unlinked on exit", 0],
        ["spawn callback saw", ["cb", "cb", "cb"]],
        ["after removal", ["cb", "cb", "cb"]],
        ["child shares its spawner's tree locals", True, True],
        ["spawning_greenlet", True],
        ["minimal_ident", True, True],
    ]
)
def greenlet_extras(lib, trace):
    event_module = module(lib, "event")
    a, b = event_module.Event(), event_module.Event()
    lib.spawn(b.set)
    with lib.iwait([a, b]) as ready:
        trace.append(["first ready", "b" if next(ready) is b else "a"])
    trace.append(["links left after the with", a.linkcount()])
    first, second = module(lib, "lock").Semaphore(), module(lib, "lock").Semaphore()
    with lib.iwait((first, second)) as ready:
        came = next(ready)
        trace.append(["both ready: the first, the other still linked", came is first, second.linkcount()])
    trace.append(["unlinked on exit", second.linkcount()])

    seen = []

    def callback(glet):
        seen.append("cb")

    lib.Greenlet.add_spawn_callback(callback)
    try:
        lib.spawn(lambda: None).join()
        lib.spawn_later(0.001, lambda: None).join()
        g = lib.Greenlet(lambda: None)
        g.start()
        g.join()
        trace.append(["spawn callback saw", list(seen)])
    finally:
        lib.Greenlet.remove_spawn_callback(callback)
    lib.spawn(lambda: None).join()
    trace.append(["after removal", list(seen)])

    def parent():
        lib.getcurrent().spawn_tree_locals["key"] = "value"
        child = lib.spawn(lambda: None)
        child.join()
        return child

    spawner = lib.spawn(parent)
    child = spawner.get()
    trace.append(
        [
            "child shares its spawner's tree locals",
            child.spawn_tree_locals is spawner.spawn_tree_locals,
            child.spawn_tree_locals == {"key": "value"},
        ]
    )
    trace.append(["spawning_greenlet", child.spawning_greenlet() is spawner])
    idents = {spawner.minimal_ident, child.minimal_ident}
    trace.append(["minimal_ident", len(idents) == 2, all(isinstance(i, int) and i >= 0 for i in idents)])


# --- local and util -------------------------------------------------------------------------------------------


@api_scenario(
    expected=[
        ["local dicts", [["local", {"foo": 42}]]],
        ["no switch", "AssertionError"],
        ["a switch passes", True],
        ["an exception passes through", "NameError"],
    ]
)
def local_dicts_and_assert_switches(lib, trace):
    local_module, util = module(lib, "local"), module(lib, "util")

    def run():
        value = local_module.local()
        value.foo = 42
        found = local_module.all_local_dicts_for_greenlet(lib.getcurrent())
        return [[kind.__name__, values] for (kind, ident), values in found if ident == id(value)]

    trace.append(["local dicts", lib.spawn(run).get()])

    try:
        with util.assert_switches():
            pass
    except AssertionError as error:
        trace.append(["no switch", "AssertionError" if isinstance(error, AssertionError) else type(error).__name__])
    with util.assert_switches():
        lib.sleep(0.001)  # a real wait (ferrovent's sleep(0) returns at once when nothing else is ready)
    trace.append(["a switch passes", True])
    try:
        with util.assert_switches():
            raise NameError("x")
    except NameError as error:
        trace.append(["an exception passes through", type(error).__name__])


# --- sockets and signals --------------------------------------------------------------------------------------


class _NeverFires:
    """A watcher whose start() blocks the caller: socket.wait must still time out."""

    callback = None

    def __init__(self, lib):
        self.lib = lib

    def start(self, *args):
        self.lib.sleep(10)

    def stop(self):
        pass


@api_scenario(
    expected=[
        ["socket.wait timed out", True],
        ["ref", True, False],
        ["send to a closed socket", True],
        ["signal_handler.ref", False, True, False],
        ["delivered in the greenlet_class", ["usr1"], True],
        ["closed", False, True],
    ]
)
def sockets_and_signals(lib, trace):
    socket_module = module(lib, "socket")
    try:
        socket_module.wait(_NeverFires(lib), timeout=0.01)
    except socket_module.timeout:
        trace.append(["socket.wait timed out", True])

    sock = socket_module.socket()
    before = sock.ref
    sock.ref = False
    trace.append(["ref", before, sock.ref])
    sock.close()
    try:
        sock.send(b"a", timeout=1)
    except OSError as error:
        trace.append(["send to a closed socket", error.errno == errno.EBADF])

    handler = lib.signal_handler(std_signal.SIGUSR1, lambda: None)
    try:
        states = [handler.ref]
        handler.ref = True
        states.append(handler.ref)
        handler.ref = False
        states.append(handler.ref)
        trace.append(["signal_handler.ref", *states])
    finally:
        handler.cancel()

    ran_in = []

    class Delivery(lib.Greenlet):
        pass

    class MyHandler(lib.signal_handler):
        greenlet_class = Delivery

    delivered = module(lib, "event").Event()

    def on_signal(name):
        ran_in.append(isinstance(lib.getcurrent(), Delivery))
        delivered.set()
        return name

    handler = MyHandler(std_signal.SIGUSR1, on_signal, "usr1")
    try:
        os.kill(os.getpid(), std_signal.SIGUSR1)
        delivered.wait(5)
        trace.append(["delivered in the greenlet_class", ["usr1"] if ran_in else [], all(ran_in)])
    finally:
        handler.cancel()

    sock = socket_module.socket()
    before = sock.closed
    sock.close()
    trace.append(["closed", before, sock.closed])


# --- backdoor -------------------------------------------------------------------------------------------------


def _read_until(conn, ending: bytes) -> str:
    data = b""
    while not data.endswith(ending):
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode().replace("\r\n", "\n")


@api_scenario(
    expected=[
        ["banner", True],
        ["2+2", "4\n>>> "],
        ["print in the console's greenlet", "from the console\n>>> "],
        ["names given", "'given'\n>>> "],
        ["closed after quit()", True],
        ["our stdout is ours again", True],
    ]
)
def backdoor_session(lib, trace):
    backdoor, socket_module = module(lib, "backdoor"), module(lib, "socket")
    stdout = sys.stdout
    server = backdoor.BackdoorServer(("127.0.0.1", 0), banner="Welcome!", locals={"name": "given"})
    server.start()
    try:
        with socket_module.create_connection(("127.0.0.1", server.server_port)) as conn:
            trace.append(["banner", _read_until(conn, b">>> ").startswith("Welcome!")])
            conn.sendall(b"2+2\r\n")
            trace.append(["2+2", _read_until(conn, b">>> ")])
            conn.sendall(b"print('from the console')\r\n")
            trace.append(["print in the console's greenlet", _read_until(conn, b">>> ")])
            conn.sendall(b"name\r\n")
            trace.append(["names given", _read_until(conn, b">>> ")])
            conn.sendall(b"quit()\r\n")
            trace.append(["closed after quit()", conn.recv(100) == b""])
    finally:
        server.stop()
    trace.append(["our stdout is ours again", sys.stdout is stdout])


# --- running --------------------------------------------------------------------------------------------------


@functools.cache
def gevent_api_result(name: str) -> Result:
    return run_script_scenario("gevent", Path(__file__), name)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", list(API_SCENARIOS))
def test_api_scenario(name, impl_name):
    expected = API_SCENARIOS[name]
    result = run_script_scenario(impl_name, Path(__file__), name)
    oracle = functools.partial(gevent_api_result, name)
    check_agreement(result, expected.expected, expected.reports, impl_name, oracle)


def main(name: str) -> None:
    import ferrovent as lib  # the implementation under test: the runner aliases gevent under this name

    trace: list = []
    API_SCENARIOS[name].func(lib, trace)
    print_trace(trace)


if __name__ == "__main__":
    main(sys.argv[1])
