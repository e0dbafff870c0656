"""Async-only libraries against real local servers, on ferrovent's asyncio loop and, as the reference, on the
default one: aiohttp (client and server, plain and over TLS), httpx.AsyncClient (plain and over TLS), redis.asyncio,
asyncpg, and uvicorn serving a Starlette app.

Every test runs once per loop (the ``run`` fixture, parametrised by LOOPS); the ferrovent case is skipped, with the
reason, while ``ferrovent.asyncio`` does not import. Concurrency shows in the timings: ``CONCURRENT`` waits of
``WAIT`` seconds that overlap take about one wait, serialized they take their sum. The whole file takes about 6 s
per loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import asyncpg
import httpx
import pytest
import redis.asyncio
import uvicorn
from aiohttp import web
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tests.servers import body, slow_server
from tests.tls_helpers import CertFiles, client_context, make_self_signed, server_context

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
WAIT = 0.3
CONCURRENT = 20
OVERLAPPED = 4 * WAIT  # serialized: CONCURRENT * WAIT = 6 s
BULK = 1 << 20  # bytes of a body that takes many reads and writes


LOOPS = ("default", "ferrovent")


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The ``new_event_loop`` of the loop named ``name``; skips the test (with the reason) where it does not exist."""
    if name == "default":
        return asyncio.new_event_loop
    try:
        import ferrovent.asyncio
    except ImportError as error:
        pytest.skip(f"ferrovent.asyncio does not import on this branch: {error}")
    return ferrovent.asyncio.new_event_loop


@pytest.fixture(params=LOOPS)
def run(request) -> Callable[[Awaitable[T]], T]:
    """Runs a coroutine to completion on a new loop of the parametrised kind, as ``asyncio.run`` does."""
    factory = _loop_factory(request.param)

    def run(main: Awaitable[T]) -> T:
        loop = factory()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(asyncio.wait_for(main, 45))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    return run


async def timed(awaitables: list[Awaitable[T]]) -> tuple[float, list[T]]:
    """The results of ``awaitables`` run at once, and the seconds they took together."""
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*awaitables)
    return asyncio.get_running_loop().time() - started, results


def test_aiohttp_client_and_server(run, certificate):
    async def main() -> None:
        async def hello(request: web.Request) -> web.Response:
            await asyncio.sleep(WAIT)
            return web.Response(text=f"hello {request.match_info['name']}")

        async def echo(request: web.Request) -> web.Response:
            return web.Response(body=await request.read())

        app = web.Application()
        app.router.add_get("/hello/{name}", hello)
        app.router.add_post("/echo", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(certificate)).start()
        base, tls_base = (
            f"{scheme}://127.0.0.1:{address[1]}" for scheme, address in zip(("http", "https"), runner.addresses)
        )
        try:
            async with aiohttp.ClientSession() as session:

                async def get(name: int) -> str:
                    async with session.get(f"{base}/hello/{name}") as response:
                        assert response.status == 200
                        return await response.text()

                elapsed, texts = await timed([get(i) for i in range(CONCURRENT)])
                assert texts == [f"hello {i}" for i in range(CONCURRENT)]
                assert elapsed < OVERLAPPED, elapsed
                async with session.post(f"{base}/echo", data=body(BULK)) as response:
                    assert await response.read() == body(BULK)
                tls = client_context(certificate)
                async with session.post(f"{tls_base}/echo", data=body(BULK), ssl=tls) as response:
                    assert await response.read() == body(BULK)
        finally:
            await runner.cleanup()

    run(main())


def test_httpx_async_client(run, slow_http_url):
    async def main() -> None:
        async with httpx.AsyncClient(base_url=slow_http_url, timeout=20) as client:

            async def get(size: int) -> bytes:
                response = await client.get("/data", params={"size": size, "delay": WAIT})
                response.raise_for_status()
                return response.content

            sizes = [1000 * i for i in range(CONCURRENT)]
            elapsed, contents = await timed([get(size) for size in sizes])
            assert contents == [body(size) for size in sizes]
            assert elapsed < OVERLAPPED, elapsed
            assert (await get(BULK)) == body(BULK)

    run(main())


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> CertFiles:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(certificate):
    """The slow HTTP server over TLS: its base URL and a client context that trusts its certificate."""
    with slow_server(certificate) as url:
        yield url, client_context(certificate)


def test_httpx_async_client_over_tls(run, tls_server):
    url, context = tls_server

    async def main() -> None:
        async with httpx.AsyncClient(base_url=url, verify=context, timeout=20) as client:

            async def get(size: int) -> bytes:
                response = await client.get("/data", params={"size": size, "delay": WAIT})
                response.raise_for_status()
                return response.content

            sizes = [BULK] + [1000 * i for i in range(1, CONCURRENT)]
            elapsed, contents = await timed([get(size) for size in sizes])
            assert contents == [body(size) for size in sizes]
            assert elapsed < OVERLAPPED, elapsed

    run(main())


def test_redis_asyncio(run, redis_url):
    async def main() -> None:
        client = redis.asyncio.from_url(redis_url)
        try:
            await client.delete("counter", "queue")
            await asyncio.gather(*(client.incr("counter") for _ in range(100)))
            assert await client.get("counter") == b"100"
            async with client.pipeline(transaction=True) as pipe:
                assert await pipe.set("key", body(BULK)).get("key").execute() == [True, body(BULK)]

            # Blocking pops overlap: each waiter holds a connection of the pool until its item comes.
            async def pop() -> bytes:
                return (await client.blpop(["queue"], timeout=10))[1]

            waiters = [asyncio.ensure_future(pop()) for _ in range(10)]
            await asyncio.sleep(WAIT)
            assert not any(waiter.done() for waiter in waiters)
            await client.rpush("queue", *range(10))
            assert sorted(int(item) for item in await asyncio.gather(*waiters)) == list(range(10))

            async with client.pubsub() as pubsub:
                await pubsub.subscribe("news")
                assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
                await client.publish("news", "hello")
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                assert message is not None and message["data"] == b"hello"
        finally:
            await client.aclose()

    run(main())


def test_asyncpg(run, postgres_port):
    async def main() -> None:
        dsn = {"host": "127.0.0.1", "port": postgres_port, "user": "postgres", "database": "postgres"}
        async with asyncpg.create_pool(**dsn, min_size=CONCURRENT, max_size=CONCURRENT) as pool:
            elapsed, values = await timed(
                [pool.fetchval("SELECT $1::int FROM pg_sleep($2)", i, WAIT) for i in range(CONCURRENT)]
            )
            assert values == list(range(CONCURRENT))
            assert elapsed < OVERLAPPED, elapsed
            async with pool.acquire() as connection:
                await connection.execute("CREATE TEMPORARY TABLE items (id int PRIMARY KEY, payload bytea)")
                await connection.copy_records_to_table("items", records=[(i, body(i)) for i in range(1000)])
                async with connection.transaction():
                    await connection.execute("UPDATE items SET payload = $1 WHERE id < 10", body(BULK))
                    total = await connection.fetchval("SELECT sum(length(payload)) FROM items WHERE id < 10")
                    assert total == 10 * BULK
                with pytest.raises(asyncpg.UniqueViolationError):
                    await connection.execute("INSERT INTO items VALUES (1, NULL)")
                rows = await connection.fetch("SELECT id, payload FROM items WHERE id < 10 ORDER BY id")
                assert [(row["id"], row["payload"]) for row in rows] == [(i, body(BULK)) for i in range(10)]

    run(main())


def test_uvicorn_serves_starlette(run):
    async def main() -> None:
        async def slow(request) -> PlainTextResponse:
            await asyncio.sleep(WAIT)
            return PlainTextResponse(f"slow {request.path_params['name']}")

        async def echo(request) -> JSONResponse:
            payload = await request.body()
            return JSONResponse({"length": len(payload), "intact": payload == body(BULK)})

        app = Starlette(routes=[Route("/slow/{name}", slow), Route("/echo", echo, methods=["POST"])])
        listener = socket.create_server(("127.0.0.1", 0))
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[listener]))
        try:
            while not server.started:
                assert not serving.done(), serving.result()
                await asyncio.sleep(0.01)
            base = f"http://127.0.0.1:{listener.getsockname()[1]}"
            async with httpx.AsyncClient(base_url=base, timeout=20) as client:

                async def get(name: int) -> str:
                    response = await client.get(f"/slow/{name}")
                    response.raise_for_status()
                    return response.text

                elapsed, texts = await timed([get(i) for i in range(CONCURRENT)])
                assert texts == [f"slow {i}" for i in range(CONCURRENT)]
                assert elapsed < OVERLAPPED, elapsed
                response = await client.post("/echo", content=body(BULK))
                assert response.json() == {"length": BULK, "intact": True}
        finally:
            server.should_exit = True
            await serving
            listener.close()

    run(main())
