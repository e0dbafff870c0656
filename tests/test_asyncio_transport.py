"""The asyncio loop's socket transport (its reads for data_received protocols and its unbuffered writes in Rust)
keeps the stdlib's behaviour: what a protocol and its peer see of data, pauses, buffered writes, eof, errors and
resets is the same on ferrovent's loop, with the fast path on and off (FERROVENT_ASYNCIO_FAST=0), as on the default
loop."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
from asyncio import selector_events

import ferrovent.asyncio
import pytest
from ferrovent.asyncio import _loop, _transport

BIG = 300_000  # more than a transport reads at once (max_size, 256 KiB)


class Recorder(asyncio.Protocol):
    """Records what the transport hands it; `fail_on` makes data_received raise, `keep_open` answers eof_received."""

    def __init__(self, keep_open: bool = False, fail_on: bytes | None = None) -> None:
        self.chunks: list[bytes] = []
        self.events: list = []
        self.keep_open = keep_open
        self.fail_on = fail_on
        self.lost = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.arrived.set()
        if self.fail_on is not None and self.fail_on in data:
            raise ValueError("refused by the protocol")

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append(["lost", type(exc).__name__, getattr(exc, "errno", None)])
        self.lost.set_result(exc)


async def until(condition) -> None:
    """Lets the loop run until `condition()` holds (`observe` bounds the whole run)."""
    while not condition():
        await asyncio.sleep(0.001)


async def connected(protocol_factory):
    """A transport on a TCP connection to 127.0.0.1, its protocol, and the peer's plain blocking socket."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        transport, protocol = await loop.create_connection(protocol_factory, *listener.getsockname())
        peer, _ = listener.accept()
        peer.settimeout(5)
    return transport, protocol, peer


async def scenarios() -> list:
    seen: list = []
    loop = asyncio.get_running_loop()
    errors: list = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context["message"]))

    # data: all of it, in order, in chunks of at most max_size, as bytes; then the peer's eof, kept open to answer
    transport, protocol, peer = await connected(lambda: Recorder(keep_open=True))
    seen.append(isinstance(transport, selector_events._SelectorSocketTransport))
    payload = bytes(range(256)) * (BIG // 256)
    peer.sendall(payload)
    peer.shutdown(socket.SHUT_WR)
    await until(lambda: protocol.events)
    received = b"".join(protocol.chunks)
    seen.append([received == payload, all(type(c) is bytes and len(c) <= transport.max_size for c in protocol.chunks)])
    transport.write(b"still open")
    seen.append(peer.recv(100))
    seen.append(["closing", transport.is_closing(), type(transport).is_closing(transport)])
    transport.close()
    seen.append(["closing", transport.is_closing()])
    try:
        transport.is_closing(True)
    except TypeError as exc:
        seen.append(str(exc).rpartition(".")[2])  # the message less the class name
    await protocol.lost
    seen.append([protocol.events, transport.is_closing()])
    peer.close()

    # pause_reading: nothing arrives until resume_reading
    transport, protocol, peer = await connected(Recorder)
    transport.pause_reading()
    peer.sendall(b"while paused")
    for _ in range(20):
        await asyncio.sleep(0)
    seen.append(["paused", list(protocol.chunks), transport.is_reading()])
    transport.resume_reading()
    await until(lambda: protocol.chunks)
    seen.append(["resumed", protocol.chunks, transport.is_reading()])
    peer.close()
    await protocol.lost
    seen.append(protocol.events)

    # data_received raising: the exception handler hears of it and the connection is lost with that exception
    transport, protocol, peer = await connected(lambda: Recorder(fail_on=b"boom"))
    peer.sendall(b"boom")
    exc = await protocol.lost
    seen.append([str(exc), errors[-1:], protocol.events])
    peer.close()

    # a reset by the peer: connection_lost with ConnectionResetError and its errno
    transport, protocol, peer = await connected(Recorder)
    transport.write(b"x")
    seen.append(peer.recv(1))  # the connection is up at both ends
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    await protocol.lost
    seen.append(protocol.events)

    # writes: a type error; a write too large to go at once, buffered and then delivered in order; write_eof
    transport, protocol, peer = await connected(Recorder)
    try:
        transport.write("text")
    except TypeError as exc:
        seen.append(str(exc))
    # every way of calling write: bound and kept, by keyword, through the class; without data, as the stdlib says
    write = transport.write
    write(b"1")
    transport.write(data=b"2")
    type(transport).write(transport, b"3")
    try:
        transport.write()
    except TypeError as exc:
        seen.append(str(exc).rpartition(".")[2])  # the message less the class name
    seen.append(peer.recv(3, socket.MSG_WAITALL))
    big = bytes(range(256)) * 40_000  # 10 MB: more than the socket takes at once
    transport.write(b"head")
    transport.write(big)
    seen.append(["buffered", transport.get_write_buffer_size() > 0])
    peer.setblocking(False)
    got = bytearray()
    while chunk := await loop.sock_recv(peer, 1 << 20):
        got += chunk
        if len(got) == 4 + len(big):
            transport.write_eof()
    seen.append(["delivered", got == b"head" + big, transport.get_write_buffer_size()])
    try:
        transport.write(b"after eof")
    except RuntimeError as exc:
        seen.append(str(exc))
    transport.close()
    await protocol.lost
    seen.append(protocol.events)
    peer.close()

    # a send that fails (the peer reset the connection) loses the connection with that error
    transport, protocol, peer = await connected(Recorder)
    transport.pause_reading()  # so that only the write hears of the reset
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    transport.write(b"to nobody")
    await protocol.lost
    seen.append(protocol.events)

    # a BufferedProtocol reads through get_buffer/buffer_updated
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buffer = bytearray(64)
            self.got = bytearray()

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buffer

        def buffer_updated(self, nbytes: int) -> None:
            self.got += self.buffer[:nbytes]

    transport, protocol, peer = await connected(Buffered)
    peer.sendall(b"buffered " * 20)
    await until(lambda: len(protocol.got) == 180)
    seen.append(bytes(protocol.got[:18]))
    transport.close()
    peer.close()
    return seen


def observe(new_loop) -> list:
    """What the protocols saw, as JSON-able values."""
    loop = new_loop()
    try:
        return json.loads(json.dumps(loop.run_until_complete(asyncio.wait_for(scenarios(), 10)), default=repr))
    finally:
        loop.close()


def test_transports_behave_on_ferrovents_loop_as_on_the_default_loop():
    assert observe(ferrovent.asyncio.new_event_loop) == observe(asyncio.new_event_loop)


def test_with_the_fast_path_switched_off_transports_behave_the_same():
    script = (
        "import json, ferrovent.asyncio, test_asyncio_transport as t\n"
        "print(json.dumps(t.observe(ferrovent.asyncio.new_event_loop)))\n"
    )
    environment = dict(os.environ, FERROVENT_ASYNCIO_FAST="0", PYTHONPATH=os.path.dirname(__file__))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=environment)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == observe(asyncio.new_event_loop)


def test_the_rust_reader_serves_plain_protocols_on_the_fast_path():
    async def kinds() -> list:
        plain, _protocol, peer = await connected(asyncio.Protocol)
        buffered, _protocol, peer2 = await connected(asyncio.BufferedProtocol)
        try:
            in_rust = [getattr(transport, "_reads_in_rust", None) for transport in (plain, buffered)]
            return [type(plain), *in_rust]
        finally:
            for closing in (plain, buffered, peer, peer2):
                closing.close()

    loop = ferrovent.asyncio.new_event_loop()
    try:
        kind, plain_in_rust, buffered_in_rust = loop.run_until_complete(kinds())
    finally:
        loop.close()
    if _loop.FAST_PATH:
        assert (kind, plain_in_rust, buffered_in_rust) == (_transport.SocketTransport, True, False)
    else:
        assert kind is selector_events._SelectorSocketTransport


def test_the_rust_write_honours_a_property_put_on_the_transport_class_later():
    """The Rust write reads `_conn_lost` from the transport's slot while the class's lookup finds that slot; a
    property put in the slot's place afterwards is what it then reads, and the slot again once it is put back."""

    async def sent() -> bytes:
        transport, _protocol, peer = await connected(asyncio.Protocol)
        try:
            transport.write(b"before,")
            cls = type(transport)
            slot = vars(cls).get("_conn_lost")
            cls._conn_lost = property(lambda self: 5, lambda self, value: None)  # lost: write sends nothing
            try:
                transport.write(b"while lost,")
            finally:
                if slot is None:
                    del cls._conn_lost
                else:
                    cls._conn_lost = slot
            transport.write(b"after")
            received = b""  # sent at once (nothing was buffered), so the blocking reads find it
            while len(received) < len(b"before,after"):
                received += peer.recv(100)
            return received
        finally:
            transport.close()
            peer.close()

    loop = ferrovent.asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(asyncio.wait_for(sent(), 10)) == b"before,after"
    finally:
        loop.close()


@pytest.mark.parametrize("make_loop", [ferrovent.asyncio.new_event_loop, asyncio.SelectorEventLoop])
def test_a_state_attribute_deleted_from_the_transport_is_missed_as_by_the_stdlib(make_loop):
    """The Rust write reads the transport's state from slots; an empty one (the attribute deleted) is looked up as
    usual, so write raises the AttributeError the stdlib's write does, and the transport is usable once it is set."""

    async def scenario() -> tuple:
        transport, _protocol, peer = await connected(asyncio.Protocol)
        try:
            eof = transport._eof
            del transport._eof
            with pytest.raises(AttributeError, match="_eof"):
                transport.write(b"lost")
            transport._eof = eof
            transport.write(b"sent")
            return peer.recv(100), transport.is_closing()
        finally:
            transport.close()
            peer.close()

    loop = make_loop()
    try:
        assert loop.run_until_complete(asyncio.wait_for(scenario(), 10)) == (b"sent", False)
    finally:
        loop.close()


def test_a_socket_with_its_own_fileno_is_read_and_written_through_the_stdlib():
    """The Rust read and write call the plain socket's fileno without looking it up: a socket class with its own
    goes through the stdlib's read and write, as one with its own recv or send does."""

    class Own(socket.socket):
        def fileno(self) -> int:
            return super().fileno()

    async def echoed() -> tuple:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        with listener:
            sock = Own(socket.AF_INET, socket.SOCK_STREAM)
            sock.connect(listener.getsockname())
            peer, _ = listener.accept()
        sock.setblocking(False)
        peer.settimeout(5)
        transport, protocol = await loop.create_connection(Recorder, sock=sock)
        try:
            flags = (transport._reads_in_rust, transport._writes_in_rust) if _loop.FAST_PATH else (False, False)
            transport.write(b"out")
            out = peer.recv(10)
            peer.sendall(b"in")
            await asyncio.wait_for(protocol.arrived.wait(), 5)
            return flags, out, protocol.chunks
        finally:
            transport.close()
            peer.close()

    loop = ferrovent.asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(echoed()) == ((False, False), b"out", [b"in"])
    finally:
        loop.close()
