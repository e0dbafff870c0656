"""WebSocket echo servers for the WebSocket tests, one per stack, each run with ferrovent installed as gevent:
``python -m tests.integrations.as_gevent tests.integrations.websocket_apps STACK PORT``.

Every stack echoes each message back as it came (text as text, binary as binary) on ``/echo``, and answers
``GET /stats`` with the serving process's live greenlets and open file descriptors (``greenlets fds``), which the
tests compare before and after clients that vanish. Stacks: ``geventwebsocket`` (its `WebSocketHandler` on
``gevent.pywsgi``), ``flask_sock`` (simple-websocket, on ``gevent.pywsgi`` after ``monkey.patch_all``),
``socketio`` (Flask-SocketIO, ``async_mode='gevent'`` and ``socketio.run``: its ``echo`` event is acknowledged
with the message) and ``socketio_simple`` (the same with gevent-websocket out of reach, so that python-engineio
takes simple-websocket). `flask_sock_app` makes the application gunicorn's ferrovent worker serves;
`gevent_websocket_app` is what gevent-websocket's own gunicorn worker serves.
"""

from __future__ import annotations

import gc
import os
import sys


def stats() -> bytes:
    """``b"greenlets fds"``: the greenlets not yet dead and the open file descriptors of this process."""
    from greenlet import greenlet

    gc.collect()
    alive = sum(1 for item in gc.get_objects() if isinstance(item, greenlet) and not item.dead)
    return b"%d %d" % (alive, len(os.listdir("/dev/fd")))


def _stats_response(start_response) -> list[bytes]:
    body = stats()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def flask_sock_app():
    """The flask-sock echo app (gunicorn loads it as ``tests.integrations.websocket_apps:flask_sock_app()``)."""
    from flask import Flask
    from flask_sock import Sock

    app = Flask("websocket-echo")
    sock = Sock(app)

    @sock.route("/echo")
    def echo(ws) -> None:
        while True:
            ws.send(ws.receive())

    @app.route("/stats")
    def stats_view() -> bytes:
        return stats()

    return app


def gevent_websocket_app(environ, start_response):
    """The echo on gevent-websocket's ``wsgi.websocket`` (gunicorn's gevent-websocket worker loads it too)."""
    websocket = environ.get("wsgi.websocket")
    if websocket is None:
        return _stats_response(start_response)
    while True:
        message = websocket.receive()
        if message is None:
            return []
        websocket.send(message)


def geventwebsocket(port: str) -> None:
    from gevent import pywsgi
    from geventwebsocket.handler import WebSocketHandler

    server = pywsgi.WSGIServer(("127.0.0.1", int(port)), gevent_websocket_app, handler_class=WebSocketHandler)
    server.log = None
    server.serve_forever()


def flask_sock(port: str) -> None:
    from gevent import monkey

    monkey.patch_all()  # simple-websocket runs its reader in a thread: a greenlet once patched
    from gevent import pywsgi

    pywsgi.WSGIServer(("127.0.0.1", int(port)), flask_sock_app(), log=None).serve_forever()


def socketio(port: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    from flask import Flask
    from flask_socketio import SocketIO

    app = Flask("socketio-echo")
    # Short pings: a session whose client vanished is dropped after seconds (its greenlets with it), not minutes.
    server = SocketIO(app, async_mode="gevent", ping_interval=1, ping_timeout=2)

    @server.on("echo")
    def echo(message):
        return message  # the acknowledgement carries the message back

    @app.route("/stats")
    def stats_view() -> bytes:
        return stats()

    server.run(app, host="127.0.0.1", port=int(port), log_output=False)


def socketio_simple(port: str) -> None:
    sys.modules["geventwebsocket"] = None  # type: ignore[assignment]  # python-engineio then takes simple-websocket
    socketio(port)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
