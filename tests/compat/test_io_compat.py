"""Cooperative I/O scenarios (socket, select, poll, selectors, ssl) run on stock gevent and on ferrovent.

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


# --- running --------------------------------------------------------------------------------------------------------


@functools.cache
def gevent_io_result(name: str) -> Result:
    return run_script_scenario("gevent", Path(__file__), name)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", list(IO_SCENARIOS))
def test_io_scenario(name, impl_name):
    expected = IO_SCENARIOS[name]
    result = run_script_scenario(impl_name, Path(__file__), name)
    check_agreement(result, expected.expected, expected.reports, impl_name, lambda: gevent_io_result(name))


def main(name: str) -> None:
    import ferrovent as lib  # the implementation under test: the runner aliases gevent under this name

    trace: list = []
    IO_SCENARIOS[name].func(lib, trace)
    print_trace(trace)


if __name__ == "__main__":
    main(sys.argv[1])
