"""Connection settings for the peer benchmarks (each overridable through the environment).

Everything the peers touch is namespaced so that a run only ever clears its own state:
Redis keys live under ``BENCH_NAMESPACE:``, RabbitMQ uses a queue/exchange named
``BENCH_NAMESPACE``, and the PostgreSQL peers get a database of their own (``bench_peers``)
that is dropped and recreated for each PG peer.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

NAMESPACE = os.environ.get("BENCH_NAMESPACE", "sqlq_bench_peers")

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "pyamqp://guest:guest@127.0.0.1:5672//")

# Server-level DSN (no database): the maintenance DB and the bench DB are derived from it.
PG_SERVER_DSN = os.environ.get("BENCH_PG_SERVER_DSN", "postgresql://postgres@127.0.0.1:5432")
PG_BENCH_DB = os.environ.get("BENCH_PG_DB", "bench_peers")
PG_MAINTENANCE_DB = os.environ.get("BENCH_PG_MAINTENANCE_DB", "postgres")


def pg_dsn(database: str = PG_BENCH_DB) -> str:
    return f"{PG_SERVER_DSN.rstrip('/')}/{database}"


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port
