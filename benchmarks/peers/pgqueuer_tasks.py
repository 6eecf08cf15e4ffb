"""PgQueuer worker process: ``python pgqueuer_tasks.py --batch-size 10``.

Runs the factory below under PgQueuer's own supervisor (``pgqueuer.run``, what ``pgq run`` calls).
The ``pgq run`` CLI itself is not used: in pgqueuer 1.6.0 its ``--log-level`` option hands a
``str`` to code expecting an enum and the command dies at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pgqueuer
import settings
import sink
from pgqueuer import PgQueuer
from pgqueuer.models import Job

ENTRYPOINT = "bench_noop"


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(settings.pg_dsn())
    try:
        pgq = PgQueuer.from_asyncpg_connection(connection)

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            sink.record(int(job.payload))

        yield pgq
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="PgQueuer benchmark worker")
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(pgqueuer.run(create_pgqueuer, batch_size=args.batch_size))


if __name__ == "__main__":
    main()
