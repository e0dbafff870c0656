"""Serve a WSGI app with ferrovent's server: many connections at once on one OS thread.

    python examples/wsgi_hello.py [PORT]         # then: curl http://127.0.0.1:8088/  (or /slow)

Any WSGI app works the same way (``WSGIServer(address, flask_app)``). ``/slow`` waits a second with
``gevent.sleep``: a hundred clients asking for it at once are all answered after about one second, because each
connection's greenlet parks while it waits. The access log goes to stderr; ``log=None`` turns it off. For more
than one core, run the app under gunicorn with ``-k ferrovent.gunicorn.Worker -w N``.
"""

import sys

import ferrovent as gevent
from ferrovent.pywsgi import WSGIServer


def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        gevent.sleep(1)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!\n"]


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8088
    server = WSGIServer(("127.0.0.1", port), application)
    print(f"Serving on http://127.0.0.1:{port}/ (Ctrl-C to stop)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
