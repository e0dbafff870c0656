"""The Locust users of the distributed run: each asks the Flask app for ``/slow`` (0.2 s) exactly
``LOCUST_REQUESTS_PER_USER`` times without pause, then idles until the run ends, so the run's request count is known
in advance whichever worker runs which user. The proof, and a line per user started, go to stderr for the test
to read."""

import sys

from locust import HttpUser, task

from tests.integrations.as_gevent import proof
from tests.integrations.scenarios import LOCUST_REQUESTS_PER_USER

print(f"PROOF {proof()}", file=sys.stderr, flush=True)


class CountedUser(HttpUser):
    def on_start(self) -> None:
        self.requests_left = LOCUST_REQUESTS_PER_USER
        print("USER STARTED", file=sys.stderr, flush=True)  # in the log of the worker that runs it

    def wait_time(self) -> float:
        return 0 if self.requests_left else 3600  # done: the end of the run stops this user

    @task
    def slow_page(self) -> None:
        self.requests_left -= 1
        self.client.get("/slow")
