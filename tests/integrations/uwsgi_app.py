"""The Flask application uWSGI serves in the uWSGI test: ``GET /sleep?S`` sleeps S seconds (``time.sleep``, patched
by ``--gevent-monkey-patch``) and answers the serving process's `proof` and its pid (which worker answered)."""

import os
import time

from flask import Flask, request

from tests.integrations.as_gevent import proof

app = Flask("uwsgi-target")


@app.route("/sleep")
def sleep() -> str:
    time.sleep(float(request.query_string or 0))
    return f"{proof()} {os.getpid()}"
