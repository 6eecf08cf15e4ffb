"""The jobs table from the producers' side (jobs.sql): writing jobs one by one, in batches and by
COPY, writing them again after a broken connection, promoting scheduled ones, and the queue
listings.

Batching is the rule: one statement enqueues many jobs, and a bulk enqueue of jobs due now is one
COPY plus one NOTIFY per queue. One job from sqlq's own connection takes the libpq fast path
(store/fast.py). A job routed through an exchange is written by the routes group's PUBLISH
statements, which this group builds on (``Jobs`` is a ``Routes``): a retried write and a write on a
caller's SQLAlchemy connection pick either kind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, cast

import psycopg

from . import fast
from .records import JobSpec, PublishRow, QueueDepth, WaitingJob
from .routes import Routes

#: From this many jobs due now, a batch is written by COPY rather than ENQUEUE_MANY.
_COPY_MIN = 64


class Jobs(Routes):
    @property
    def listen_jobs(self) -> str:
        """The LISTEN statement of the channel that wakes idle workers."""
        return self.sql["LISTEN_JOBS"]

    def enqueue(self, conn: psycopg.Connection, job: JobSpec, *, own: bool = False) -> None:
        """Write one job. ``own``: ``conn`` is one of sqlq's pooled autocommit connections, so the
        libpq fast path may be taken (never the caller's connection: that would bypass the BEGIN
        psycopg issues for the caller's transaction)."""
        key = "ENQUEUE_NOW" if job.due_now() else "ENQUEUE"
        params = job.params()
        if not own or fast.execute(conn, self._fast[key], params) is None:
            conn.execute(self.sql[key], params, prepare=True)

    async def aenqueue(self, conn: psycopg.AsyncConnection, job: JobSpec) -> None:
        await conn.execute(self.sql["ENQUEUE_NOW" if job.due_now() else "ENQUEUE"], job.params(), prepare=True)

    def enqueue_many(self, conn: psycopg.Connection, jobs: Sequence[JobSpec]) -> None:
        if not jobs:
            return
        if len(jobs) < _COPY_MIN or not all(j.due_now() for j in jobs):
            conn.execute(self.sql["ENQUEUE_MANY"], JobSpec.batch_params(jobs))
            return
        self.copy_jobs(conn, ((j.id, j.task, j.queue, j.priority, "available", j.args, j.kwargs, j.payload,
                               j.content_type, j.headers, j.acks_late, j.group_id, j.root_id, j.parent_id,
                               j.concurrency_key)
                              for j in jobs),
                       sorted({j.queue for j in jobs}))

    async def aenqueue_many(self, conn: psycopg.AsyncConnection, jobs: Sequence[JobSpec]) -> None:
        if jobs:
            await conn.execute(self.sql["ENQUEUE_MANY"], JobSpec.batch_params(jobs))

    def write_statement(self, jobs: Sequence[JobSpec]) -> tuple[str, dict[str, Any]]:
        """The statement and parameters that write ``jobs`` on a connection sqlq does not drive (a
        SQLAlchemy Connection or Session, whose driver runs them in the caller's transaction):
        PUBLISH_ONE or PUBLISH when routed, else ENQUEUE for one job, ENQUEUE_MANY for several."""
        if self.routed(jobs):
            return self.publish_statement(jobs)
        if len(jobs) == 1:
            return self.sql["ENQUEUE"], jobs[0].params()
        return self.sql["ENQUEUE_MANY"], JobSpec.batch_params(jobs)

    def copy_jobs(self, conn: psycopg.Connection, rows: Iterable[tuple[Any, ...]], queues: Sequence[str], *,
                  lean: bool = False) -> None:
        """COPY rows of due jobs (COPY_JOBS's columns in order; COPY_JOBS_LEAN's when ``lean``) and
        wake ``queues``' workers.

        ``rows`` may be a generator that encodes each job as it goes: psycopg sends the rows in
        chunks while the generator runs, so the server's work overlaps the encoding. If the
        generator raises, the COPY is aborted and nothing is written."""
        # An autocommit connection (sqlq's own) gets a transaction for COPY + NOTIFY; on the caller's
        # connection both simply join the caller's transaction (psycopg's transaction() would
        # commit it if it had not begun yet).
        atomic = conn.transaction() if conn.autocommit else contextlib.nullcontext()
        with atomic, conn.cursor() as cur:
            with cur.copy(self.sql["COPY_JOBS_LEAN" if lean else "COPY_JOBS"]) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
            cur.execute(self.sql["NOTIFY_QUEUES"], {"queues": list(queues)})

    def rewrite(self, conn: psycopg.Connection, jobs: Sequence[JobSpec]) -> list[PublishRow] | None:
        """Write ``jobs`` again after the connection of a first attempt broke (sqlq/enqueue.py), on
        sqlq's own autocommit ``conn``: those the first attempt wrote (their ids are in jobs or
        results) are left as they are, the rest are written, all in one transaction. Returns
        PUBLISH's rows when the jobs are routed (the same rows whichever attempt wrote them), None
        otherwise.

        A bulk enqueue (COPY, ENQUEUE_MANY) was one transaction, so either every job of it was
        written or none; the guard is per job all the same, which covers both. Every queue is woken,
        even one whose job the first attempt wrote: a NOTIFY too many only makes a worker look."""
        rows: list[PublishRow] | None = None
        with conn.transaction():
            if self.routed(jobs):
                cur = conn.execute(self.sql["PUBLISH_REWRITE"], self.publish_params(jobs))
                rows = [PublishRow(*r) for r in cur.fetchall()]
                ids, queues = self.published_jobs(rows)
            else:
                conn.execute(self.sql["ENQUEUE_REWRITE"], JobSpec.batch_params(jobs))
                ids, queues = [j.id for j in jobs], sorted({j.queue for j in jobs})
            conn.execute(self.sql["REWRITE_UNDO"], {"ids": ids})
            conn.execute(self.sql["NOTIFY_QUEUES"], {"queues": queues})
        return rows

    async def arewrite(self, conn: psycopg.AsyncConnection,
                       jobs: Sequence[JobSpec]) -> list[PublishRow] | None:
        """``rewrite`` on an async connection."""
        rows: list[PublishRow] | None = None
        async with conn.transaction():
            if self.routed(jobs):
                cur = await conn.execute(self.sql["PUBLISH_REWRITE"], self.publish_params(jobs))
                rows = [PublishRow(*r) for r in await cur.fetchall()]
                ids, queues = self.published_jobs(rows)
            else:
                await conn.execute(self.sql["ENQUEUE_REWRITE"], JobSpec.batch_params(jobs))
                ids, queues = [j.id for j in jobs], sorted({j.queue for j in jobs})
            await conn.execute(self.sql["REWRITE_UNDO"], {"ids": ids})
            await conn.execute(self.sql["NOTIFY_QUEUES"], {"queues": queues})
        return rows

    # PROMOTE and NEXT_SCHEDULED_IN are planned at every call (they run once per housekeeping round,
    # not per job). Prepared, they got a generic plan after five runs, and one made while the table
    # was nearly empty scanned it all at every later round.
    def promote(self, conn: psycopg.Connection, limit: int = 5000) -> int:
        return cast("tuple[int]", conn.execute(self.sql["PROMOTE"], {"limit": limit}, prepare=False).fetchone())[0]

    def any_due(self, conn: psycopg.Connection, queues: Sequence[str]) -> bool:
        row = conn.execute(self.sql["ANY_DUE"], {"queues": list(queues)}).fetchone()
        return bool(row[0]) if row is not None else False

    def waiting_upto(self, conn: psycopg.Connection, queue: str, upto: int) -> int:
        """Jobs of ``queue`` waiting to be claimed, counted up to ``upto`` at most."""
        row = conn.execute(self.sql["WAITING_UPTO"], {"queue": queue, "upto": upto}).fetchone()
        return int(row[0]) if row is not None else 0

    def next_scheduled_in(self, conn: psycopg.Connection) -> float | None:
        return cast("tuple[float | None]", conn.execute(self.sql["NEXT_SCHEDULED_IN"], prepare=False).fetchone())[0]

    def queue_depths(self, conn: psycopg.Connection) -> list[QueueDepth]:
        return [QueueDepth(*r) for r in conn.execute(self.sql["QUEUE_DEPTHS"]).fetchall()]

    def purge(self, conn: psycopg.Connection, queue: str | None = None) -> int:
        return conn.execute(self.sql["PURGE"], {"queue": queue}).rowcount

    def waiting_jobs(self, conn: psycopg.Connection, task: str) -> list[WaitingJob]:
        """Task ``task``'s jobs that have not started, oldest first (``sqlq.testing.assert_enqueued``)."""
        return [WaitingJob(*r) for r in conn.execute(self.sql["WAITING_JOBS"], {"task": task}).fetchall()]

    def run_now(self, conn: psycopg.Connection, ids: Sequence[str]) -> int:
        """Make the scheduled ones of these jobs due now; returns how many were."""
        return cast("tuple[int, int]", conn.execute(self.sql["RUN_NOW"], {"ids": list(ids)}).fetchone())[0]
