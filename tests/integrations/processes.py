"""Starting and stopping the programs of the real-library tests, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

from tests.child import ROOT
from tests.servers import accepts, free_port, stop_group

AS_GEVENT = [sys.executable, "-m", "tests.integrations.as_gevent"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def running(
    command: list[str], env: dict | None = None, stop_signal: signal.Signals = signal.SIGTERM
) -> Iterator[tuple[subprocess.Popen, Callable[[], str]]]:
    """Runs ``command`` from the repository root; yields the process and a function giving its output so far."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env={**ENV, **(env or {})}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

        def output() -> str:
            log.flush()
            log.seek(0)
            return log.read()

        try:
            yield proc, output
        finally:
            stop_group(proc, stop_signal)


@contextlib.contextmanager
def listening(command_for_port: Callable[[int], list[str]], env: dict | None = None) -> Iterator[int]:
    """Runs ``command_for_port(port)`` on a free loopback port until it accepts connections; yields the port."""
    with serving(command_for_port, env) as (port, _):
        yield port


@contextlib.contextmanager
def serving(
    command_for_port: Callable[[int], list[str]], env: dict | None = None
) -> Iterator[tuple[int, Callable[[], str]]]:
    """`listening`, also yielding a function that gives the program's output so far."""
    for _ in range(3):  # the free port may be taken between the probe and the bind: try another
        port = free_port()
        with running(command_for_port(port), env) as (proc, output):
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline and not accepts(port):
                time.sleep(0.02)
            if proc.poll() is None and accepts(port):
                yield port, output
                return
            failure = output()
    raise RuntimeError(f"{command_for_port(0)} did not start listening:\n{failure}")
