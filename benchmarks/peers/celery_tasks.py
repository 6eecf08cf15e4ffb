"""Celery app + noop task, shared by the producer (peer_celery) and the worker process.

``BENCH_CELERY_BROKER`` selects ``redis`` or ``rabbitmq``. Everything is namespaced: the queue,
exchange and routing key are ``settings.NAMESPACE``, and on Redis every key carries the
``NAMESPACE:`` global prefix, so purging never touches anyone else's data.
"""

from __future__ import annotations

import os

import settings
import sink
from celery import Celery

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis")
REDIS_KEY_PREFIX = f"{settings.NAMESPACE}:"


def broker_url(broker: str) -> str:
    return {"redis": settings.REDIS_URL, "rabbitmq": settings.AMQP_URL}[broker]


def make_app(broker: str) -> Celery:
    app = Celery("bench_peers", broker=broker_url(broker))
    app.conf.update(
        task_default_queue=settings.NAMESPACE,
        task_default_exchange=settings.NAMESPACE,
        task_default_routing_key=settings.NAMESPACE,
        task_ignore_result=True,
        worker_enable_remote_control=False,  # no pidbox queues/channels
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"global_keyprefix": REDIS_KEY_PREFIX} if broker == "redis" else {},
    )
    return app


app = make_app(BROKER)


@app.task(name="bench.noop")
def noop(i: int) -> None:
    sink.record(i)
