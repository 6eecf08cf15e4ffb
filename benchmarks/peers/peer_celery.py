"""Celery 5 peers: the same app on a Redis broker and on RabbitMQ (pyamqp)."""

from __future__ import annotations

import os
import sys

import settings
from common import require_tcp, send_paced

CONCURRENCY = 2  # = cores on the benchmark machine
PREFETCH_MULTIPLIER = 4  # Celery's default


def bench_queue():
    from kombu import Exchange, Queue

    exchange = Exchange(settings.NAMESPACE, type="direct")
    return Queue(settings.NAMESPACE, exchange, routing_key=settings.NAMESPACE)


class _CeleryPeer:
    broker = ""  # BENCH_CELERY_BROKER value understood by celery_tasks
    system = ""
    service: tuple[str, str, int] = ("", "", 0)  # name, URL, default port
    enqueue_api = "noop.delay(i)"
    bulk_api = None  # group(...).apply_async() publishes one message per task: not a bulk API
    worker_description = (
        f"celery worker --pool prefork --concurrency {CONCURRENCY} "
        f"(prefetch multiplier {PREFETCH_MULTIPLIER}, no result backend, "
        "--without-gossip --without-mingle --without-heartbeat)"
    )

    def open(self) -> None:
        name, url, default_port = self.service
        require_tcp(name, *settings.host_port(url, default_port))
        os.environ["BENCH_CELERY_BROKER"] = self.broker
        import celery_tasks

        self.tasks = celery_tasks
        self.purge()

    def enqueue_one_by_one(self, ids: range) -> None:
        delay = self.tasks.noop.delay
        for i in ids:
            delay(i)

    def enqueue_bulk(self, ids: range) -> None:
        raise NotImplementedError("Celery has no bulk enqueue API")

    def enqueue_paced(self, ids: range, interval: float) -> dict[int, float]:
        return send_paced(ids, interval, self.tasks.noop.delay)

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
            "--pool", "prefork", "--concurrency", str(CONCURRENCY),
            "--prefetch-multiplier", str(PREFETCH_MULTIPLIER),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "WARNING", "-Q", settings.NAMESPACE, "-n", f"{settings.NAMESPACE}@%h",
        ]  # fmt: skip

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_CELERY_BROKER": self.broker}


class CeleryRedisPeer(_CeleryPeer):
    broker = "redis"
    system = "celery-redis"
    service = ("Redis", settings.REDIS_URL, 6379)

    def _redis(self):
        import redis

        return redis.Redis.from_url(settings.REDIS_URL)

    def purge(self) -> None:
        """Delete every key under our prefix: queue list, bindings, unacked bookkeeping.

        Safe before publishing: Celery re-declares the queue binding on every publish."""
        client = self._redis()
        try:
            keys = list(client.scan_iter(match=f"{self.tasks.REDIS_KEY_PREFIX}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def close(self) -> None:
        self.purge()


class CeleryRabbitPeer(_CeleryPeer):
    broker = "rabbitmq"
    system = "celery-rabbitmq"
    service = ("RabbitMQ", settings.AMQP_URL, 5672)

    def purge(self) -> None:
        with self.tasks.app.connection_for_write() as conn:
            queue = bench_queue()(conn.default_channel)
            queue.declare()
            queue.purge()

    def close(self) -> None:
        with self.tasks.app.connection_for_write() as conn:
            queue = bench_queue()(conn.default_channel)
            queue.delete()
            queue.exchange.delete()
