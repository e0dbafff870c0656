"""ferrovent.socket: cooperative sockets with the stdlib's semantics, on real fds over 127.0.0.1 and AF_UNIX."""

from __future__ import annotations

import errno
import http.client
import os
import socket as stdlib_socket
import sys
import time
import warnings

import ferrovent
import pytest
from ferrovent import socket
from ferrovent.exceptions import ConcurrentObjectUseError

from tests.io_helpers import fd_waits

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv


def tcp_pair(listener):
    """A connected (client, server-side) pair of cooperative TCP sockets."""
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    return client, server


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


def fill(sock) -> int:
    """Writes into ``sock`` until its buffers are full; returns how much went in."""
    sock.setblocking(False)
    total = 0
    try:
        while True:
            total += sock.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    sock.setblocking(True)
    return total


# -- the module ----------------------------------------------------------------------------------------------


def test_every_public_stdlib_name_is_there():
    missing = [
        name
        for name in dir(stdlib_socket)
        if not name.startswith("_") and not isinstance(getattr(stdlib_socket, name), type(os))
    ]
    missing = [name for name in missing if not hasattr(socket, name)]
    assert missing == []
    assert socket._GLOBAL_DEFAULT_TIMEOUT is stdlib_socket._GLOBAL_DEFAULT_TIMEOUT
    for name in socket.__implements__ + socket.__extensions__:
        assert callable(getattr(socket, name)), name
    assert {"socket", "create_connection", "socketpair", "fromfd", "getaddrinfo"} <= set(socket.__implements__)
    assert set(socket.__all__) >= set(stdlib_socket.__all__)


def test_the_socket_class_is_a_stdlib_socket():
    assert issubclass(socket.socket, stdlib_socket.socket)
    assert socket.SocketType is socket.socket
    assert socket.timeout is stdlib_socket.timeout
    if sys.version_info >= (3, 10):
        assert socket.timeout is TimeoutError


def test_factories_return_cooperative_sockets(listener, tmp_path):
    a, b = socket.socketpair()
    client, server = tcp_pair(listener)
    copy = socket.fromfd(a.fileno(), a.family, a.type)
    dup = client.dup()
    srv = socket.create_server(("127.0.0.1", 0))
    for sock in (a, b, client, server, copy, dup, srv):
        assert type(sock) is socket.socket
        sock.close()
    assert a.family == stdlib_socket.AF_UNIX


# -- data ------------------------------------------------------------------------------------------------------


def test_tcp_round_trip_with_every_receive_form(listener):
    client, server = tcp_pair(listener)
    with client, server:
        client.sendall(b"hello")
        assert server.recv(5) == b"hello"
        client.send(b"into")
        buffer = bytearray(10)
        assert server.recv_into(buffer, 4) == 4
        assert buffer[:4] == b"into"
        client.sendall(b"from")
        data, address = server.recvfrom(4)
        assert data == b"from"
        client.sendall(b"frin")
        assert server.recvfrom_into(buffer)[0] == 4
        client.sendmsg([b"m", b"sg"])
        assert server.recvmsg(3)[0] == b"msg"
        client.sendall(b"last")
        assert server.recvmsg_into([buffer])[0] == 4
        client.shutdown(stdlib_socket.SHUT_WR)
        assert server.recv(1) == b""


def test_ipv6_round_trip():
    if not stdlib_socket.has_ipv6:
        pytest.skip("no IPv6 in this build")
    try:
        srv = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with srv:
        client = socket.create_connection(srv.getsockname()[:2], timeout=5)
        server, _ = srv.accept()
        with client, server:
            client.sendall(b"six")
            assert server.recv(3) == b"six"


def test_udp_round_trip():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        reader = ferrovent.spawn(receiver.recvfrom, 100)
        ferrovent.sleep(0.01)
        assert not reader.dead  # parked, not blocking the thread
        sender.sendto(b"datagram", receiver.getsockname())
        data, address = reader.get(timeout=5)
        assert data == b"datagram"
        assert address[1] == sender.getsockname()[1]
        sender.sendto(b"flags", 0, receiver.getsockname())
        assert receiver.recv(100) == b"flags"


def test_unix_socket_by_path(tmp_path):
    path = str(tmp_path / "sock")
    srv = socket.socket(socket.AF_UNIX)
    with srv:
        srv.bind(path)
        srv.listen()
        acceptor = ferrovent.spawn(srv.accept)
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(5)
        client.connect(path)
        server, _ = acceptor.get(timeout=5)
        with client, server:
            server.sendall(b"unix")
            assert client.recv(4) == b"unix"


def test_big_sendall_is_received_intact_while_both_sides_take_turns():
    a, b = socket.socketpair()
    payload = os.urandom(3 * 1024 * 1024)
    with a, b:
        writer = ferrovent.spawn(a.sendall, memoryview(payload))
        received = bytearray()
        while len(received) < len(payload):
            received += b.recv(1 << 20)
        writer.get(timeout=5)
        assert received == payload


def test_sendall_of_a_non_byte_buffer_sends_every_byte():
    import array

    a, b = socket.socketpair()
    with a, b:
        numbers = array.array("i", range(100_000))
        writer = ferrovent.spawn(a.sendall, numbers)
        received = bytearray()
        while len(received) < len(numbers) * numbers.itemsize:
            received += b.recv(1 << 20)
        writer.get(timeout=5)
        assert bytes(received) == numbers.tobytes()


def test_sendall_and_send_of_a_buffer_without_len_send_its_bytes():
    import ctypes

    class Pair(ctypes.Structure):  # the buffer protocol, but no __len__
        _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32)]

    a, b = socket.socketpair()
    with a, b:
        a.sendall(Pair(1, 2))
        assert a.send(Pair(3, 4)) == 8
        assert b.recv(16) == bytes(Pair(1, 2)) + bytes(Pair(3, 4))


def test_sendfile_sends_the_file(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(os.urandom(500_000))
    a, b = socket.socketpair()
    with a, b, open(path, "rb") as file:
        sender = ferrovent.spawn(a.sendfile, file, 1000)
        received = bytearray()
        while len(received) < 499_000:
            received += b.recv(1 << 20)
        assert sender.get(timeout=5) == 499_000
        assert bytes(received) == path.read_bytes()[1000:]
        assert file.tell() == 500_000


def test_makefile_text_and_binary(listener):
    client, server = tcp_pair(listener)
    with client, server:
        writer = server.makefile("w", encoding="utf-8", newline="\n")
        reader = client.makefile("rb")
        writer.write("first line\nsecond\n")
        writer.flush()
        assert reader.readline() == b"first line\n"
        assert reader.readline() == b"second\n"
        writer.close()
        reader.close()


def test_http_client_over_a_cooperative_connection(listener):
    """http.client, unpatched, speaks through a cooperative socket handed to it."""

    def serve():
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as request:
            while request.readline() not in (b"\r\n", b""):
                pass
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")

    server = ferrovent.spawn(serve)
    connection = http.client.HTTPConnection(*listener.getsockname(), timeout=5)
    connection.sock = socket.create_connection(listener.getsockname(), timeout=5)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"hello")
    connection.close()
    server.get(timeout=5)


# -- timeouts --------------------------------------------------------------------------------------------------


def test_timeout_settings_read_back_as_the_stdlib_ones():
    ours, theirs = socket.socket(), stdlib_socket.socket()
    with ours, theirs:
        for operation, argument in [
            ("settimeout", 2),
            ("settimeout", 0),
            ("settimeout", None),
            ("setblocking", False),
            ("setblocking", True),
            ("settimeout", 0.25),
        ]:
            getattr(ours, operation)(argument)
            getattr(theirs, operation)(argument)
            assert (ours.gettimeout(), ours.getblocking(), ours.timeout) == (
                theirs.gettimeout(),
                theirs.getblocking(),
                theirs.timeout,
            )
        for bad in (-1, "1", float("nan")):
            with pytest.raises((ValueError, TypeError)) as ours_error:
                ours.settimeout(bad)
            with pytest.raises((ValueError, TypeError)) as theirs_error:
                theirs.settimeout(bad)
            assert (type(ours_error.value), str(ours_error.value)) == (
                type(theirs_error.value),
                str(theirs_error.value),
            )
        assert ours.gettimeout() == 0.25
        assert not os.get_blocking(ours.fileno()), "the fd itself always stays non-blocking"


def test_default_timeout_applies_to_new_and_accepted_sockets(listener):
    assert socket.getdefaulttimeout() is None
    socket.setdefaulttimeout(3.5)
    try:
        fresh = socket.socket()
        client, server = tcp_pair(listener)
        assert (fresh.gettimeout(), server.gettimeout()) == (3.5, 3.5)
        for sock in (fresh, client, server):
            sock.close()
    finally:
        socket.setdefaulttimeout(None)
    listener.settimeout(5)
    client, server = tcp_pair(listener)
    with client, server:
        # The stdlib's rule: no default timeout, and a listener with one: the accepted socket blocks.
        assert server.gettimeout() is None


def test_settimeout_raises_socket_timeout_on_time():
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(0.1)
        start = time.monotonic()
        with pytest.raises(socket.timeout, match="timed out"):
            b.recv(1)
        assert 0.09 <= elapsed_since(start) < 2
        a.sendall(b"x")
        assert b.recv(1) == b"x"


def test_non_blocking_socket_raises_blocking_io_error():
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)
        with pytest.raises(BlockingIOError):
            b.recv_into(bytearray(1))


@pytest.mark.parametrize(
    ("direction", "call"),
    [
        ("read", lambda a: a.recv(1, socket.MSG_DONTWAIT)),
        ("read", lambda a: a.recv_into(bytearray(1), 1, socket.MSG_DONTWAIT)),
        ("read", lambda a: a.recvfrom(1, socket.MSG_DONTWAIT)),
        ("read", lambda a: a.recvmsg(1, 0, socket.MSG_DONTWAIT)),
        ("write", lambda a: a.send(b"x" * 65536, socket.MSG_DONTWAIT)),
        ("write", lambda a: a.sendall(b"x" * 65536, socket.MSG_DONTWAIT)),
        ("write", lambda a: a.sendmsg([b"x" * 65536], [], socket.MSG_DONTWAIT)),
    ],
    ids=["recv", "recv_into", "recvfrom", "recvmsg", "send", "sendall", "sendmsg"],
)
def test_msg_dontwait_raises_instead_of_waiting_on_a_blocking_socket(direction, call):
    a, b = socket.socketpair()
    with a, b:
        if direction == "write":
            fill(a)
        a.settimeout(5)
        start = time.monotonic()
        with pytest.raises(BlockingIOError):
            call(a)
        assert elapsed_since(start) < 1


def test_sendto_argument_errors_are_the_stdlib_ones():
    green = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain = stdlib_socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with green, plain:
        green.bind(("127.0.0.1", 0))
        address = green.getsockname()
        for args in [(b"x",), (b"x", 0, address, 4), ("x", address), (b"x", None), (b"x", "flags", address)]:
            with pytest.raises(TypeError) as expected:
                plain.sendto(*args)
            with pytest.raises(TypeError) as got:
                green.sendto(*args)
            assert str(got.value) == str(expected.value)


def test_sendall_timeout_bounds_the_whole_call():
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.2)
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            a.sendall(b"\0" * (64 * 1024 * 1024))  # nobody reads
        assert 0.19 <= elapsed_since(start) < 2


def test_connect_refused_and_connect_ex(listener):
    port = listener.getsockname()[1]
    listener.close()
    refused = socket.socket()
    refused.settimeout(5)
    with refused, pytest.raises(ConnectionRefusedError):
        refused.connect(("127.0.0.1", port))
    other = socket.socket()
    with other:
        assert other.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def test_connect_times_out_when_the_backlog_is_full():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    queued = []
    try:
        # Fill the accept queue; the kernel then drops SYNs, so the next connect hangs.
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.3)
            queued.append(probe)
            try:
                probe.connect(srv.getsockname())
            except socket.timeout:
                break
        else:
            pytest.skip("the kernel kept accepting connections into a full backlog")
        late = socket.socket()
        queued.append(late)
        late.settimeout(0.2)
        start = time.monotonic()
        with pytest.raises(socket.timeout, match="timed out"):
            late.connect(srv.getsockname())
        assert 0.19 <= elapsed_since(start) < 2
        fresh = socket.socket()
        queued.append(fresh)
        fresh.settimeout(0.2)
        assert fresh.connect_ex(srv.getsockname()) == errno.EAGAIN
    finally:
        for sock in queued:
            sock.close()
        srv.close()


def test_connect_resolves_localhost_cooperatively(listener):
    port = listener.getsockname()[1]
    client = socket.socket()
    client.settimeout(5)
    with client:
        client.connect(("localhost", port))
        assert client.getpeername() == ("127.0.0.1", port)


# -- cancellation ----------------------------------------------------------------------------------------------


def test_timeout_around_recv_raises_that_timeout_and_the_socket_still_works():
    waits = fd_waits()
    a, b = socket.socketpair()
    with a, b:
        timeout = ferrovent.Timeout(0.1)
        start = time.monotonic()
        with pytest.raises(ferrovent.Timeout) as info:
            with timeout:
                b.recv(1)
        assert info.value is timeout
        assert 0.09 <= elapsed_since(start) < 2
        assert fd_waits() == waits
        a.sendall(b"still works")
        assert b.recv(100) == b"still works"


def test_killing_a_greenlet_blocked_in_recv_or_accept(listener):
    a, b = socket.socketpair()
    with a, b:
        readers = [ferrovent.spawn(b.recv, 1), ferrovent.spawn(listener.accept)]
        ferrovent.sleep(0.01)
        assert not any(g.dead for g in readers)
        ferrovent.killall(readers, timeout=5)
        assert all(g.dead and isinstance(g.value, ferrovent.GreenletExit) for g in readers)
        a.sendall(b"y")
        assert b.recv(1) == b"y"
        client, server = tcp_pair(listener)
        client.close()
        server.close()


def test_closing_a_socket_wakes_its_waiter_with_ebadf():
    a, b = socket.socketpair()
    with a:
        reader = ferrovent.spawn(b.recv, 1)
        ferrovent.sleep(0.01)
        b.close()
        with pytest.raises(OSError) as info:
            reader.get(timeout=5)
        assert info.value.errno == errno.EBADF


def test_shutdown_wakes_a_blocked_reader_with_end_of_stream():
    a, b = socket.socketpair()
    with a, b:
        reader = ferrovent.spawn(b.recv, 1)
        ferrovent.sleep(0.01)
        b.shutdown(socket.SHUT_RDWR)
        assert reader.get(timeout=5) == b""


def test_two_readers_or_two_writers_get_concurrent_object_use_error():
    a, b = socket.socketpair()
    with a, b:
        first = ferrovent.spawn(b.recv, 1)
        ferrovent.sleep(0.01)
        with pytest.raises(ConcurrentObjectUseError):
            b.recv(1)
        a.sendall(b"z")
        assert first.get(timeout=5) == b"z"

        fill(a)
        writer = ferrovent.spawn(a.sendall, b"\0" * 1_000_000)
        ferrovent.sleep(0.01)
        with pytest.raises(ConcurrentObjectUseError):
            a.send(b"\0" * 100_000)
        writer.kill()


def test_a_reused_fd_number_starts_clean():
    """A socket that waited, then was dropped (closed by GC) or detached: its fd number's next owner works."""
    for finish in ("gc", "detach", "close"):
        a, b = socket.socketpair()
        reader = ferrovent.spawn(b.recv, 1)
        ferrovent.sleep(0.01)
        a.sendall(b"x")
        assert reader.get(timeout=5) == b"x"
        number = b.fileno()
        if finish == "gc":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                del reader, b
        elif finish == "detach":
            os.close(b.detach())
        else:
            b.close()
        c, d = socket.socketpair()
        assert number in (c.fileno(), d.fileno()), "the test needs the fd number to be reused"
        reused = c if c.fileno() == number else d
        peer = d if reused is c else c
        waiter = ferrovent.spawn(reused.recv, 1)
        ferrovent.sleep(0.01)
        peer.sendall(b"y")
        assert waiter.get(timeout=2) == b"y", finish
        for sock in (a, c, d):
            sock.close()


# -- a TCP read that came back short: the next one parks without the failing call (rust/fdtable.rs) ------------


def until_parked(before: int) -> None:
    """Yields until more greenlets are parked on fds than `before` (the test's timeout bounds it)."""
    while ferrovent.get_hub().loop.fd_waiter_count <= before:
        ferrovent.sleep(0.001)


def test_after_a_short_read_data_that_came_meanwhile_is_read_at_once(listener):
    client, server = tcp_pair(listener)
    with client, server:
        server.settimeout(5)

        def reader():
            first = server.recv(100)
            ferrovent.sleep(0.05)  # the loop polls meanwhile and sees the next data come in, with nobody waiting
            return first, server.recv(100)

        before = fd_waits()
        got = ferrovent.spawn(reader)
        until_parked(before)
        client.sendall(b"abc")
        ferrovent.sleep(0.01)
        client.sendall(b"def")
        assert got.get(timeout=5) == (b"abc", b"def")


@pytest.fixture
def after_a_short_read(listener):
    """A TCP (client, server-side) pair whose server side has just read less than it asked for."""
    client, server = tcp_pair(listener)
    with client, server:
        server.settimeout(5)
        client.sendall(b"abc")
        assert server.recv(100) == b"abc"
        yield client, server


def test_after_a_short_read_the_next_read_waits_for_new_data(after_a_short_read):
    client, server = after_a_short_read
    before = fd_waits()
    reader = ferrovent.spawn(server.recv, 100)
    until_parked(before)
    client.sendall(b"def")
    assert reader.get(timeout=5) == b"def"


def test_a_non_blocking_read_after_a_short_read_makes_the_call(after_a_short_read):
    client, server = after_a_short_read
    server.setblocking(False)
    client.sendall(b"def")  # no yield: the loop has not polled since
    deadline = time.monotonic() + 5
    while True:  # loopback delivery is immediate on Linux; elsewhere give it a moment
        try:
            assert server.recv(100) == b"def"
            break
        except BlockingIOError:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    with pytest.raises(BlockingIOError):
        server.recv(100)


def test_a_short_peek_leaves_the_data_to_read(listener):
    client, server = tcp_pair(listener)
    with client, server:
        server.settimeout(5)
        before = fd_waits()
        peeker = ferrovent.spawn(server.recv, 100, socket.MSG_PEEK)
        until_parked(before)
        client.sendall(b"abc")
        assert peeker.get(timeout=5) == b"abc"
        assert server.recv(100) == b"abc"


def send_urgent_in_between(client):
    client.sendall(b"abc")
    client.send(b"!", socket.MSG_OOB)
    client.sendall(b"def")


def send_then_close(client):
    client.sendall(b"abc")
    client.close()


@pytest.mark.parametrize(
    ("peer", "reads"),
    [
        # a read stops at the urgent mark, with data queued behind it
        (send_urgent_in_between, [b"abc", b"def"]),
        # a read returns the data with the end of the stream behind it, which brings no further readiness report
        (send_then_close, [b"abc", b""]),
    ],
)
def test_what_is_queued_behind_a_short_read_is_read_without_waiting_for_more(listener, peer, reads):
    client, server = tcp_pair(listener)
    with client, server:
        server.settimeout(5)
        before = fd_waits()
        reader = ferrovent.spawn(lambda: [server.recv(100), server.recv(100)])
        until_parked(before)
        peer(client)
        assert reader.get(timeout=5) == reads


def test_shutdown_after_a_short_read_ends_the_stream(after_a_short_read):
    _, server = after_a_short_read
    server.shutdown(socket.SHUT_RD)
    assert server.recv(100) == b""


# -- gevent's extensions ---------------------------------------------------------------------------------------


def test_wait_read_and_wait_write():
    a, b = socket.socketpair()
    with a, b:
        socket.wait_write(a.fileno(), timeout=1)  # writable now: returns at once
        start = time.monotonic()
        with pytest.raises(socket.timeout, match="timed out"):
            socket.wait_read(b.fileno(), timeout=0.05)
        assert elapsed_since(start) >= 0.049
        with pytest.raises(KeyError):
            socket.wait_read(b.fileno(), timeout=0.01, timeout_exc=KeyError("mine"))
        ferrovent.spawn_later(0.01, a.sendall, b"r")
        socket.wait_read(b.fileno(), timeout=5)
        assert b.recv(1) == b"r"


def test_wait_readwrite_returns_on_either_direction():
    waits = fd_waits()
    a, b = socket.socketpair()
    with a, b:
        socket.wait_readwrite(a.fileno(), timeout=1)  # writable
        fill(a)
        with pytest.raises(socket.timeout):
            socket.wait_readwrite(a.fileno(), timeout=0.05)
        ferrovent.spawn_later(0.01, b.sendall, b"r")
        socket.wait_readwrite(a.fileno(), timeout=5)  # readable now, still not writable
        assert a.recv(1) == b"r"
        assert fd_waits() == waits


def test_cancel_wait_raises_in_the_waiter():
    a, b = socket.socketpair()
    with a, b:
        waiter = ferrovent.spawn(socket.wait_read, b.fileno())
        ferrovent.sleep(0.01)
        socket.cancel_wait(b)
        with pytest.raises(OSError) as info:
            waiter.get(timeout=5)
        assert isinstance(info.value, socket.cancel_wait_ex)
        assert info.value.errno == errno.EBADF


def test_send_timeout_bounds_this_call_only():
    left, right = socket.socketpair()
    with left, right:
        chunk = b"x" * 65536
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            while True:  # the peer never reads: the buffers fill, then this send waits and times out
                left.send(chunk, timeout=0.05)
        assert time.monotonic() - started < 5
        assert left.gettimeout() is None  # the socket's own timeout is untouched


def test_an_unreferenced_socket_does_not_keep_the_loop_alive():
    left, right = socket.socketpair()
    with left, right:
        left.ref = False
        reader = ferrovent.spawn(left.recv, 1)
        ferrovent.sleep(0.01)  # the reader now waits
        assert ferrovent.wait(timeout=5) is True  # only an unreferenced wait is left: the loop runs out
        right.sendall(b"!")
        assert reader.get(timeout=5) == b"!"


def test_sock_is_the_socket_itself():
    # gevent's sockets wrap a C socket in ``_sock``; code written for them may reach for it.
    with socket.socket() as sock:
        assert sock._sock is sock


# -- the Rust calls (recv, recv_into, send, sendall): the stdlib's errors and PEP 475 ------------------------------


BAD_CALLS = {
    "send str": lambda s: s.send("x"),
    "send non-contiguous": lambda s: s.send(memoryview(b"abcd")[::2]),
    "send bad flags": lambda s: s.send(b"x", "flags"),
    "sendall str": lambda s: s.sendall("x"),
    "recv str size": lambda s: s.recv("1"),
    "recv negative size": lambda s: s.recv(-1),
    "recv float size": lambda s: s.recv(1.0),
    "recv_into bytes": lambda s: s.recv_into(b"xx"),
    "recv_into read-only buffer": lambda s: s.recv_into(memoryview(bytearray(2)).toreadonly()),
    "recv_into float size": lambda s: s.recv_into(bytearray(2), 1.0),
    "recv_into negative size": lambda s: s.recv_into(bytearray(4), -1),
    "recv_into too small": lambda s: s.recv_into(bytearray(4), 5),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_argument_errors_are_the_stdlib_ones(call):
    green_pair, plain_pair = socket.socketpair(), stdlib_socket.socketpair()
    with green_pair[0], green_pair[1], plain_pair[0], plain_pair[1]:
        with pytest.raises(Exception) as expected:
            call(plain_pair[0])
        with pytest.raises(Exception) as got:
            call(green_pair[0])
        assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))


@pytest.mark.parametrize("call", [lambda s: s.recv(1), lambda s: s.recv_into(bytearray(1)), lambda s: s.sendall(b"x")])
def test_a_closed_socket_raises_ebadf_as_the_stdlib(call):
    a, b = socket.socketpair()
    b.close()
    a.close()
    with pytest.raises(OSError) as raised:
        call(a)
    assert raised.value.errno == errno.EBADF and type(raised.value) is OSError


def test_a_peer_reset_raises_connection_reset_error_with_its_errno(listener):
    client, server = tcp_pair(listener)
    with client, server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # close sends RST
        client.close()
        with pytest.raises(ConnectionResetError) as raised:
            server.recv(1)
        assert raised.value.errno == errno.ECONNRESET


def test_recv_into_honours_nbytes_and_accepts_any_writable_buffer():
    import array

    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"abcdefgh")
        target = array.array("i", [0, 0])  # 8 bytes through the buffer protocol, not a bytearray
        assert b.recv_into(target, 3) == 3
        assert target.tobytes()[:3] == b"abc"
        assert b.recv_into(memoryview(bytearray(10))[2:]) == 5


def test_sendall_waits_for_the_reader_and_sends_everything():
    a, b = socket.socketpair()
    with a, b:
        payload = bytes(range(256)) * 40_000  # far beyond the socket buffers: sendall parks many times
        received = bytearray()

        def read() -> None:
            while len(received) < len(payload):
                received.extend(b.recv(1 << 16))

        reader = ferrovent.spawn(read)
        a.sendall(memoryview(payload))
        reader.get(timeout=10)
        assert received == payload


def test_a_signal_handler_runs_during_a_blocked_recv_and_the_recv_goes_on():
    import signal

    calls = []
    previous = signal.signal(signal.SIGALRM, lambda *_: calls.append(1))
    a, b = socket.socketpair()
    try:
        with a, b:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            ferrovent.spawn_later(0.3, a.sendall, b"after")
            assert b.recv(5) == b"after"  # PEP 475: the handler returned, so the call went on
            assert calls == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "call", [lambda s: s.recv(5), lambda s: s.sendall(b"\0" * (64 << 20))], ids=["recv", "sendall"]
)
def test_a_signal_handler_that_raises_interrupts_a_blocked_call(call):
    import signal

    class Interrupted(Exception):
        pass

    def handler(*_):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    a, b = socket.socketpair()
    try:
        with a, b:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(Interrupted):
                call(a)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_accept_times_out_refuses_to_wait_when_non_blocking_and_waits_for_a_client(listener):
    listener.settimeout(0.1)
    start = time.monotonic()
    with pytest.raises(socket.timeout, match="timed out"):
        listener.accept()
    assert 0.09 <= elapsed_since(start) < 2
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.setblocking(True)
    client = ferrovent.spawn_later(0.05, socket.create_connection, listener.getsockname())
    server, address = listener.accept()
    with server, client.get(timeout=5) as connected:
        assert address == connected.getsockname() and isinstance(server, socket.socket)
        assert not server.get_inheritable()  # close-on-exec, as the stdlib's accept


def test_a_greenlet_parked_in_recv_holds_no_receive_buffer():
    import tracemalloc

    pairs = [socket.socketpair() for _ in range(20)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        readers = [ferrovent.spawn(b.recv, 1 << 20) for _, b in pairs]
        ferrovent.sleep(0.01)  # every reader is parked now
        parked = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    for a, _ in pairs:
        a.sendall(b"!")
    assert [reader.get(timeout=5) for reader in readers] == [b"!"] * 20
    for a, b in pairs:
        a.close()
        b.close()
    assert parked < 2 << 20, f"{parked} bytes held by 20 parked recv(1 MiB) calls"


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), float("inf")])
def test_send_with_an_odd_timeout_of_its_own(timeout):
    a, b = socket.socketpair()
    with a, b:
        sent = fill(a)
        if timeout == float("inf"):  # never expires: the send waits until the reader makes room

            def drain() -> None:
                received = 0
                while received <= sent:  # everything, and the byte sent after filling
                    received += len(b.recv(65536))

            reader = ferrovent.spawn_later(0.05, drain)
            assert a.send(b"x", 0, timeout=timeout) == 1
            reader.get(timeout=5)
        else:  # already expired: the stdlib's timeout error, at once
            with pytest.raises(socket.timeout, match="timed out"):
                a.send(b"x", 0, timeout=timeout)
