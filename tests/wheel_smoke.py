"""Smoke test of an installed ferrovent (CI runs it from outside the source tree, in a fresh virtualenv per CPython).

It proves the interpreter imports the installed wheel, not a checkout, and that the three things a user does first
work: greenlets (spawn, sleep, joinall), a patched socket round trip, and one request to the WSGI server.
Exits non-zero with the failing step's traceback otherwise.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from ferrovent import monkey

monkey.patch_all()

import socket  # noqa: E402  (patched on purpose)
import time  # noqa: E402
import urllib.request  # noqa: E402

import ferrovent  # noqa: E402
from ferrovent import pywsgi  # noqa: E402


def installed_from_site_packages() -> None:
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    here = Path(ferrovent.__file__).resolve()
    assert site in here.parents, f"ferrovent imported from {here}, not from {site}"
    assert Path(ferrovent._core.__file__).resolve().parent == here.parent, "the extension is not the wheel's"


def greenlets_run_concurrently() -> None:
    order = []

    def task(n):
        ferrovent.sleep(0.05)
        order.append(n)

    started = time.monotonic()
    ferrovent.joinall([ferrovent.spawn(task, n) for n in range(100)], timeout=5, raise_error=True)
    elapsed = time.monotonic() - started
    assert order == list(range(100)), order
    assert elapsed < 1.0, f"100 concurrent sleeps of 50 ms took {elapsed:.2f} s"


def patched_socket_round_trip() -> None:
    assert socket.socket is ferrovent.socket.socket
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def echo_once():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(1024).upper())

    server = ferrovent.spawn(echo_once)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"ping")
        assert client.recv(1024) == b"PING"
    server.join(timeout=5)
    listener.close()


def wsgi_request() -> None:
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello from ", environ["PATH_INFO"].encode()]

    server = pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/smoke", timeout=5) as response:
            assert response.status == 200
            assert response.read() == b"hello from /smoke"
    finally:
        server.stop(timeout=1)


def main() -> int:
    for step in (installed_from_site_packages, greenlets_run_concurrently, patched_socket_round_trip, wsgi_request):
        step()
        print(f"ok  {step.__name__}")
    print(f"ferrovent {ferrovent.__version__} from the wheel works on CPython {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
