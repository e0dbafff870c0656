"""The benchmark scenarios, each written against gevent's public API only.

Run one measurement in this (fresh) process and print it as one JSON line:

    python benches/scenarios.py <impl> <bench> [--quick] [--client wrk|http_load]

The line also holds "peers", the versions of the servers a real-stack bench ran against (real_stacks.py), or
"skipped" with the reason when its peer could not be started.

`impl` is the module to import (`gevent` or `ferrovent`); reference benches measure plain `greenlet` and take
`greenlet` as their impl. `benches/run.py` drives this script once per measurement.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import real_stacks
import wsgi_busy
import wsgi_wrk
from parked_memory import park_greenlets, rss_bytes

REFERENCE_IMPL = "greenlet"
CLIENT_CPU = "load_client_cpu"
SWITCH_FLOOR_NOTE = (
    "switch_floor is plain greenlet with no library, the same figure for both. A sleep(0) that goes through the hub "
    "costs two switches (gevent's bound: half this rate); ferrovent hands off straight to the next ready greenlet, "
    "one switch, so its bound is this rate."
)
GRANIAN_NOTE = (
    "granian_hello and granian_p99 are granian (a Rust HTTP server; one worker, its default threads for WSGI) serving "
    "the same app to the same load, the same figure for both; their ratio is ferrovent's wsgi_hello (wsgi_p99) "
    "against granian's."
)  # a figure of the WSGI run that is no bench: the share of its core the client used

Measure = Callable[[ModuleType, bool], "float | dict[str, float]"]
# A bench that runs under a load client (uses_load_client) also takes the client's name (wsgi_wrk.LOAD_CLIENTS).
LoadMeasure = Callable[[ModuleType, bool, str], "float | dict[str, float]"]


@dataclass(frozen=True)
class Bench:
    name: str
    unit: str
    higher_is_better: bool
    # Returns this bench's figure, or a dict of figures by bench name when one run yields several.
    measure: Measure | LoadMeasure | None
    reference: bool = False
    uses_load_client: bool = False  # measured under the load of --client (wrk or ferrovent's http_load)
    measured_by: str | None = None  # the bench whose run also yields this one's figure (then `measure` is None)
    note: str | None = None  # a footnote the table prints under it (what a reference row measures)
    versus: str | None = None  # a reference row's ratio: ferrovent's figure of this bench against the reference

    @property
    def runner(self) -> str:
        """The bench to run for this one's figure."""
        return self.measured_by or self.name


def _noop() -> None:
    pass


def spawn_join(lib: ModuleType, quick: bool) -> float:
    count = 10_000 if quick else 100_000
    start = time.perf_counter()
    greenlets = [lib.spawn(_noop) for _ in range(count)]
    lib.joinall(greenlets)
    return count / (time.perf_counter() - start)


def sleep0(lib: ModuleType, quick: bool) -> float:
    workers = 10
    yields_each = 10_000 if quick else 100_000
    sleep = lib.sleep

    def worker() -> None:
        for _ in range(yields_each):
            sleep(0)

    start = time.perf_counter()
    lib.joinall([lib.spawn(worker) for _ in range(workers)])
    return workers * yields_each / (time.perf_counter() - start)


def switch_floor(greenlet_module: ModuleType, quick: bool) -> float:
    round_trips = 100_000 if quick else 1_000_000

    def bounce() -> None:
        back = greenlet_module.getcurrent().parent.switch
        while True:
            back()

    there = greenlet_module.greenlet(bounce).switch
    start = time.perf_counter()
    for _ in range(round_trips):
        there()
    return 2 * round_trips / (time.perf_counter() - start)


def timers(lib: ModuleType, quick: bool) -> float:
    count = 10_000 if quick else 100_000
    rng = random.Random(20240607)
    delays = [rng.uniform(0, 0.010) for _ in range(count)]
    start = time.perf_counter()
    lib.joinall([lib.spawn(lib.sleep, delay) for delay in delays])
    elapsed = time.perf_counter() - start
    return (elapsed - max(delays)) * 1000


def memory(lib: ModuleType, quick: bool) -> float:
    count = 2_000 if quick else 10_000
    # A first parked batch creates the hub, the loop and the allocator arenas, so the baseline excludes them. It
    # stays parked: killed, its freed memory would be recycled by the measured batch and hide part of its cost.
    warm_up = park_greenlets(lib, 1_000)
    gc.collect()
    before = rss_bytes()
    parked = park_greenlets(lib, count)
    gc.collect()
    after = rss_bytes()
    lib.killall(warm_up + parked)
    return (after - before) / count / 1024


def _submodule(lib: ModuleType, name: str) -> ModuleType:
    """``lib.<name>`` (event, queue, pool): the same public module on both implementations."""
    return importlib.import_module(f"{lib.__name__}.{name}")


def event_fanout(lib: ModuleType, quick: bool) -> float:
    waiters = 2_000 if quick else 10_000
    rounds = 3 if quick else 10
    event = _submodule(lib, "event")
    released = [event.Event() for _ in range(rounds)]
    all_woke = [event.Event() for _ in range(rounds)]
    woke = [0] * rounds

    def waiter() -> None:
        for i in range(rounds):
            released[i].wait()
            woke[i] += 1
            if woke[i] == waiters:
                all_woke[i].set()

    greenlets = [lib.spawn(waiter) for _ in range(waiters)]
    lib.sleep(0)  # every waiter is now parked on the first event
    start = time.perf_counter()
    for i in range(rounds):
        released[i].set()
        all_woke[i].wait()
    elapsed = time.perf_counter() - start
    lib.joinall(greenlets)
    return waiters * rounds / elapsed


def _pass_items(lib: ModuleType, channel, count: int, batch: int) -> float:
    """A producer greenlet puts `count` items into `channel`, yielding after every `batch`; a consumer greenlet
    gets them. Returns items/s."""

    def produce() -> None:
        put = channel.put
        for start in range(0, count, batch):
            for i in range(start, start + batch):
                put(i)
            lib.sleep(0)

    def consume() -> None:
        get = channel.get
        for _ in range(count):
            get()

    start = time.perf_counter()
    lib.joinall([lib.spawn(produce), lib.spawn(consume)])
    return count / (time.perf_counter() - start)


def queue_pingpong(lib: ModuleType, quick: bool) -> float:
    count = 20_000 if quick else 200_000
    return _pass_items(lib, _submodule(lib, "queue").Queue(1), count, batch=count)  # every put after the first waits


def queue_unbounded(lib: ModuleType, quick: bool) -> float:
    count = 100_000 if quick else 1_000_000
    return _pass_items(lib, _submodule(lib, "queue").Queue(), count, batch=1_000)


def _identity(x: int) -> int:
    return x


def pool_imap_unordered(lib: ModuleType, quick: bool) -> float:
    count = 10_000 if quick else 100_000
    pool = _submodule(lib, "pool").Pool(100)
    start = time.perf_counter()
    received = sum(1 for _ in pool.imap_unordered(_identity, range(count)))
    elapsed = time.perf_counter() - start
    if received != count:
        raise RuntimeError(f"imap_unordered gave {received} results for {count} items")
    return count / elapsed


def wsgi_hello(lib: ModuleType, quick: bool, client: str) -> dict[str, float]:
    """Requests/s and p99 latency (ms) of pywsgi serving hello world to the load `client` (server and client in
    processes of their own: wsgi_wrk.py), from one run; and the share of its core the client used."""
    result = wsgi_wrk.wsgi_hello(lib.__name__, client, seconds=2 if quick else 5)
    return {"wsgi_hello": result.requests_per_second, "wsgi_p99": result.p99_ms, CLIENT_CPU: result.client_cpu}


def _burn(seconds: float) -> None:
    """Holds the CPU for `seconds`, as parsing or a TLS handshake would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def fairness(lib: ModuleType, quick: bool) -> dict[str, float]:
    """Time from spawning 100 HTTP clients (requests, after patch_all) to the start of the 50th and of the last,
    while the clients already started get answers from a server in another process and spend 10 ms of CPU on each.
    """
    _submodule(lib, "monkey").patch_all()
    import requests

    clients, requests_each = 100, 2 if quick else 3
    started: list[float] = []
    with wsgi_wrk.hello_server("ferrovent") as server:  # the same server process for both implementations
        url = f"http://127.0.0.1:{server.port}/"

        def client() -> None:
            started.append(time.perf_counter())
            for _ in range(requests_each):
                requests.get(url, timeout=30).raise_for_status()
                _burn(0.010)

        spawned = time.perf_counter()
        lib.joinall([lib.spawn(client) for _ in range(clients)])
    if len(started) != clients:
        raise RuntimeError(f"only {len(started)} of {clients} clients started")
    return {
        "fairness_50th": (started[clients // 2 - 1] - spawned) * 1000,
        "fairness_last": (started[-1] - spawned) * 1000,
    }


def granian_hello(greenlet_module: ModuleType, quick: bool, client: str) -> dict[str, float]:
    """Requests/s and p99 latency of granian serving the same hello world to the same load as wsgi_hello."""
    if importlib.util.find_spec("granian") is None:
        raise real_stacks.PeerMissing("granian does not import (it comes with the bench extra: pip install granian)")
    result = wsgi_wrk.wsgi_hello("granian", client, seconds=2 if quick else 5)
    real_stacks.PEERS["granian"] = importlib.metadata.version("granian")
    return {"granian_hello": result.requests_per_second, "granian_p99": result.p99_ms, CLIENT_CPU: result.client_cpu}


def tcp_echo(lib: ModuleType, quick: bool) -> dict[str, float]:
    """Echo round trips/s on StreamServer, the client in another process (wsgi_wrk.py), and the server's CPU
    microseconds per round trip (its CPU time over the run, from /proc, divided by the round trips)."""
    rate, cpu_per_trip = wsgi_wrk.tcp_echo_with_cpu(lib.__name__, seconds=2 if quick else 5)
    return {"tcp_echo": rate, "tcp_echo_cpu": cpu_per_trip}


def websocket_echo(lib: ModuleType, quick: bool) -> dict[str, float]:
    """WebSocket echo messages/s through gevent-websocket on pywsgi, the client in another process (wsgi_wrk.py),
    and the server's CPU microseconds per message (its CPU time over the run, from /proc, divided by the messages):
    the figure a loaded machine disturbs least."""
    rate, cpu_per_message = wsgi_wrk.websocket_echo_with_cpu(lib.__name__, seconds=2 if quick else 5)
    return {"websocket_echo": rate, "websocket_echo_cpu": cpu_per_message}


def wsgi_fairness(lib: ModuleType, quick: bool) -> float:
    """p99 ms of a probe request beside a pipelining and an uploading connection (wsgi_busy.py)."""
    return wsgi_busy.fairness(lib.__name__, seconds=2 if quick else 5)


def wsgi_readline(lib: ModuleType, quick: bool) -> float:
    """ms to serve an 8 MB POST the app reads line by line (wsgi_busy.py)."""
    return wsgi_busy.readline(lib.__name__)


def requests_fanout(lib: ModuleType, quick: bool) -> float:
    """GETs/s of 200 greenlets x 50 through requests.Session against nginx (real_stacks.py)."""
    return real_stacks.requests_fanout(lib, quick)


def redis_clients(lib: ModuleType, quick: bool) -> float:
    """SET/GET commands/s of 100 greenlets through redis-py against redis-server (real_stacks.py)."""
    return real_stacks.redis_clients(lib, quick)


def flask_postgres(lib: ModuleType, quick: bool, client: str) -> dict[str, float]:
    """Requests/s and p99 ms of Flask + psycopg 3 pool + PostgreSQL on gunicorn with `lib`'s worker, loaded by the
    load `client` (real_stacks.py); and the share of its core the client used."""
    result = real_stacks.flask_postgres(lib.__name__, client, seconds=2 if quick else 5)
    return {
        "flask_postgres": result.requests_per_second,
        "flask_postgres_p99": result.p99_ms,
        CLIENT_CPU: result.client_cpu,
    }


def tls(lib: ModuleType, quick: bool) -> dict[str, float]:
    """Server-side TLS 1.2 ECDHE P-256 handshakes/s and 1 MiB transfers/s of StreamServer, and the server's CPU
    per handshake and per transfer (real_stacks.py)."""
    result = real_stacks.tls(lib.__name__, seconds=1 if quick else 3)
    return {
        "tls_handshakes": result.handshakes_per_second,
        "tls_transfers": result.transfers_per_second,
        "tls_handshake_cpu": result.handshake_cpu_us,
        "tls_transfer_cpu": result.transfer_cpu_us,
    }


def fanout_latency(lib: ModuleType, quick: bool) -> float:
    """p99 ms of a probe connection beside the TCP echo load (real_stacks.py)."""
    return real_stacks.fanout_latency(lib.__name__, seconds=2 if quick else 5)


BENCHES = {
    bench.name: bench
    for bench in (
        Bench("spawn_join", "greenlets/s", True, spawn_join),
        Bench("sleep0", "yields/s", True, sleep0),
        Bench("switch_floor", "switches/s", True, switch_floor, reference=True, note=SWITCH_FLOOR_NOTE),
        Bench("timers", "ms over longest delay", False, timers),
        Bench("memory", "KiB per parked greenlet", False, memory),
        Bench("event_fanout", "wakeups/s", True, event_fanout),
        Bench("queue_pingpong", "items/s", True, queue_pingpong),
        Bench("queue_unbounded", "items/s", True, queue_unbounded),
        Bench("pool_imap_unordered", "items/s", True, pool_imap_unordered),
        Bench("wsgi_hello", "requests/s", True, wsgi_hello, uses_load_client=True),
        Bench("wsgi_p99", "ms p99 latency", False, None, uses_load_client=True, measured_by="wsgi_hello"),
        Bench(
            "granian_hello",
            "requests/s",
            True,
            granian_hello,
            reference=True,
            uses_load_client=True,
            note=GRANIAN_NOTE,
            versus="wsgi_hello",
        ),
        Bench(
            "granian_p99",
            "ms p99 latency",
            False,
            None,
            reference=True,
            uses_load_client=True,
            measured_by="granian_hello",
            versus="wsgi_p99",
        ),
        Bench("tcp_echo", "round trips/s", True, tcp_echo),
        Bench("tcp_echo_cpu", "server CPU us per round trip", False, None, measured_by="tcp_echo"),
        Bench("websocket_echo", "messages/s", True, websocket_echo),
        Bench("websocket_echo_cpu", "server CPU us per message", False, None, measured_by="websocket_echo"),
        Bench("wsgi_fairness", "ms p99 of a probe", False, wsgi_fairness),
        Bench("wsgi_readline", "ms for 8 MB of lines", False, wsgi_readline),
        Bench("fairness_50th", "ms to start the 50th", False, fairness),
        Bench("fairness_last", "ms to start the 100th", False, None, measured_by="fairness_50th"),
        # Real stacks: libraries and servers that are neither gevent nor ferrovent (real_stacks.py), run last.
        Bench("requests_fanout", "GETs/s to nginx", True, requests_fanout),
        Bench("redis_clients", "redis ops/s", True, redis_clients),
        Bench("flask_postgres", "requests/s", True, flask_postgres, uses_load_client=True),
        Bench("flask_postgres_p99", "ms p99 latency", False, None, uses_load_client=True, measured_by="flask_postgres"),
        Bench("tls_handshakes", "handshakes/s", True, tls),
        Bench("tls_transfers", "1 MiB transfers/s", True, None, measured_by="tls_handshakes"),
        Bench("tls_handshake_cpu", "us server CPU per handshake", False, None, measured_by="tls_handshakes"),
        Bench("tls_transfer_cpu", "us server CPU per 1 MiB", False, None, measured_by="tls_handshakes"),
        Bench("fanout_latency", "ms p99 of a probe", False, fanout_latency),
    )
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one benchmark measurement and print it as a JSON line.")
    parser.add_argument("impl", help="module to benchmark: gevent or ferrovent (greenlet for reference benches)")
    parser.add_argument("bench", choices=sorted(BENCHES))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--client", choices=wsgi_wrk.LOAD_CLIENTS, default=wsgi_wrk.default_load_client(), help="WSGI load generator"
    )
    args = parser.parse_args()
    bench = BENCHES[args.bench]
    if bench.reference != (args.impl == REFERENCE_IMPL):
        parser.error(f"impl {REFERENCE_IMPL!r} goes with the reference benches, and only with them")
    if bench.measure is None:
        parser.error(f"{bench.name} is measured by running {bench.runner}")
    lib = importlib.import_module(args.impl)
    try:
        if bench.uses_load_client:
            measured = bench.measure(lib, args.quick, args.client)
        else:
            measured = bench.measure(lib, args.quick)
    except real_stacks.PeerMissing as missing:
        print(f"{bench.name} skipped: {missing}", file=sys.stderr)
        print(json.dumps({"impl": args.impl, "bench": bench.name, "values": {}, "skipped": str(missing)}))
        return
    values = measured if isinstance(measured, dict) else {bench.name: measured}
    print(json.dumps({"impl": args.impl, "bench": bench.name, "values": values, "peers": real_stacks.PEERS}))


if __name__ == "__main__":
    main()
