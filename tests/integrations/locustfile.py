"""The Locust users of the headless run: each asks the Flask app for ``/slow`` (0.2 s) without pause, so many
requests in a short run show the users ran concurrently. The proof goes to stderr for the test to read."""

import sys

from locust import HttpUser, constant, task

from tests.integrations.as_gevent import proof

print(f"PROOF {proof()}", file=sys.stderr, flush=True)


class SlowPageUser(HttpUser):
    wait_time = constant(0)

    @task
    def slow_page(self) -> None:
        self.client.get("/slow")
