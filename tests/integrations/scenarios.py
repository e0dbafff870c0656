"""Client-side scenarios of the real-library tests, each in its own interpreter:
``python -m tests.integrations.as_gevent tests.integrations.scenarios NAME ARGS...`` prints one JSON object.

Each patches first, as the library's documentation asks, imports the library, then times only the concurrent part
(not the imports), so the figure shows whether the waits overlapped.
"""

from __future__ import annotations

import json
import sys
import time

CONCURRENT_SLEEPS = 50
SLEEP = 0.5
# Each user of tests/integrations/locustfile_counted.py makes this many requests (imported there: no locust here).
LOCUST_REQUESTS_PER_USER = 3


def _timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def _report(**figures) -> None:
    from tests.integrations.as_gevent import proof

    print(json.dumps({"proof": proof(), **figures}), flush=True)


def geventhttpclient(base_url: str) -> None:
    """100 concurrent GETs through one geventhttpclient pool, each answered after 0.5 s."""
    import gevent
    from geventhttpclient import HTTPClient

    from tests.servers import body

    client = HTTPClient.from_url(base_url, concurrency=100, connection_timeout=10, network_timeout=20)
    sizes = [1000 + n for n in range(100)]
    intact = []

    def get(size: int) -> None:
        response = client.get(f"/data?size={size}&delay={SLEEP}")
        intact.append(response.status_code == 200 and response.read() == body(size))

    elapsed = _timed(lambda: gevent.joinall([gevent.spawn(get, size) for size in sizes], raise_error=True))
    client.close()
    _report(elapsed=elapsed, intact=sum(intact))


def grequests(base_url: str) -> None:
    """50 concurrent requests through grequests.map (grequests patches at import)."""
    import grequests as grequests_module

    sizes = [2000 + n for n in range(CONCURRENT_SLEEPS)]
    requests = [grequests_module.get(f"{base_url}/data?size={size}&delay={SLEEP}", timeout=20) for size in sizes]
    responses = []
    elapsed = _timed(lambda: responses.extend(grequests_module.map(requests, size=len(requests))))
    intact = sum(response is not None and len(response.content) == size for response, size in zip(responses, sizes))
    _report(elapsed=elapsed, intact=intact)


def _pg_sleeps(connect) -> float:
    """Times CONCURRENT_SLEEPS connections each running pg_sleep(SLEEP) at once (connecting included)."""
    import ferrovent as gevent  # the same module as gevent under the alias; imports no gevent without it

    def sleep_in_postgres() -> None:
        connection = connect()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT pg_sleep(%s)", (SLEEP,))
            cursor.fetchall()
        finally:
            connection.close()

    return _timed(
        lambda: gevent.joinall([gevent.spawn(sleep_in_postgres) for _ in range(CONCURRENT_SLEEPS)], raise_error=True)
    )


def psycopg2_psycogreen(port: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    import psycopg2
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
    elapsed = _pg_sleeps(lambda: psycopg2.connect(host="127.0.0.1", port=int(port), user="postgres", dbname="postgres"))
    _report(elapsed=elapsed)


def psycopg3(port: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    import psycopg
    import psycopg.waiting

    elapsed = _pg_sleeps(lambda: psycopg.connect(host="127.0.0.1", port=int(port), user="postgres", dbname="postgres"))
    _report(elapsed=elapsed, wait=psycopg.waiting.wait.__name__, implementation=psycopg.pq.__impl__)


def psycopg3_after_ferrovent_patch_all(port: str) -> None:
    """Without the alias: plain ``ferrovent.monkey.patch_all()``, as a ferrovent user writes it."""
    from ferrovent import monkey

    monkey.patch_all()
    import psycopg
    import psycopg.waiting

    elapsed = _pg_sleeps(lambda: psycopg.connect(host="127.0.0.1", port=int(port), user="postgres", dbname="postgres"))
    print(json.dumps({"elapsed": elapsed, "wait": psycopg.waiting.wait.__name__, "gevent": "gevent" in sys.modules}))


def sentry_sdk() -> None:
    """sentry-sdk decides from gevent's version and monkey state whether greenlets are its unit of concurrency."""
    from gevent import monkey

    monkey.patch_all()
    import sentry_sdk as sdk
    from sentry_sdk import utils

    sdk.init(dsn=None)
    _report(is_gevent=utils.is_gevent(), contextvars_broken=utils._is_contextvars_broken())


ZMQ_PEERS = 100
ZMQ_MESSAGES = 10  # per REQ socket; PUB/SUB: this many times ZMQ_PEERS to every subscriber
ZMQ_IDLE_WAIT = 1.0


def _zmq_endpoint(socket, transport: str, directory: str, name: str) -> str:
    """Binds ``socket`` on a fresh tcp loopback port or an ipc path in ``directory``; returns the address to connect."""
    if transport == "tcp":
        return f"tcp://127.0.0.1:{socket.bind_to_random_port('tcp://127.0.0.1')}"
    address = f"ipc://{directory}/{name}"
    socket.bind(address)
    return address


def zmq_green(transport: str, directory: str) -> None:
    """pyzmq's zmq.green over ``transport`` (tcp or ipc): REQ/REP with ZMQ_PEERS REQ greenlets against one REP,
    PUB/SUB with one publisher and ZMQ_PEERS subscriber greenlets; then the process's CPU time while every
    subscriber waits ZMQ_IDLE_WAIT seconds for a last message (a busy loop would spend about that much)."""
    import gevent
    import zmq.green as zmq

    context = zmq.Context()
    rep = context.socket(zmq.REP)
    rep_address = _zmq_endpoint(rep, transport, directory, "rep")

    def serve() -> None:
        for _ in range(ZMQ_PEERS * ZMQ_MESSAGES):
            rep.send(b"re: " + rep.recv())

    def ask(peer: int) -> int:
        with context.socket(zmq.REQ) as req:
            req.connect(rep_address)
            answered = 0
            for n in range(ZMQ_MESSAGES):
                req.send(b"%d.%d" % (peer, n))
                answered += req.recv() == b"re: %d.%d" % (peer, n)
            return answered

    server = gevent.spawn(serve)
    askers = [gevent.spawn(ask, peer) for peer in range(ZMQ_PEERS)]
    gevent.joinall([server, *askers], raise_error=True, timeout=30)
    answered = sum(asker.value for asker in askers)

    publisher = context.socket(zmq.PUB)
    publisher.setsockopt(zmq.SNDHWM, 0)  # no high-water mark: a message lost is lost by the transport, not dropped
    pub_address = _zmq_endpoint(publisher, transport, directory, "pub")
    subscribed = set()
    progress: dict[int, list] = {}
    sent = [b"%d" % n for n in range(ZMQ_PEERS * ZMQ_MESSAGES)]

    def subscribe(peer: int) -> list:
        with context.socket(zmq.SUB) as sub:
            sub.setsockopt(zmq.RCVHWM, 0)
            sub.connect(pub_address)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            while (message := sub.recv()) == b"hello":
                subscribed.add(peer)
            received = progress[peer] = []
            while message != b"end":
                received.append(message)
                message = sub.recv()
            return received

    subscribers = [gevent.spawn(subscribe, peer) for peer in range(ZMQ_PEERS)]
    while len(subscribed) < ZMQ_PEERS:  # PUB drops what it sends before a subscription arrives: wait for them all
        publisher.send(b"hello")
        gevent.sleep(0.01)
    for message in sent:
        publisher.send(message)
    deadline = time.monotonic() + 30
    while sum(map(len, progress.values())) < ZMQ_PEERS * len(sent) and time.monotonic() < deadline:
        gevent.sleep(0.05)
    # Every subscriber has all its messages, or is stuck: either way each waits in recv() for the end.
    cpu_before, wall_before = time.process_time(), time.monotonic()
    gevent.sleep(ZMQ_IDLE_WAIT)
    idle_cpu, idle_wall = time.process_time() - cpu_before, time.monotonic() - wall_before
    publisher.send(b"end")
    gevent.joinall(subscribers, raise_error=True, timeout=30)
    intact = sum(subscriber.value == sent for subscriber in subscribers)
    publisher.close()
    rep.close()
    context.term()
    _report(answered=answered, intact=intact, idle_cpu=idle_cpu, idle_wall=idle_wall)


PIKA_MESSAGES = 1000


def pika_gevent(port: str) -> None:
    """pika's gevent adapter (its I/O loop is the hub's loop: io and timer watchers, run_callback, a Waiter):
    1,000 messages published to a queue and consumed back, while another greenlet keeps ticking."""
    import gevent
    import pika
    from pika.adapters.gevent_connection import GeventConnection

    sent = [b"message %d" % n for n in range(PIKA_MESSAGES)]
    received, ticks, failures = [], [], []

    def on_channel(channel) -> None:
        channel.queue_declare("", exclusive=True, callback=lambda frame: publish(channel, frame.method.queue))

    def publish(channel, queue: str) -> None:
        channel.basic_consume(queue, on_message, auto_ack=True)
        for body in sent:
            channel.basic_publish("", queue, body)

    def on_message(channel, method, properties, body: bytes) -> None:
        received.append(body)
        if len(received) == len(sent):
            connection.close()

    def on_open_error(connection, error) -> None:
        failures.append(repr(error))
        connection.ioloop.stop()

    def tick() -> None:
        while True:
            ticks.append(None)
            gevent.sleep(0.01)

    parameters = pika.ConnectionParameters(host="127.0.0.1", port=int(port))
    connection = GeventConnection(
        parameters,
        on_open_callback=lambda connection: connection.channel(on_open_callback=on_channel),
        on_open_error_callback=on_open_error,
        on_close_callback=lambda connection, reason: connection.ioloop.stop(),
    )
    ticker = gevent.spawn(tick)
    elapsed = _timed(connection.ioloop.start)
    ticker.kill()
    connection.ioloop.close()  # destroy() on the hub's loop, as on gevent: nothing can wait in this thread after it
    _report(
        elapsed=elapsed, received=len(received), in_order=received == sent, failures=failures, ticked=len(ticks) > 0
    )


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
