"""Unique jobs (unique.sql): writing a job with a unique key, its ``unique_for`` window, pruning
the windows that ended.

A keyed write is a few statements, decided by what each returns (write, else read the holder; take
the window, else take the job back), so it is written once as a generator of statements
(``unique_steps``) that the sync and async drivers, and a caller's SQLAlchemy connection, run in
one transaction each. A holder that finishes between two statements makes the write start over; it
cannot loop for long, as every round found a job that then finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, NamedTuple, cast

import psycopg

from ..errors import SqlqError
from ..unique import key_hash
from .base import StoreBase
from .records import JobSpec, UniqueBatchRow, UniqueHolder, UniqueRow, UniqueWindow, UniqueWrite


class Step(NamedTuple):
    """A statement the steps ask to run, with its parameters."""

    statement: str
    params: dict[str, Any]


#: The rows a step's statement returned (empty when none), as the driver fetched them.
Rows = list[Sequence[Any]]
Steps = Generator[Step, Rows, UniqueWrite]
#: Rounds of "the holder finished before it could be read" before giving up (each needs a job of
#: the key to finish during one round trip).
_MAX_ROUNDS = 100


class Unique(StoreBase):
    def unique_steps(self, job: JobSpec) -> Steps:
        """The statements of one keyed write, each sent the rows of the one before."""
        params = job.params()
        hashed = key_hash(cast(str, job.unique_key))
        params["unique_hash"] = hashed
        key = {"unique_hash": hashed}
        write = self.sql["UNIQUE_ENQUEUE_REPLACE" if job.on_conflict == "replace" else "UNIQUE_ENQUEUE"]
        for _ in range(_MAX_ROUNDS):
            rows = yield Step(write, params)
            if rows:
                row = UniqueRow(*rows[0])
                if row.id != job.id:  # (replace) the waiting holder took this call
                    return UniqueWrite(row.id, written=False, replaced=True)
                if row.window_job is not None and row.window_job != job.id:
                    # the window's job finished while this insert waited for it: the window holds the key
                    yield Step(self.sql["UNIQUE_UNDO"], {"id": job.id})
                    return UniqueWrite(row.window_job, written=False, replaced=False)
                if job.unique_for is None:
                    return UniqueWrite(job.id, written=True, replaced=False)
                taken = yield Step(self.sql["UNIQUE_WINDOW_TAKE"],
                                   dict(key, unique_key=job.unique_key, id=job.id, unique_for=job.unique_for))
                if taken:
                    return UniqueWrite(job.id, written=True, replaced=False)
                yield Step(self.sql["UNIQUE_UNDO"], {"id": job.id})
            else:
                holder = yield Step(self.sql["UNIQUE_HOLDER"], key)
                if holder:
                    return UniqueWrite(UniqueHolder(*holder[0]).id, written=False, replaced=False)
            held = yield Step(self.sql["UNIQUE_WINDOW_HOLDER"], key)
            if held:
                return UniqueWrite(UniqueWindow(*held[0]).job_id, written=False, replaced=False)
            # the holder finished, or its window ended, between two statements: write again
        raise SqlqError(f"unique key {job.unique_key!r}: its holder kept finishing before it could be read "
                        f"({_MAX_ROUNDS} rounds); send the call again")

    def enqueue_unique(self, conn: psycopg.Connection, jobs: list[JobSpec]) -> list[UniqueWrite]:
        """Write keyed ``jobs`` on a psycopg connection, which must be in a transaction (an insert
        may be taken back by a later statement, before anyone could claim it). A batch without
        windows or 'replace' is one UNIQUE_ENQUEUE_MANY, then the steps for the calls it did not
        write; anything else goes job by job."""
        def run(statement: str, params: dict[str, Any]) -> Rows:
            cur = conn.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []

        if len(jobs) < 2 or any(j.unique_for is not None or j.on_conflict == "replace" for j in jobs):
            return [drive(self.unique_steps(job), run) for job in jobs]
        params = JobSpec.batch_params(jobs)
        params["unique_hashes"] = [key_hash(cast(str, j.unique_key)) for j in jobs]
        written = {row.id: row.window_job
                   for row in map(UniqueBatchRow._make, run(self.sql["UNIQUE_ENQUEUE_MANY"], params))}
        done: list[UniqueWrite] = []
        for job in jobs:
            if job.id not in written:  # its key was held: who holds it, one by one
                done.append(drive(self.unique_steps(job), run))
            elif (window := written[job.id]) is not None and window != job.id:
                run(self.sql["UNIQUE_UNDO"], {"id": job.id})  # the window's job finished meanwhile
                done.append(UniqueWrite(window, written=False, replaced=False))
            else:
                done.append(UniqueWrite(job.id, written=True, replaced=False))
        return done

    async def aenqueue_unique(self, conn: psycopg.AsyncConnection, jobs: list[JobSpec]) -> list[UniqueWrite]:
        """``enqueue_unique`` on an async connection (in a transaction too)."""
        async def run(statement: str, params: dict[str, Any]) -> Rows:
            cur = await conn.execute(statement, params)
            return list(await cur.fetchall()) if cur.description else []

        return [await adrive(self.unique_steps(job), run) for job in jobs]

    def unique_prune(self, conn: psycopg.Connection) -> int:
        """Delete the windows that ended (maintenance)."""
        return conn.execute(self.sql["UNIQUE_PRUNE"]).rowcount


def drive(steps: Steps, run: Callable[[str, dict[str, Any]], Rows]) -> UniqueWrite:
    """Run ``steps`` with ``run`` (one statement, its rows) until they say what was written."""
    try:
        step = next(steps)
        while True:
            step = steps.send(run(step.statement, step.params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def adrive(steps: Steps, run: Callable[[str, dict[str, Any]], Awaitable[Rows]]) -> UniqueWrite:
    """``drive`` with an async ``run``."""
    try:
        step = next(steps)
        while True:
            step = steps.send(await run(step.statement, step.params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]

