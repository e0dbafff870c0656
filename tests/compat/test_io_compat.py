"""Cooperative I/O scenarios (socket, select, poll, selectors, ssl, file objects, os, thread pool, subprocess) run
on stock gevent and on ferrovent.

Each scenario runs in a fresh process on one implementation, through ``tests.compat.runner``'s script mode: this
file is the script, with the scenario's name as argument, and ``import ferrovent`` there gives the implementation
under test. Both implementations must produce the expected trace (so a scenario cannot pass by both being wrong
the same way), and ferrovent's must equal gevent's actual trace. Everything talks over 127.0.0.1 or socketpairs;
orderings come from events and far-apart deadlines, and elapsed times are only checked against generous bounds.
"""

from __future__ import annotations

import errno
import functools
import importlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

if __name__ == "__main__":  # run as a script: make the ``tests`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest

from tests.compat.runner import Result, check_agreement, print_trace, run_script_scenario
from tests.compat.scenarios import Scenario

# socket.timeout's name: an alias of TimeoutError since Python 3.10, a class of its own called "timeout" before.
SOCKET_TIMEOUT = "TimeoutError" if sys.version_info >= (3, 10) else "timeout"

IO_SCENARIOS: dict[str, Scenario] = {}


def io_scenario(expected: list, reports: tuple[str, ...] = ()) -> Callable:
    def register(func: Callable[[Any, list], None]) -> Callable[[Any, list], None]:
        IO_SCENARIOS[func.__name__] = Scenario(func, json.loads(json.dumps(expected)), tuple(reports))
        return func

    return register


def io(lib) -> SimpleNamespace:
    """The implementation's cooperative modules (``gevent.socket`` or ``ferrovent.socket``, and so on)."""
    names = ("socket", "select", "selectors", "ssl", "exceptions")
    return SimpleNamespace(**{name: importlib.import_module(f"{lib.__name__}.{name}") for name in names})


def took(start: float, low: float, high: float = 3.0) -> bool:
    return low <= time.monotonic() - start < high


def listener(m: SimpleNamespace):
    srv = m.socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    return srv


# --- select and poll --------------------------------------------------------------------------------------------


@io_scenario(
    expected=[
        ["idle pair", [], ["a"], []],
        ["data waiting", ["a"], ["a"], []],
        ["already readable, no timeout", ["a"], [], []],
        ["fd numbers come back as given", True],
    ]
)
def select_reports_what_is_ready_now(lib, trace):
    m = io(lib)
    a, b = m.socket.socketpair()
    names = {a: "a", b: "b"}

    def named(result):
        return [[names[x] for x in part] for part in result]

    trace.append(["idle pair", *named(m.select.select([a], [a], [], 0))])
    b.sendall(b"x")
    trace.append(["data waiting", *named(m.select.select([a], [a], [], 0))])
    trace.append(["already readable, no timeout", *named(m.select.select([a], [], [], None))])
    trace.append(["fd numbers come back as given", m.select.select([a.fileno()], [], [], 0)[0] == [a.fileno()]])


@io_scenario(
    expected=[
        "tick 0",
        "tick 1",
        "tick 2",
        "writer sent",
        ["select woke for", ["a"], True],
        ["timed out empty", [[], [], []], True],
        ["nothing to watch sleeps", True],
        "negative timeout: ValueError",
    ]
)
def select_parks_only_the_caller(lib, trace):
    m = io(lib)
    a, b = m.socket.socketpair()

    def ticker():
        for i in range(3):
            trace.append(f"tick {i}")
            lib.sleep(0.005)

    def writer():
        lib.sleep(0.1)
        trace.append("writer sent")
        b.sendall(b"x")

    lib.spawn(ticker)
    lib.spawn(writer)
    start = time.monotonic()
    readable, _, _ = m.select.select([a], [], [], 5)
    trace.append(["select woke for", ["a" for x in readable if x is a], took(start, 0.09)])
    a.recv(1)
    start = time.monotonic()
    trace.append(["timed out empty", list(map(list, m.select.select([a], [], [], 0.05))), took(start, 0.045)])
    start = time.monotonic()
    m.select.select([], [], [], 0.03)
    trace.append(["nothing to watch sleeps", took(start, 0.025)])
    try:
        m.select.select([a], [], [], -1)
    except ValueError:
        trace.append("negative timeout: ValueError")


@io_scenario(
    expected=[
        ["nothing yet", []],
        ["times out in ms", [], True],
        ["woken by the writer", [["a", ["POLLIN"]]]],
        ["modified to POLLOUT", [["a", ["POLLIN", "POLLOUT"]]]],
        ["unregistered", []],
        "unregister again: KeyError",
    ]
)
def poll_reports_ready_fds(lib, trace):
    m = io(lib)
    a, b = m.socket.socketpair()
    flags = ("POLLIN", "POLLOUT")

    def named(events):
        return [
            ["a" if fd == a.fileno() else fd, [f for f in flags if mask & getattr(m.select, f)]] for fd, mask in events
        ]

    poller = m.select.poll()
    poller.register(a, m.select.POLLIN)
    trace.append(["nothing yet", named(poller.poll(0))])
    start = time.monotonic()
    trace.append(["times out in ms", named(poller.poll(50)), took(start, 0.045)])
    lib.spawn_later(0.05, b.sendall, b"x")
    trace.append(["woken by the writer", named(poller.poll(5000))])
    poller.modify(a, m.select.POLLIN | m.select.POLLOUT)
    trace.append(["modified to POLLOUT", named(poller.poll(5000))])
    poller.unregister(a)
    trace.append(["unregistered", named(poller.poll(0))])
    try:
        poller.unregister(a)
    except KeyError:
        trace.append("unregister again: KeyError")


@io_scenario(expected=[["nothing yet", []], ["woken", "payload", True], ["times out", [], True]])
def default_selector_waits_cooperatively(lib, trace):
    m = io(lib)
    a, b = m.socket.socketpair()
    selector = m.selectors.DefaultSelector()
    selector.register(a, m.selectors.EVENT_READ, data="payload")
    trace.append(["nothing yet", selector.select(0)])
    lib.spawn_later(0.05, b.sendall, b"x")
    [(key, events)] = selector.select(5)
    trace.append(["woken", key.data, events == m.selectors.EVENT_READ])
    a.recv(1)
    start = time.monotonic()
    trace.append(["times out", selector.select(0.05), took(start, 0.045)])
    selector.close()


# --- sockets ----------------------------------------------------------------------------------------------------


@io_scenario(
    expected=[
        ["timeouts read back", 0.25, False, None, True],
        ["settimeout raises on time", SOCKET_TIMEOUT, "timed out", True],
        "non-blocking: BlockingIOError",
        ["Timeout around recv", True, True],
        ["the socket still works", "after"],
        ["connect refused", "ConnectionRefusedError", errno.ECONNREFUSED],
    ]
)
def socket_timeouts(lib, trace):
    m = io(lib)
    a, b = m.socket.socketpair()
    b.settimeout(0.25)
    first = b.gettimeout()
    b.setblocking(False)
    blocking = b.getblocking()
    b.setblocking(True)
    trace.append(["timeouts read back", first, blocking, b.gettimeout(), b.getblocking()])
    b.settimeout(0.1)
    start = time.monotonic()
    try:
        b.recv(1)
    except m.socket.timeout as exc:
        trace.append(["settimeout raises on time", type(exc).__name__, str(exc), took(start, 0.09)])
    b.setblocking(False)
    try:
        b.recv(1)
    except BlockingIOError:
        trace.append("non-blocking: BlockingIOError")
    b.setblocking(True)
    timeout = lib.Timeout(0.1)
    start = time.monotonic()
    try:
        with timeout:
            b.recv(1)
    except lib.Timeout as exc:
        trace.append(["Timeout around recv", exc is timeout, took(start, 0.09)])
    a.sendall(b"after")
    trace.append(["the socket still works", b.recv(10).decode()])
    srv = listener(m)
    port = srv.getsockname()[1]
    srv.close()
    refused = m.socket.socket()
    try:
        refused.connect(("127.0.0.1", port))
    except OSError as exc:
        trace.append(["connect refused", type(exc).__name__, m.socket.socket().connect_ex(("127.0.0.1", port))])


@io_scenario(
    expected=[
        ["recv killed", "GreenletExit"],
        ["accept killed", "GreenletExit"],
        ["close woke the reader", True, errno.EBADF],
        ["second reader", "ConcurrentObjectUseError"],
        ["first reader got", "z"],
        ["accepted after the kill", True],
    ]
)
def socket_cancellation(lib, trace):
    m = io(lib)
    a, b = m.socket.socketpair()
    srv = listener(m)
    reader, acceptor = lib.spawn(b.recv, 1), lib.spawn(srv.accept)
    lib.sleep(0.01)
    lib.killall([reader, acceptor])
    trace.append(["recv killed", type(reader.value).__name__])
    trace.append(["accept killed", type(acceptor.value).__name__])

    c, d = m.socket.socketpair()

    def read_until_closed():
        try:
            d.recv(1)
        except OSError as exc:  # gevent raises its subclass cancel_wait_ex, ferrovent a plain OSError
            return exc

    doomed = lib.spawn(read_until_closed)
    lib.sleep(0.01)
    d.close()
    trace.append(["close woke the reader", isinstance(doomed.get(), OSError), doomed.value.errno])

    first = lib.spawn(b.recv, 1)
    lib.sleep(0.01)
    try:
        b.recv(1)
    except m.exceptions.ConcurrentObjectUseError as exc:
        trace.append(["second reader", type(exc).__name__])
    a.sendall(b"z")
    trace.append(["first reader got", first.get().decode()])

    client = m.socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    trace.append(["accepted after the kill", isinstance(conn, m.socket.socket)])
    client.close()


@io_scenario(
    expected=[
        ["factories are cooperative", [True, True, True, True]],
        ["lines", "first\n", "second\n"],
        ["big sendall arrives intact", True],
        ["wait_read timeout", SOCKET_TIMEOUT, "timed out"],
        ["wait_write on a writable fd returns", True],
    ]
)
def socket_data_paths(lib, trace):
    m = io(lib)
    srv = listener(m)
    client = m.socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    a, b = m.socket.socketpair()
    made = [client, conn, a, m.socket.fromfd(a.fileno(), a.family, a.type)]
    trace.append(["factories are cooperative", [isinstance(s, m.socket.socket) for s in made]])
    writer = conn.makefile("w", encoding="utf-8", newline="\n")
    reader = client.makefile("r", encoding="utf-8", newline="\n")
    writer.write("first\nsecond\n")
    writer.flush()
    trace.append(["lines", reader.readline(), reader.readline()])
    payload = bytes(range(256)) * 8192
    sender = lib.spawn(a.sendall, payload)
    received = bytearray()
    while len(received) < len(payload):
        received += b.recv(1 << 20)
    sender.join()
    trace.append(["big sendall arrives intact", bytes(received) == payload])
    try:
        m.socket.wait_read(b.fileno(), timeout=0.05)
    except m.socket.timeout as exc:
        trace.append(["wait_read timeout", type(exc).__name__, str(exc)])
    m.socket.wait_write(a.fileno(), timeout=1)
    trace.append(["wait_write on a writable fd returns", True])


# --- TLS ----------------------------------------------------------------------------------------------------------


@io_scenario(
    expected=[
        ["cooperative TLS sockets", True, True],
        ["1 MB each way, byte-exact", True, True],
        ["handshake against a silent peer", True, True],
    ]
)
def tls_both_ends(lib, trace):
    from tests.tls_helpers import HOSTNAME, client_context, server_context, temporary_cert

    m = io(lib)
    cert = temporary_cert()
    srv = listener(m)
    upload, download = bytes(range(256)) * 4096, bytes(reversed(range(256))) * 4096

    def serve():
        conn, _ = srv.accept()
        tls = server_context(cert, m.ssl).wrap_socket(conn, server_side=True)
        received = bytearray()
        while len(received) < len(upload):
            received += tls.recv(65536)
        tls.sendall(download)
        return tls, bytes(received) == upload

    server = lib.spawn(serve)
    raw = m.socket.create_connection(srv.getsockname(), timeout=10)
    client = client_context(cert, m.ssl).wrap_socket(raw, server_hostname=HOSTNAME)
    client.sendall(upload)
    received = bytearray()
    while len(received) < len(download):
        received += client.recv(65536)
    server_side, upload_ok = server.get()
    trace.append(
        ["cooperative TLS sockets", isinstance(client, m.ssl.SSLSocket), isinstance(server_side, m.socket.socket)]
    )
    trace.append(["1 MB each way, byte-exact", upload_ok, bytes(received) == download])

    silent = m.socket.create_connection(srv.getsockname(), timeout=0.2)
    start = time.monotonic()
    try:
        client_context(cert, m.ssl).wrap_socket(silent, server_hostname=HOSTNAME)
    except OSError as exc:  # gevent raises SSLError, the stdlib TimeoutError; ferrovent's is both
        trace.append(["handshake against a silent peer", "timed out" in str(exc), took(start, 0.19)])


# --- file objects, os, thread pool, subprocess -------------------------------------------------------------------


def files(lib) -> SimpleNamespace:
    names = ("fileobject", "os", "threadpool", "selectors", "subprocess")
    return SimpleNamespace(**{name: importlib.import_module(f"{lib.__name__}.{name}") for name in names})


def ticking(lib, trace: list, count: int = 3) -> None:
    """Spawns a greenlet that traces ``count`` ticks 5 ms apart: seen before a result, they show it parked."""

    def ticker():
        for i in range(count):
            trace.append(f"tick {i}")
            lib.sleep(0.005)

    lib.spawn(ticker)


FILE_CLASSES = ("FileObjectPosix", "FileObjectThread", "FileObjectBlock")


@io_scenario(
    expected=[
        [name, "str", "snow\u2603\n", "bytes", "snow\u2603\n", True, True, [True, False, False], True]
        for name in FILE_CLASSES
    ]
    + [
        ["rtb", "ValueError", "can't have text and binary mode at once"],
        ["rb with encoding", "ValueError", "binary mode doesn't take an encoding argument"],
        ["bufsize and buffering", "TypeError"],
        ["default", "FileObjectPosix"],
    ]
)
def file_objects_follow_open(lib, trace):
    import os
    import tempfile

    m = files(lib)
    for name in FILE_CLASSES:
        cls = getattr(m.fileobject, name)
        fd, path = tempfile.mkstemp()
        os.close(fd)
        try:
            with cls(path, "w", encoding="utf-8") as f:
                f.write("snow\N{SNOWMAN}\n")
            with cls(path, encoding="utf-8") as f:
                text = f.read()
            with cls(path, "rb") as f:
                data = f.read()
            named = cls(path)
            named.close()
            with open(path, "rb") as raw, cls(raw, "rb", close=False) as over_file:
                over_file.seek(4)
                seeked = over_file.read(3) == "\N{SNOWMAN}".encode()
            r, w = os.pipe()
            read1 = [hasattr(cls(r, "rb", close=False), "read1"), hasattr(cls(r, "rt", close=False), "read1")]
            reader = cls(r)
            read1.append(hasattr(reader, "read1"))
            reader.close()
            os.close(w)
            trace.append(
                [
                    name,
                    type(text).__name__,
                    text,
                    type(data).__name__,
                    data.decode(),
                    named.closed and named.name == path,
                    seeked,
                    read1,
                    named.close() is None,  # a second close does nothing
                ]
            )
        finally:
            os.remove(path)
    for label, kwargs in (("rtb", {"mode": "rtb"}), ("rb with encoding", {"mode": "rb", "encoding": "ascii"})):
        try:
            m.fileobject.FileObjectBlock(1, **kwargs)
        except ValueError as exc:
            trace.append([label, "ValueError", str(exc)])
    try:
        m.fileobject.FileObjectBlock(1, "rb", bufsize=0, buffering=0)
    except TypeError:
        trace.append(["bufsize and buffering", "TypeError"])
    trace.append(["default", m.fileobject.FileObject.__name__])


@io_scenario(
    expected=[
        step
        for name in ("FileObjectPosix", "FileObjectThread")
        for step in (
            name,
            "tick 0",
            "tick 1",
            "tick 2",
            "wrote",
            ["read", "hello\n", True],
            "fd closed with the object",
        )
    ]
)
def file_object_reads_park_only_the_caller(lib, trace):
    import os

    m = files(lib)
    for name in ("FileObjectPosix", "FileObjectThread"):
        cls = getattr(m.fileobject, name)
        r, w = os.pipe()
        reader, writer = cls(r, "r"), cls(w, "w")
        trace.append(name)
        ticking(lib, trace)

        def write_later(writer=writer):
            lib.sleep(0.1)
            trace.append("wrote")
            writer.write("hello\n")
            writer.close()

        lib.spawn(write_later)
        start = time.monotonic()
        line = reader.readline()
        trace.append(["read", line, took(start, 0.09)])
        reader.close()
        try:
            os.close(r)
        except OSError:
            trace.append("fd closed with the object")


@io_scenario(
    expected=[
        ["apply", 9, "apply_async is a greenlet", True, "callback", [16]],
        ["map", [0, 1, 4, 9], "map_async", [0, 1, 4, 9], "imap", [0, 1, 4, 9], "imap_unordered", [0, 1, 4, 9]],
        ["maxsize+1 accepted", 3, "the next waits", True, "size", 2],
        ["raised", "ValueError", "reported", True],
        ["thread result", True],
    ],
    reports=("ValueError",),
)
def thread_pool_maps_and_counts(lib, trace):
    import threading

    m = files(lib)
    pool = m.threadpool.ThreadPool(2)
    got = []
    glet = pool.apply_async(pow, (4, 2), callback=got.append)
    glet.join()
    lib.sleep(0)
    trace.append(
        ["apply", pool.apply(pow, (3, 2)), "apply_async is a greenlet", isinstance(glet, lib.Greenlet), "callback", got]
    )
    squares = [x * x for x in range(4)]
    trace.append(
        [
            "map",
            pool.map(lambda x: x * x, range(4)),
            "map_async",
            pool.map_async(lambda x: x * x, range(4)).get(),
            "imap",
            list(pool.imap(lambda x: x * x, range(4))),
            "imap_unordered",
            sorted(pool.imap_unordered(lambda x: x * x, range(4))),
        ]
    )
    assert trace[-1][1] == squares
    release = threading.Event()  # a real Event: the jobs block their threads on it
    held = [pool.spawn(release.wait, 5) for _ in range(3)]
    waiter = lib.spawn(pool.spawn, release.wait, 5)
    lib.sleep(0.05)
    trace.append(["maxsize+1 accepted", len(pool), "the next waits", not waiter.ready(), "size", pool.size])
    release.set()
    for job in [*held, waiter.get()]:
        job.get()

    def fail():
        raise ValueError("in a thread")

    try:
        pool.apply(fail)
    except ValueError:
        trace.append(["raised", "ValueError", "reported", True])
    trace.append(["thread result", hasattr(m.threadpool, "ThreadResult")])
    pool.kill()


@io_scenario(
    expected=[
        ["timed out", "TimeoutError"],
        ["result", 42, "others ran", True, "done", True, "callbacks", 1],
        ["lib.wait", True, "cf.wait", True, "as_completed", True, "immediate callback", True],
    ]
)
def thread_pool_executor_futures(lib, trace):
    import concurrent.futures as cf

    m = files(lib)
    executor = m.threadpool.ThreadPoolExecutor(2)
    future = executor.submit(lambda: (time.sleep(0.2), 42)[1])
    calls = []
    future.add_done_callback(calls.append)
    try:
        future.result(timeout=0.01)
    except cf.TimeoutError:
        trace.append(["timed out", "TimeoutError"])
    other = lib.spawn(lambda: "other")
    value = future.result()
    lib.sleep(0)
    trace.append(["result", value, "others ran", other.ready(), "done", future.done(), "callbacks", len(calls)])
    second = executor.submit(pow, 2, 3)
    immediate = []
    trace.append(
        [
            "lib.wait",
            lib.wait([second]) == [second],
            "cf.wait",
            list(cf.wait([future]).done) == [future],
            "as_completed",
            list(cf.as_completed([future])) == [future],
            "immediate callback",
            (future.add_done_callback(immediate.append), immediate == [future])[1],
        ]
    )

    executor.shutdown()


@io_scenario(
    expected=[
        ["stdlib names", True, True, True],
        ["tp_write", 5, "tp_read", "hello"],
        ["nb_read", "tick 0", "tick 1", "tick 2", "wrote", "later"],
    ]
)
def os_functions(lib, trace):
    import os

    m = files(lib)
    trace.append(["stdlib names", m.os.pipe is os.pipe, m.os.getpid is os.getpid, m.os.path is os.path])
    # fork_and_watch is tested on ferrovent alone (tests/test_os.py): stock gevent's fork_and_watch followed by
    # waitpid(pid, 0) hangs now and then, even in a plain script.
    r, w = m.os.pipe()
    trace.append(["tp_write", m.os.tp_write(w, b"hello"), "tp_read", m.os.tp_read(r, 10).decode()])
    m.os.make_nonblocking(r)
    steps = ["nb_read"]
    ticking(lib, steps)

    def write_later():
        lib.sleep(0.1)
        steps.append("wrote")
        os.write(w, b"later")

    lib.spawn(write_later)
    steps.append(m.os.nb_read(r, 10).decode())
    trace.append(steps)


@io_scenario(
    expected=[
        ["default is GeventSelector", True],
        ["ready", ["a"]],
        ["closed fd", "ValueError"],
    ]
)
def gevent_selector(lib, trace):
    import os

    m = files(lib)
    sock = io(lib).socket
    trace.append(["default is GeventSelector", m.selectors.DefaultSelector is m.selectors.GeventSelector])
    a, b = sock.socketpair()
    with m.selectors.GeventSelector() as selector:
        selector.register(a, m.selectors.EVENT_READ, "a")
        lib.spawn_later(0.05, b.sendall, b"x")
        trace.append(["ready", [key.data for key, _ in selector.select(timeout=5)]])
    closed = sock.socket()
    os.close(closed.fileno())
    try:
        m.selectors.GeventSelector().register(closed, m.selectors.EVENT_READ)
    except ValueError:
        trace.append(["closed fd", "ValueError"])
    try:
        closed.close()
    except OSError:
        pass


@io_scenario(
    expected=[
        ["waited", 11, "others ran", True],
        ["left the block", True, True, True],
    ]
)
def popen_as_a_waitable(lib, trace):
    import sys

    m = files(lib)
    popen = m.subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(11)"])
    other = lib.spawn(lambda: "other")
    lib.wait([popen])
    trace.append(["waited", popen.poll(), "others ran", other.ready()])
    child = [sys.executable, "-c", "import time; time.sleep(60)"]
    with m.subprocess.Popen(child, stdout=m.subprocess.PIPE) as popen:
        reader = lib.spawn(popen.stdout.read)  # parked in the pipe, inside the buffered layer
        lib.sleep(0.1)
        popen.kill()
    reader.join(5)
    trace.append(["left the block", popen.stdout.closed, popen.poll() is not None, reader.ready()])


# --- running --------------------------------------------------------------------------------------------------------


@functools.cache
def gevent_io_result(name: str) -> Result:
    return run_script_scenario("gevent", Path(__file__), name)


# Scenarios stock gevent itself fails on older CPythons: there it is not run, and ferrovent is held to the expected
# trace alone. name -> (first CPython where gevent passes, why).
GEVENT_FAILS_BEFORE = {
    "popen_as_a_waitable": ((3, 11), "gevent's Popen.__exit__ closing a pipe under a parked reader: reentrant call"),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", list(IO_SCENARIOS))
def test_io_scenario(name, impl_name):
    expected = IO_SCENARIOS[name]
    first_good, why = GEVENT_FAILS_BEFORE.get(name, ((0,), ""))
    gevent_fails = sys.version_info < first_good
    if gevent_fails and impl_name == "gevent":
        pytest.skip(f"stock gevent fails this on CPython < {'.'.join(map(str, first_good))}: {why}")
    result = run_script_scenario(impl_name, Path(__file__), name)
    oracle = (lambda: result) if gevent_fails else (lambda: gevent_io_result(name))
    check_agreement(result, expected.expected, expected.reports, impl_name, oracle)


def main(name: str) -> None:
    import ferrovent as lib  # the implementation under test: the runner aliases gevent under this name

    trace: list = []
    IO_SCENARIOS[name].func(lib, trace)
    print_trace(trace)


if __name__ == "__main__":
    main(sys.argv[1])
