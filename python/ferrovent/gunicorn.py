"""A gunicorn worker class serving through ferrovent: ``gunicorn -k ferrovent.gunicorn.Worker -w N app:app``.

gunicorn's pre-fork master keeps the listening sockets and N worker processes; each worker is one ferrovent hub
serving many connections through `ferrovent.pywsgi` on those sockets. This is how ferrovent uses more than one core.

What a worker does, in gunicorn's terms:

* at start (in the forked child, before the application is loaded): ``monkey.patch_all()``, so the application's
  blocking stdlib calls cooperate; the inherited listening sockets become cooperative sockets;
* serves each listener with a `WSGIServer` whose handlers run in a ``Pool(worker_connections)``; a full pool
  stops accepting, leaving connections to sibling workers;
* tells the arbiter it is alive (``notify``) every second from its main greenlet, so a worker whose loop is
  blocked (a CPU-bound request) is detected and replaced after ``timeout``;
* after ``max_requests`` requests (plus jitter), and on SIGTERM: stops accepting, lets in-flight requests finish
  for up to ``graceful_timeout`` (still notifying), kills what is left, and exits 0. SIGINT/SIGQUIT exit at once.
  No connection is closed unannounced on the way: every response from the stop on says ``Connection: close``;
* ``keepalive`` is the idle keep-alive timeout; ``--keep-alive 0`` answers every request with ``Connection: close``;
* logs requests through gunicorn's access log (``--access-logfile``) and errors through its error log;
* an application that takes the socket over (a WebSocket through ``environ['gunicorn.socket']``) ends the
  connection as gunicorn's own workers let it: by raising StopIteration, or by returning gunicorn's
  ``ALREADY_HANDLED``; neither is logged as an error, and nothing more is sent on the socket.

The master process never imports ferrovent's servers or patches anything: that happens in `init_process`.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from typing import Any

from gunicorn.http.wsgi import base_environ
from gunicorn.sock import ssl_context
from gunicorn.workers.base_async import AsyncWorker

__all__ = ["Worker"]

#: Seconds between two heartbeats to the arbiter (and checks that the arbiter is still our parent).
HEARTBEAT = 1.0


class _Response:
    """What gunicorn's access log reads from a response: the status, the headers and the bytes sent."""

    __slots__ = ("status", "headers", "sent")

    def __init__(self, status: str, headers: list, sent: int) -> None:
        self.status = status
        self.headers = headers
        self.sent = sent


def _handler_class(worker: Worker) -> type:
    """A WSGIHandler that counts requests for ``max_requests``, honours shutdown and logs through gunicorn."""
    from ferrovent.pywsgi import WSGIHandler

    access_log = worker.access_log_enabled
    keep_alive = worker.cfg.keepalive > 0  # gunicorn's --keep-alive 0 turns keep-alive off

    class GunicornHandler(WSGIHandler):
        def _connection_environ(self) -> dict:
            env = WSGIHandler._connection_environ(self)
            env["gunicorn.socket"] = env["gunicorn.sock"] = self.socket
            return env

        def handle_one_response(self) -> None:
            started = time.time() if access_log else 0.0
            # Counted as it begins, so that the request reaching max_requests already answers "Connection: close".
            worker.request_done()
            if not keep_alive:
                self.close_connection = True
            WSGIHandler.handle_one_response(self)
            if access_log and not self._conn.taken_over:  # gunicorn logs no access line for a taken-over socket
                self._log_access(time.time() - started)

        def run_application(self) -> None:
            try:
                WSGIHandler.run_application(self)
            except StopIteration:
                # gunicorn's convention: the application took the socket over (a WebSocket) and ends the
                # connection by raising StopIteration, which is not an error.
                self._conn.take_over()

        def process_result(self) -> None:
            if worker.is_already_handled(self.result):
                self._conn.take_over()  # gunicorn's other convention for the same: the ALREADY_HANDLED result
                return
            WSGIHandler.process_result(self)

        def start_response(self, status: str, headers: list, exc_info: Any = None) -> Any:
            if not worker.alive:
                # Shutting down: this response is the connection's last, and says so. A response whose head left
                # before the worker stopped did not; its connection then serves one more request, which does.
                self.close_connection = True
            return WSGIHandler.start_response(self, status, headers, exc_info)

        def _log_access(self, seconds: float) -> None:
            environ = self.environ or {}
            request_headers = [
                (key[5:].replace("_", "-"), value) for key, value in environ.items() if key.startswith("HTTP_")
            ]
            response = _Response(self.status or "000", self.response_headers or [], self.response_length)
            worker.log.access(response, request_headers, environ, timedelta(seconds=seconds))

    return GunicornHandler


class Worker(AsyncWorker):
    """gunicorn's worker contract (heartbeat, signals, graceful stop, max_requests) on ferrovent's WSGI server.

    Use it with ``gunicorn -k ferrovent.gunicorn.Worker app:app`` (or ``worker_class`` in the config). gunicorn
    drives the methods below; they are public because gunicorn calls them, not for applications. How it differs
    from gevent's ``GeventWorker``: docs/differences.md, "WebSockets on pywsgi and the gunicorn worker".
    """

    def init_process(self) -> None:
        """In the forked worker: patches the standard library, makes the inherited listeners cooperative, then
        lets gunicorn go on (it calls ``run``)."""
        from ferrovent import monkey

        monkey.patch_all()
        from ferrovent import socket as cooperative
        from ferrovent.event import Event
        from ferrovent.hub import reinit

        self.sockets = [
            cooperative.socket(listener.FAMILY, cooperative.SOCK_STREAM, fileno=listener.sock.detach())
            for listener in self.sockets
        ]
        reinit()
        self._wake = Event()  # set to end the main greenlet's wait early (shutdown, max_requests)
        super().init_process()

    @property
    def access_log_enabled(self) -> bool:
        """gunicorn's own test for whether its access log goes anywhere (then each request is formatted)."""
        cfg = self.cfg
        return bool(
            cfg.accesslog
            or cfg.logconfig
            or cfg.logconfig_dict
            or getattr(cfg, "logconfig_json", None)
            or (cfg.syslog and not cfg.disable_redirect_access_to_syslog)
        )

    def request_done(self) -> None:
        """Counts a request; at ``max_requests`` starts a graceful restart of this worker."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
            self._wake.set()

    def notify(self) -> None:
        """The heartbeat to the arbiter; exits the worker if the arbiter that started it is gone."""
        super().notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            sys.exit(0)

    def _servers(self) -> list:
        from ferrovent.pool import Pool
        from ferrovent.pywsgi import WSGIServer

        environ = base_environ(self.cfg)
        environ.pop("wsgi.file_wrapper", None)  # keep ferrovent's, which the server can send with sendfile
        environ["wsgi.multithread"] = True  # many requests at once in one process, as gunicorn says of its workers
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        servers = []
        for listener in self.sockets:
            server = WSGIServer(
                listener,
                application=self.wsgi,
                spawn=Pool(self.worker_connections),
                log=None,  # access lines go through gunicorn's logger, in the handler
                error_log=self.log,
                handler_class=_handler_class(self),
                environ=environ,
                keepalive_timeout=float(self.cfg.keepalive),
                **ssl_args,
            )
            server.start()
            servers.append(server)
        return servers

    def run(self) -> None:
        """Serves on every listener until told to stop, then stops accepting and lets in-flight requests finish
        for up to ``graceful_timeout`` seconds before closing what is left."""
        servers = self._servers()
        heartbeat = min(HEARTBEAT, self.timeout / 2) if self.timeout else HEARTBEAT
        while self.alive:
            self.notify()
            self._wake.wait(heartbeat)
        for server in servers:
            server.close()  # stop accepting; in-flight requests go on
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while any(server.pool.free_count() != server.pool.size for server in servers):
            if time.monotonic() >= deadline:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                for server in servers:
                    server.stop(timeout=0)
                break
            self.notify()
            for server in servers:
                server.pool.join(timeout=min(heartbeat, max(0.0, deadline - time.monotonic())))

    # -- signals: the handlers may run inside the hub, so anything that blocks goes to a greenlet --

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: a graceful stop (``run`` finishes the requests in flight)."""
        self.alive = False
        self._wake.set()

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT/SIGINT: gunicorn's quick stop, run in a greenlet (the handler may run inside the hub)."""
        from ferrovent import spawn

        spawn(super().handle_quit, sig, frame)

    def handle_usr1(self, sig: int, frame: Any) -> None:
        """SIGUSR1: gunicorn's log reopening, run in a greenlet."""
        from ferrovent import spawn

        spawn(super().handle_usr1, sig, frame)
