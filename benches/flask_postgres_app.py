"""The application of the flask_postgres bench (real_stacks.py): a Flask view doing one indexed SELECT through a
psycopg 3 connection pool, served by gunicorn as ``flask_postgres_app:app``.

The database comes from the environment: FLASK_POSTGRES_PORT (a local PostgreSQL, user and database ``postgres``)
and FLASK_POSTGRES_ROWS (the rows of table ``items``, ids 0 to ROWS - 1). The pool is made at import, which the
gunicorn worker does after patching: its threads are greenlets.
"""

from __future__ import annotations

import os
import random

from flask import Flask
from psycopg_pool import ConnectionPool

ROWS = int(os.environ["FLASK_POSTGRES_ROWS"])
POOL_SIZE = 10

app = Flask(__name__)
pool = ConnectionPool(
    f"host=127.0.0.1 port={os.environ['FLASK_POSTGRES_PORT']} user=postgres dbname=postgres",
    min_size=POOL_SIZE,
    max_size=POOL_SIZE,
    open=True,
)


@app.get("/")
def item() -> str:
    with pool.connection() as conn:
        row = conn.execute("SELECT name FROM items WHERE id = %s", (random.randrange(ROWS),)).fetchone()
    return row[0]
