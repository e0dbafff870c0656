"""ferrovent.server: StreamServer and DatagramServer, run in a thread with its own hub (tests/serving.py) and
exercised by ordinary blocking clients."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import ferrovent
import pytest
from ferrovent.baseserver import parse_address
from ferrovent.pool import Pool
from ferrovent.server import DatagramServer, StreamServer

from tests.serving import ServerThread
from tests.tls_helpers import client_context, make_self_signed

pytestmark = pytest.mark.timeout(30)


def echo(sock, address):
    while data := sock.recv(65536):
        if data == b"raise":
            raise ValueError("handler failed on purpose")
        sock.sendall(data)


def _round_trip(running: ServerThread, message: bytes) -> bytes:
    with running.connect() as sock:
        sock.sendall(message)
        return sock.recv(65536)


@pytest.mark.parametrize("spawn", ["default", 10, "pool", "spawn_raw", None])
def test_echo_with_every_kind_of_spawn(spawn):
    def factory():
        chosen = {"pool": Pool(5), "spawn_raw": ferrovent.spawn_raw}.get(spawn, spawn)
        return StreamServer(("127.0.0.1", 0), echo, spawn=chosen)

    with ServerThread(factory) as running:
        if spawn is None:  # inline in the acceptor: one connection at a time, still correct
            assert _round_trip(running, b"inline") == b"inline"
            return
        clients = [running.connect() for _ in range(20)]
        for i, sock in enumerate(clients):
            sock.sendall(b"hello %d" % i)
        for i, sock in enumerate(clients):
            assert sock.recv(100) == b"hello %d" % i
            sock.close()
        assert running.server.started and not running.server.closed


def test_a_raising_handler_is_reported_once_and_the_server_goes_on():
    with ServerThread(lambda: StreamServer(("127.0.0.1", 0), echo)) as running:
        with running.connect() as sock:
            sock.sendall(b"raise")
            assert sock.recv(100) == b""  # its connection was closed
        assert _round_trip(running, b"still here") == b"still here"
        reports = running.reports.text()
    assert reports.count("ValueError: handler failed on purpose") == 1
    assert reports.count("failed with ValueError") == 1


class _TaggingServer(StreamServer):
    """A server whose items carry a third value: handlers get every item's values, whatever their number."""

    def do_read(self):
        item = super().do_read()
        return None if item is None else (*item, "tag")


def test_a_handler_gets_every_value_of_its_item():
    def handle(sock, address, tag):
        sock.sendall(f"{tag} {address[0]}".encode())

    with ServerThread(lambda: _TaggingServer(("127.0.0.1", 0), handle)) as running:
        with running.connect() as sock:
            assert sock.recv(100) == b"tag 127.0.0.1"
            assert sock.recv(100) == b""  # closed once the handler returned


def test_attributes_and_address_forms():
    server = StreamServer(":0", echo)
    assert (server.family, server.address) == (socket.AF_INET, ("", 0))
    assert parse_address("127.0.0.1:80") == (socket.AF_INET, ("127.0.0.1", 80))
    assert parse_address("[::1]:80") == (socket.AF_INET6, ("::1", 80))
    assert parse_address("*:80") == (socket.AF_INET, ("", 80))
    assert parse_address(8080) == (socket.AF_INET6, ("", 8080))
    assert parse_address("/tmp/x.sock") == (socket.AF_UNIX, "/tmp/x.sock")
    with pytest.raises(ValueError):
        parse_address("host:port")
    with StreamServer(("127.0.0.1", 0), echo) as server:
        assert not server.started and server.closed
        server.start()
        assert server.started and not server.closed
        assert server.server_host == "127.0.0.1" and server.server_port > 0
        assert server.address == ("127.0.0.1", server.server_port)
        assert server.max_accept >= 1 and server.reuse_addr == 1
        assert f"address=127.0.0.1:{server.server_port}" in repr(server)
    assert server.closed and not server.started


def test_listener_socket_and_backlog():
    with socket.socket() as other, pytest.raises(TypeError):
        other.bind(("127.0.0.1", 0))
        other.listen(5)
        StreamServer(other, echo, backlog=10)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    with ServerThread(lambda: StreamServer(listener, echo)) as running:
        assert running.port == listener.getsockname()[1]
        assert _round_trip(running, b"given socket") == b"given socket"


def test_unix_socket_path(tmp_path):
    path = str(tmp_path / "server.sock")
    with ServerThread(lambda: StreamServer(path, echo)) as running:
        assert running.server.server_port is None
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"over unix")
            assert sock.recv(100) == b"over unix"


def test_full_pool_stops_accepting_until_a_slot_frees():
    release = threading.Event()

    def hold(sock, address):
        sock.sendall(b"in")
        while not release.is_set():
            ferrovent.sleep(0.01)

    with ServerThread(lambda: StreamServer(("127.0.0.1", 0), hold, spawn=1)) as running:
        first = running.connect()
        assert first.recv(10) == b"in"
        second = running.connect()  # queued by the kernel, not accepted while the pool is full
        second.settimeout(0.3)
        with pytest.raises(socket.timeout):
            second.recv(10)
        release.set()
        second.settimeout(5)
        assert second.recv(10) == b"in"
        first.close()
        second.close()


def test_stop_lets_handlers_finish_then_kills_them():
    finished = []

    def slow(sock, address):
        sock.sendall(b"started")
        try:
            ferrovent.sleep(float(sock.recv(10)))
            finished.append(True)
        finally:
            sock.sendall(b"done")

    for delay, timeout, completes in ((b"0.2", 2.0, True), (b"10", 0.3, False)):
        finished.clear()
        running = ServerThread(lambda: StreamServer(("127.0.0.1", 0), slow))
        with running:
            sock = running.connect()
            assert sock.recv(10) == b"started"
            sock.sendall(delay)
            stopped = threading.Event()
            running.call(lambda server=running.server, limit=timeout, done=stopped: (server.stop(limit), done.set()))
            assert stopped.wait(5)
            assert sock.recv(10) == b"done"
            assert finished == ([True] if completes else [])
            with pytest.raises(OSError):
                running.connect(timeout=1).sendall(b"x" * 10)
            sock.close()


def test_tls_stream_server(tmp_path):
    files = make_self_signed(tmp_path)

    def factory():
        from ferrovent import ssl as cooperative_ssl

        context = cooperative_ssl.SSLContext(cooperative_ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(files.cert), str(files.key))
        return StreamServer(("127.0.0.1", 0), echo, ssl_context=context)

    with ServerThread(factory) as running:
        assert running.server.ssl_enabled
        with running.connect() as raw, client_context(files).wrap_socket(raw, server_hostname="localhost") as sock:
            assert isinstance(sock, ssl.SSLSocket)
            sock.sendall(b"secret")
            assert sock.recv(100) == b"secret"


def test_a_failure_to_wrap_is_the_wrappers_error(tmp_path):
    files = make_self_signed(tmp_path)
    server = StreamServer(("127.0.0.1", 0), echo, keyfile=str(files.key), certfile=str(files.cert))

    class WrapFailed(Exception):
        pass

    def failing_wrap(client_socket, **wrap_args):
        raise WrapFailed(client_socket)

    server.wrap_socket = failing_wrap
    with pytest.raises(WrapFailed):  # not an error about the socket it was given (here, none at all)
        server.wrap_socket_and_handle(None, None)


def test_datagram_server():
    def factory():
        def reply(data, address):
            server.sendto(data.upper(), address)

        server = DatagramServer(("127.0.0.1", 0), reply)
        return server

    with ServerThread(factory) as running:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            for word in (b"one", b"two"):
                sock.sendto(word, ("127.0.0.1", running.port))
                assert sock.recvfrom(100)[0] == word.upper()


def test_serve_forever_returns_after_stop():
    outcome = []

    def run():
        server = StreamServer(("127.0.0.1", 0), echo)
        ferrovent.spawn_later(0.1, server.stop)
        started = time.monotonic()
        server.serve_forever()
        outcome.append((server.closed, time.monotonic() - started))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert outcome and outcome[0][0] and outcome[0][1] < 3
