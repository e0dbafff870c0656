"""WebSockets on ferrovent's WSGI server, through the stacks people use with gevent: gevent-websocket's
`WebSocketHandler`, flask-sock (simple-websocket), Flask-SocketIO with ``async_mode='gevent'`` (over gevent-websocket,
and over simple-websocket through python-engineio), flask-sock under gunicorn's ferrovent worker, and
gevent-websocket's own gunicorn worker (gunicorn's gevent worker, ferrovent installed as gevent).

Each server runs in its own process (tests/integrations/websocket_apps.py, ferrovent installed as gevent); the
clients are websocket-client and python-socketio's client in threads of the test process. Every stack: 50 clients
echo 1,000 messages each (250 through Socket.IO, whose client spends about 1 ms of the test process per message),
byte-exact; the close handshake completes and the server then ends the connection; clients
that vanish in the middle of a frame leave no greenlet and no file descriptor behind in the server.
"""

from __future__ import annotations

import importlib.util
import random
import socket
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import gunicorn as gunicorn_release
import pytest

from tests.integrations.processes import AS_GEVENT, serving

websocket = pytest.importorskip("websocket")  # websocket-client
for _server_side in ("geventwebsocket", "flask_sock", "flask_socketio"):
    # Looked up, not imported: gevent-websocket imports gevent.pywsgi, which must not load stock gevent here.
    if importlib.util.find_spec(_server_side) is None:
        pytest.skip(f"{_server_side} is not installed (pip install -e .[test])", allow_module_level=True)

pytestmark = pytest.mark.timeout(300)

CLIENTS = 50
PLAIN_MESSAGES = 1000
# Socket.IO's client (threads, an Event per call) makes its 50,000 echoes take a minute of the test process, twice;
# a quarter of them still sends every frame-length class through the server.
SOCKETIO_MESSAGES = 250
STACKS = ["geventwebsocket", "flask_sock", "socketio", "socketio_simple", "gunicorn", "gunicorn_geventwebsocket"]
# Only these stacks speak plain WebSocket frames on /echo (Socket.IO has its own protocol above them).
PLAIN = ["geventwebsocket", "flask_sock", "gunicorn", "gunicorn_geventwebsocket"]
# gunicorn 24 added a control socket in the working directory; older releases lack the flag.
GUNICORN_OPTIONS = ["-w", "1", *(["--no-control-socket"] if gunicorn_release.version_info >= (24,) else [])]


def _command(stack: str, port: int) -> list[str]:
    bind = ["-b", f"127.0.0.1:{port}", *GUNICORN_OPTIONS]
    if stack == "gunicorn":  # ferrovent's worker (no alias needed), flask-sock taking gunicorn's socket over
        app = "tests.integrations.websocket_apps:flask_sock_app()"
        return [sys.executable, "-m", "gunicorn", "-k", "ferrovent.gunicorn.Worker", *bind, app]
    if stack == "gunicorn_geventwebsocket":  # gevent-websocket's own gunicorn worker, ferrovent installed as gevent
        worker = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
        return [*AS_GEVENT, "gunicorn", "-k", worker, *bind, "tests.integrations.websocket_apps:gevent_websocket_app"]
    return [*AS_GEVENT, "tests.integrations.websocket_apps", stack, str(port)]


@pytest.fixture(scope="module", params=STACKS)
def server(request):
    with serving(lambda port: _command(request.param, port)) as (port, output):
        yield request.param, port, output


def _messages(seed: int, count: int) -> list:
    """``count`` messages: binary of every frame-length class (up to 125, 16-bit, a few 64-bit), and text with
    characters beyond ASCII."""
    rng = random.Random(seed)
    messages: list = []
    # The largest 16-bit length and a 64-bit one: few, since the libraries unmask in Python.
    large = {count // 4: 65_535, count // 2: 70_000}
    for index in range(count):
        if index % 10 == 3:
            messages.append("".join(rng.choice("aé€😀 z") for _ in range(rng.randrange(0, 60))))
        elif index in large:
            messages.append(rng.randbytes(large[index]))
        else:
            messages.append(rng.randbytes(rng.choice((0, 1, 125, 126, 300, rng.randrange(200)))))
    return messages


def _plain_echo(port: int, seed: int) -> int:
    messages = _messages(seed, PLAIN_MESSAGES)
    client = websocket.create_connection(_url("geventwebsocket", port), timeout=30)
    try:
        for message in messages:
            if isinstance(message, str):
                client.send(message)
            else:
                client.send_binary(message)
            echoed = client.recv()
            assert type(echoed) is type(message) and echoed == message
    finally:
        client.close()
    return len(messages)


def _in_order_socketio_client():
    """python-socketio's client, handling the server's Engine.IO messages in the order they came. The stock client
    hands each message to a thread of its own, so under load a binary event's attachment can be handled before the
    event it belongs to, and the client then decodes the attachment as a packet (a race in the client alone)."""
    import engineio
    import socketio

    class InOrderEngineIO(engineio.Client):
        def _trigger_event(self, event, *args, **kwargs):
            kwargs["run_async"] = False
            return super()._trigger_event(event, *args, **kwargs)

    class InOrderClient(socketio.Client):
        def _engineio_client_class(self):
            return InOrderEngineIO

    return InOrderClient()


def _socketio_echo(port: int, seed: int) -> int:
    messages = _messages(seed, SOCKETIO_MESSAGES)
    client = _in_order_socketio_client()
    client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
    try:
        for message in messages:
            echoed = client.call("echo", message, timeout=30)
            assert type(echoed) is type(message) and echoed == message
    finally:
        client.disconnect()
    return len(messages)


def test_fifty_clients_echo_their_messages(server):
    stack, port, output = server
    echo, count = (_plain_echo, PLAIN_MESSAGES) if stack in PLAIN else (_socketio_echo, SOCKETIO_MESSAGES)
    with ThreadPoolExecutor(CLIENTS) as pool:
        counts = list(pool.map(lambda seed: echo(port, seed), range(CLIENTS)))
    assert counts == [count] * CLIENTS
    assert "Traceback" not in output(), output()


def _url(stack: str, port: int) -> str:
    """Where a bare WebSocket client connects: the echo, or Engine.IO's WebSocket transport under Socket.IO."""
    if stack in PLAIN:
        return f"ws://127.0.0.1:{port}/echo"
    return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"


def _receive_all(sock: socket.socket, deadline: float) -> bytes:
    """What the server sends until it closes the connection (bounded by ``deadline``)."""
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            return received
        received += data
    raise AssertionError(f"the server did not close the connection; received {received!r}")


def test_close_handshake_then_the_server_ends_the_connection(server):
    stack, port, output = server
    baseline = _stats(port)
    client = websocket.create_connection(_url(stack, port), timeout=10)
    if stack in PLAIN:
        client.send("before the close")
        assert client.recv() == "before the close"
    else:
        assert client.recv().startswith("0{")  # Engine.IO's open packet: the session is up
    client.send_close(websocket.STATUS_NORMAL, b"bye")
    raw = client.sock
    rest = _receive_all(raw, time.monotonic() + 10)
    raw.close()
    assert rest[0] == 0x88, rest  # a close frame, final, unmasked (the server's answer), then the end of the stream
    _wait_for_settling(port, baseline, time.monotonic() + 10)  # the server is done with the connection: all logged
    assert "Traceback" not in output(), output()


def _stats(port: int) -> tuple[int, int]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = _receive_all(sock, time.monotonic() + 10)
    greenlets, fds = response.split(b"\r\n\r\n", 1)[1].split()
    return int(greenlets), int(fds)


def _vanish_mid_frame(client, reset: bool) -> None:
    """Sends the start of a masked binary frame announcing 1,000 bytes, 10 of them, then disappears."""
    raw = client.sock
    raw.sendall(struct.pack("!BBH", 0x82, 0x80 | 126, 1000) + b"mask" + b"0123456789")
    if reset:  # the connection reset, not closed
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


def test_clients_vanishing_mid_frame_leak_no_greenlet_and_no_fd(server):
    stack, port, output = server
    url = _url(stack, port)
    websocket.create_connection(url, timeout=10).close()  # whatever the first connection sets up once
    deadline = time.monotonic() + 15
    baseline = _stats(port)
    clients = [websocket.create_connection(url, timeout=10) for _ in range(20)]
    during = _stats(port)
    assert during[0] > baseline[0] and during[1] > baseline[1], (baseline, during)  # the measure sees them
    for index, client in enumerate(clients):
        _vanish_mid_frame(client, reset=index % 2 == 1)
    after = _wait_for_settling(port, baseline, deadline)
    assert after[0] <= baseline[0] and after[1] <= baseline[1], (baseline, during, after)
    assert "Traceback" not in output(), output()


def _wait_for_settling(port: int, baseline: tuple[int, int], deadline: float) -> tuple[int, int]:
    """The server's greenlets and fds once they are back to ``baseline``, or as they are at ``deadline``."""
    now = _stats(port)
    while (now[0] > baseline[0] or now[1] > baseline[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
        now = _stats(port)
    return now
