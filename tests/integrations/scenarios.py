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


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
