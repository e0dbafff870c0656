"""Call an async-only library from greenlet code: a Flask view on ferrovent's WSGIServer awaits httpx.AsyncClient.

    python examples/mixed_asyncio.py [PORT]      # then: curl http://127.0.0.1:8089/

``/`` fetches ``/slow`` (which waits a second) ten times at once with ``httpx.AsyncClient``, through
``ferrovent.asyncio.await_``: the view's greenlet waits while the asyncio tasks run on the same loop and the same
thread as the server's other greenlets, which answer the ten ``/slow`` requests meanwhile. The page says it took
about one second, not ten. asyncpg, aiohttp or redis.asyncio are called the same way.
"""

import asyncio
import sys
import time

import ferrovent
import httpx
from ferrovent.asyncio import await_
from ferrovent.pywsgi import WSGIServer
from flask import Flask, request

FETCHES = 10
app = Flask(__name__)


@app.route("/slow")
def slow() -> str:
    ferrovent.sleep(1)
    return "slow\n"


async def fetch_all(url: str, count: int) -> list[str]:
    async with httpx.AsyncClient() as client:
        responses = await asyncio.gather(*(client.get(url) for _ in range(count)))
    return [response.text for response in responses]


@app.route("/")
def index() -> str:
    started = time.monotonic()
    texts = await_(fetch_all(request.host_url + "slow", FETCHES))
    answers = sum(text == "slow\n" for text in texts)
    return f"{answers} answers from /slow in {time.monotonic() - started:.2f} s\n"


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8089
    server = WSGIServer(("127.0.0.1", port), app)
    print(f"Serving on http://127.0.0.1:{port}/ (Ctrl-C to stop)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
