"""Server-side programs of the real-library tests.

``wsgi`` is the application gunicorn's gevent workers serve: ``GET /sleep?S`` sleeps S seconds (patched
``time.sleep``, so only the request's greenlet waits) and answers the serving process's `proof`.
``python -m tests.integrations.as_gevent tests.integrations.apps bottle PORT`` serves the same through Bottle's
``server='gevent'``; ``python -m tests.integrations.apps flask PORT`` serves the Flask app Locust loads, on a plain
threaded server (no gevent: only the load generator is under test there).
"""

from __future__ import annotations

import sys
import time


def wsgi(environ, start_response):
    from tests.integrations.as_gevent import proof

    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [proof().encode()]


def bottle(port: str) -> None:
    from gevent import monkey

    monkey.patch_all()  # Bottle's gevent server refuses to run without it
    import bottle as bottle_module

    from tests.integrations.as_gevent import proof

    app = bottle_module.Bottle()

    @app.route("/sleep")
    def sleep() -> str:
        time.sleep(float(bottle_module.request.query_string))
        return proof()

    bottle_module.run(app, server="gevent", host="127.0.0.1", port=int(port), quiet=True)


def flask(port: str) -> None:
    from flask import Flask
    from werkzeug.serving import make_server

    app = Flask("locust-target")

    @app.route("/slow")
    def slow() -> str:
        time.sleep(0.2)
        return "ok"

    make_server("127.0.0.1", int(port), app, threaded=True).serve_forever()


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
