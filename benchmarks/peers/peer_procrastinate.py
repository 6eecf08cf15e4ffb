"""Procrastinate peer (PostgreSQL, psycopg 3 async connector) in the dedicated bench database."""

from __future__ import annotations

import asyncio
import sys

import procrastinate_tasks
from common import drop_bench_database, recreate_bench_database, require_postgres, send_paced_async

CONCURRENCY = 10  # async noop tasks; Procrastinate's default is 1


class ProcrastinatePeer:
    system = "procrastinate"
    enqueue_api = "await noop.defer_async(i=i) per job"
    bulk_api = "await noop.batch_defer_async(*kwargs) in one call"
    worker_description = (
        f"procrastinate worker --concurrency {CONCURRENCY} (one asyncio process, psycopg pool, LISTEN/NOTIFY)"
    )

    def open(self) -> None:
        require_postgres()
        recreate_bench_database()
        self.tasks = procrastinate_tasks
        self.loop = asyncio.Runner()
        self.loop.run(self._open_app())

    async def _open_app(self) -> None:
        await self.tasks.app.open_async()
        await self.tasks.app.schema_manager.apply_schema_async()

    def _execute(self, query: str) -> None:
        self.loop.run(self.tasks.app.connector.execute_query_async(query))

    def purge(self) -> None:
        self._execute("TRUNCATE procrastinate_jobs CASCADE")

    def enqueue_one_by_one(self, ids: range) -> None:
        self.loop.run(self._defer_each(ids))

    async def _defer_one(self, i: int) -> None:
        await self.tasks.noop.defer_async(i=i)

    async def _defer_each(self, ids: range) -> None:
        for i in ids:
            await self._defer_one(i)

    def enqueue_bulk(self, ids: range) -> None:
        self.loop.run(self.tasks.noop.batch_defer_async(*({"i": i} for i in ids)))

    def enqueue_paced(self, ids: range, interval: float) -> dict[int, float]:
        return self.loop.run(send_paced_async(ids, interval, self._defer_one))

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "procrastinate", "--app=procrastinate_tasks.app",
            "worker", f"--concurrency={CONCURRENCY}",
        ]  # fmt: skip

    def worker_env(self) -> dict[str, str]:
        return {}

    async def _close_app(self) -> None:
        await self.tasks.app.close_async()

    def close(self) -> None:
        try:
            self.loop.run(self._close_app())
            self.loop.close()
        finally:
            drop_bench_database()
