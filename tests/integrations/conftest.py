"""Real servers shared by the real-library tests, started once per session: PostgreSQL, redis-server, a RabbitMQ
broker (skipped, with the reason, where Debian's rabbitmq-server is not installed) and the slow HTTP server of
tests/servers.py."""

from __future__ import annotations

import pytest

from tests.servers import postgres_server, rabbitmq_available, rabbitmq_server, redis_server, slow_server


@pytest.fixture(scope="session")
def postgres_port():
    with postgres_server() as port:
        yield port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def slow_http_url():
    with slow_server() as url:
        yield url


@pytest.fixture(scope="session")
def rabbitmq_port(tmp_path_factory):
    if not rabbitmq_available():
        pytest.skip("no RabbitMQ broker: Debian's rabbitmq-server package is not installed (.ci/run installs it)")
    with rabbitmq_server(tmp_path_factory.mktemp("rabbitmq")) as port:
        yield port
