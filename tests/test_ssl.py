"""ferrovent.ssl: cooperative TLS on both ends, against real peers on 127.0.0.1 with a self-signed certificate."""

from __future__ import annotations

import errno
import http.client
import http.server
import os
import ssl as stdlib_ssl
import threading
import time

import ferrovent
import pytest
from ferrovent import socket, ssl
from ferrovent.exceptions import ConcurrentObjectUseError

from tests.tls_helpers import HOSTNAME, client_context, make_self_signed, server_context

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv


def tls_pair(listener, cert, server_kwargs=None, client_kwargs=None, server_ctx=None, client_ctx=None):
    """A handshaken (client, server) pair of cooperative TLS sockets, both ends ferrovent."""
    server_ctx = server_ctx or server_context(cert, ssl)
    client_ctx = client_ctx or client_context(cert, ssl)

    def serve():
        conn, _ = listener.accept()
        return server_ctx.wrap_socket(conn, server_side=True, **(server_kwargs or {}))

    server = ferrovent.spawn(serve)
    raw = socket.create_connection(listener.getsockname(), timeout=10)
    client = client_ctx.wrap_socket(raw, server_hostname=HOSTNAME, **(client_kwargs or {}))
    return client, server.get(timeout=10)


def test_every_public_stdlib_name_is_there():
    missing = [
        name
        for name in dir(stdlib_ssl)
        if not name.startswith("_") and not isinstance(getattr(stdlib_ssl, name), type(os)) and not hasattr(ssl, name)
    ]
    assert missing == []
    assert {"SSLContext", "SSLSocket", "create_default_context", "get_server_certificate"} <= set(ssl.__implements__)
    for name in ssl.__implements__:
        assert getattr(ssl, name) is not getattr(stdlib_ssl, name), name


def test_classes_and_factories_are_the_cooperative_ones(listener, cert):
    assert issubclass(ssl.SSLSocket, socket.socket)
    assert issubclass(ssl.SSLSocket, stdlib_ssl.SSLSocket)
    assert issubclass(ssl.SSLContext, stdlib_ssl.SSLContext)
    assert type(ssl.create_default_context()) is ssl.SSLContext
    assert type(ssl._create_unverified_context()) is ssl.SSLContext
    assert ssl._create_default_https_context is ssl.create_default_context
    with pytest.raises(TypeError):
        ssl.SSLSocket()
    client, server = tls_pair(listener, cert)
    with client, server:
        assert type(client) is ssl.SSLSocket and type(server) is ssl.SSLSocket


def test_one_megabyte_each_way_arrives_byte_exact(listener, cert):
    client, server = tls_pair(listener, cert)
    upload, download = os.urandom(1 << 20), os.urandom(1 << 20)

    def echo_side():
        received = bytearray()
        while len(received) < len(upload):
            chunk = server.recv(65536)
            assert chunk
            received += chunk
        server.sendall(download)
        return bytes(received)

    with client, server:
        other = ferrovent.spawn(echo_side)
        client.sendall(upload)
        received = bytearray()
        while len(received) < len(download):
            received += client.recv(65536)
        assert other.get(timeout=10) == upload
        assert bytes(received) == download


def test_read_write_recv_into_and_pending(listener, cert):
    client, server = tls_pair(listener, cert)
    with client, server:
        assert client.write(b"0123456789") == 10
        assert server.read(4) == b"0123"
        assert server.pending() == 6
        buffer = bytearray(6)
        assert server.recv_into(buffer) == 6 and buffer == b"456789"
        client.sendall(b"abc")
        view = bytearray(3)
        assert server.read(3, view) == 3 and view == b"abc"


def test_connection_details(listener, cert):
    server_ctx = server_context(cert, ssl)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    seen_names = []
    server_ctx.sni_callback = lambda sslobj, name, ctx: seen_names.append(name)
    client_ctx = client_context(cert, ssl)
    client_ctx.set_alpn_protocols(["http/1.1"])
    client, server = tls_pair(listener, cert, server_ctx=server_ctx, client_ctx=client_ctx)
    with client, server:
        assert seen_names == [HOSTNAME]
        assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "http/1.1"
        assert client.getpeercert()["subject"] == ((("commonName", HOSTNAME),),)
        assert client.cipher() == server.cipher()
        assert client.version() in ("TLSv1.2", "TLSv1.3")
        assert client.server_hostname == HOSTNAME and server.server_side


def test_handshake_against_a_silent_peer_times_out(listener, cert):
    raw = socket.create_connection(listener.getsockname(), timeout=0.2)  # accepted by the backlog, never answered
    start = time.monotonic()
    with pytest.raises(socket.timeout) as info:
        client_context(cert, ssl).wrap_socket(raw, server_hostname=HOSTNAME)
    assert 0.19 <= time.monotonic() - start < 3
    assert str(info.value) == "The handshake operation timed out"
    assert isinstance(info.value, ssl.SSLError), "gevent code catches SSLError"
    assert raw.fileno() == -1  # wrap_socket took it over, and closed it on failure


def test_read_timeout_and_non_blocking_want_read(listener, cert):
    client, server = tls_pair(listener, cert)
    with client, server:
        client.settimeout(0.1)
        start = time.monotonic()
        with pytest.raises(socket.timeout, match="The read operation timed out"):
            client.recv(10)
        assert 0.09 <= time.monotonic() - start < 3
        client.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):
            client.recv(10)
        client.setblocking(True)
        server.sendall(b"after")
        assert client.recv(10) == b"after"


def test_timeout_kill_and_close_while_reading(listener, cert):
    client, server = tls_pair(listener, cert)
    with server:
        timeout = ferrovent.Timeout(0.05)
        with pytest.raises(ferrovent.Timeout) as info, timeout:
            client.recv(1)
        assert info.value is timeout
        reader = ferrovent.spawn(client.recv, 1)
        ferrovent.sleep(0.01)
        with pytest.raises(ConcurrentObjectUseError):
            client.recv(1)
        reader.kill()
        assert isinstance(reader.value, ferrovent.GreenletExit)
        reader = ferrovent.spawn(client.recv, 1)
        ferrovent.sleep(0.01)
        client.close()
        with pytest.raises(OSError) as closed:
            reader.get(timeout=5)
        assert closed.value.errno == 9


def test_unwrap_returns_to_clear_text(listener, cert):
    client, server = tls_pair(listener, cert)
    other = ferrovent.spawn(server.unwrap)
    plain_client = client.unwrap()
    plain_server = other.get(timeout=5)
    with plain_client, plain_server:
        plain_client.sendall(b"clear")
        assert plain_server.recv(5) == b"clear"


def test_ssl_socket_accept_and_connect(cert):
    server_ctx, client_ctx = server_context(cert, ssl), client_context(cert, ssl)
    listening = server_ctx.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
    with listening:
        acceptor = ferrovent.spawn(listening.accept)
        client = client_ctx.wrap_socket(socket.socket(), server_hostname=HOSTNAME)  # not connected yet
        client.settimeout(5)
        client.connect(listening.getsockname())
        server, _ = acceptor.get(timeout=5)
        with client, server:
            assert type(server) is ssl.SSLSocket
            server.sendall(b"over tls")
            assert client.recv(8) == b"over tls"


def test_ssl_socket_connect_ex_connects_and_handshakes(cert):
    server_ctx, client_ctx = server_context(cert, ssl), client_context(cert, ssl)
    listening = server_ctx.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
    with listening:
        acceptor = ferrovent.spawn(listening.accept)
        client = client_ctx.wrap_socket(socket.socket(), server_hostname=HOSTNAME)
        client.settimeout(5)
        assert client.connect_ex(listening.getsockname()) == 0
        server, _ = acceptor.get(timeout=5)
        with client, server:
            server.sendall(b"connect_ex")
            assert client.recv(10) == b"connect_ex"


def test_ssl_socket_connect_ex_reports_a_refused_connection(cert):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connecting is refused
        with client_context(cert, ssl).wrap_socket(socket.socket(), server_hostname=HOSTNAME) as client:
            client.settimeout(5)
            assert client.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def test_get_server_certificate(listener, cert):
    def serve():
        conn, _ = listener.accept()
        with server_context(cert, ssl).wrap_socket(conn, server_side=True):
            pass

    server = ferrovent.spawn(serve)
    pem = ssl.get_server_certificate(listener.getsockname())  # bounded by the module's pytest timeout
    server.get(timeout=5)
    assert stdlib_ssl.PEM_cert_to_DER_cert(pem) == stdlib_ssl.PEM_cert_to_DER_cert(cert.cert.read_text())


@pytest.fixture
def https_server(cert):
    """A stdlib HTTPS server in a real thread (a peer ferrovent does not run), answering GET with 100 kB."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"x" * 100_000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_context(cert).wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address
    httpd.shutdown()
    httpd.server_close()


def test_http_client_https_with_the_cooperative_context(https_server, cert):
    def fetch():
        connection = http.client.HTTPSConnection(
            HOSTNAME, https_server[1], context=client_context(cert, ssl), timeout=10
        )
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, len(body)

    fetches = [ferrovent.spawn(fetch) for _ in range(3)]
    assert [g.get(timeout=20) for g in fetches] == [(200, 100_000)] * 3


def test_setters_do_not_recurse_when_the_stdlib_names_are_patched(listener, cert):
    """After monkey-patching, ssl.SSLContext is ferrovent's: the stdlib's own code must still find its class."""
    saved = stdlib_ssl.SSLContext, stdlib_ssl.SSLSocket
    stdlib_ssl.SSLContext, stdlib_ssl.SSLSocket = ssl.SSLContext, ssl.SSLSocket
    try:
        context = client_context(cert, ssl)
        context.options |= ssl.OP_NO_COMPRESSION
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags = ssl.VERIFY_DEFAULT
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_3
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        client, server = tls_pair(listener, cert, client_ctx=context)
        with client, server:
            client.sendall(b"patched")
            assert server.recv(7) == b"patched"
    finally:
        stdlib_ssl.SSLContext, stdlib_ssl.SSLSocket = saved
