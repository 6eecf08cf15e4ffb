"""PgQueuer peer (PostgreSQL, asyncpg driver) in the dedicated bench database."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import settings
from common import drop_bench_database, recreate_bench_database, require_postgres, send_paced_async
from pgqueuer.queries import Queries
from pgqueuer_tasks import ENTRYPOINT

BATCH_SIZE = 10  # PgQueuer's default dequeue batch size


def payload(i: int) -> bytes:
    return str(i).encode()


class PgQueuerPeer:
    system = "pgqueuer"
    enqueue_api = "await queries.enqueue(entrypoint, payload) per job (asyncpg)"
    bulk_api = "await queries.enqueue([entrypoints], [payloads], [priorities]) in one call"
    worker_description = (
        f"pgqueuer.run(factory, batch_size={BATCH_SIZE}) (one asyncio process, asyncpg, "
        "LISTEN/NOTIFY, no max-concurrent-tasks cap)"
    )

    def open(self) -> None:
        require_postgres()
        recreate_bench_database()
        self.loop = asyncio.Runner()
        self.connection = self.loop.run(asyncpg.connect(settings.pg_dsn()))
        self.queries = Queries.from_asyncpg_connection(self.connection)
        self.loop.run(self.queries.install())

    def purge(self) -> None:
        self.loop.run(self.queries.clear_queue())

    def enqueue_one_by_one(self, ids: range) -> None:
        self.loop.run(self._enqueue_each(ids))

    async def _enqueue_one(self, i: int) -> None:
        await self.queries.enqueue(ENTRYPOINT, payload(i))

    async def _enqueue_each(self, ids: range) -> None:
        for i in ids:
            await self._enqueue_one(i)

    def enqueue_bulk(self, ids: range) -> None:
        count = len(ids)
        self.loop.run(self.queries.enqueue([ENTRYPOINT] * count, [payload(i) for i in ids], [0] * count))

    def enqueue_paced(self, ids: range, interval: float) -> dict[int, float]:
        return self.loop.run(send_paced_async(ids, interval, self._enqueue_one))

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "pgqueuer_tasks.py", "--batch-size", str(BATCH_SIZE),
        ]  # fmt: skip

    def worker_env(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        try:
            self.loop.run(self.connection.close())
            self.loop.close()
        finally:
            drop_bench_database()
