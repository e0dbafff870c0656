"""The Celery application of the ``-P gevent`` test: broker and results in the redis-server whose URL is in
``CELERY_REDIS_URL``. ``nap`` sleeps (patched ``time.sleep`` in the worker) and answers the worker's `proof`."""

import os
import time

from celery import Celery

app = Celery("ferrovent_integration", broker=os.environ["CELERY_REDIS_URL"], backend=os.environ["CELERY_REDIS_URL"])
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task
def nap(seconds: float) -> str:
    from tests.integrations.as_gevent import proof

    time.sleep(seconds)
    return proof()
