"""Results (results.sql): what a result handle reads, a running task's reported state
(``update_state``), forgetting and revoking, and the expiry of old results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import psycopg

from .base import StoreBase
from .records import EagerResultRow, JobRecord, JobState


class Results(StoreBase):
    @property
    def listen_results(self) -> str:
        """The LISTEN statement of the channel that wakes result waiters."""
        return self.sql["LISTEN_RESULTS"]

    def fetch_state(self, conn: psycopg.Connection, job_id: str) -> JobState | None:
        row = conn.execute(self.sql["FETCH_STATE"], {"id": job_id}, prepare=True).fetchone()
        return JobState(*row) if row is not None else None

    async def afetch_state(self, conn: psycopg.AsyncConnection, job_id: str) -> JobState | None:
        cur = await conn.execute(self.sql["FETCH_STATE"], {"id": job_id}, prepare=True)
        row = await cur.fetchone()
        return JobState(*row) if row is not None else None

    def set_progress(self, conn: psycopg.Connection, job_id: str, state: str, meta_json: str | None) -> bool:
        """Record a running job's reported state and meta (JSON text); False when the job is not
        running (waiting, finished or unknown), so nothing was written."""
        return conn.execute(self.sql["SET_PROGRESS"], {"id": job_id, "state": state, "meta": meta_json},
                            prepare=True).fetchone() is not None

    def store_eager_result(self, conn: psycopg.Connection, row: EagerResultRow) -> None:
        """Write an eager call's outcome as its results row (replacing one of the same id)."""
        conn.execute(self.sql["STORE_EAGER_RESULT"], row._asdict())

    def forget(self, conn: psycopg.Connection, job_id: str) -> None:
        conn.execute(self.sql["FORGET"], {"id": job_id})

    def revoke(self, conn: psycopg.Connection, ids: Sequence[str], *, terminate: bool = False,
               signal: str | None = None, expires: float | None = None) -> int:
        """Keep ``ids`` (row ids) in the revoked table (for ``expires`` seconds; None: until the
        results' ttl takes them) and revoke those of their jobs that have not started; returns how
        many jobs were. An id with no job yet (a workflow step still to come) is recorded REVOKED
        when its turn comes."""
        params = {"ids": list(ids), "terminate": terminate, "signal": signal, "expires": expires}
        return cast("tuple[int]", conn.execute(self.sql["REVOKE"], params).fetchone())[0]

    def expire_results(self, conn: psycopg.Connection, ttl: float, limit: int = 10000) -> int:
        return conn.execute(self.sql["EXPIRE_RESULTS"], {"ttl": ttl, "limit": limit}).rowcount

    def job_record(self, conn: psycopg.Connection, job_id: str) -> JobRecord | None:
        """One job whole, finished or not; None when no job has that id."""
        row = conn.execute(self.sql["JOB_RECORD"], {"id": job_id}).fetchone()
        return JobRecord(*row) if row is not None else None

    async def ajob_record(self, conn: psycopg.AsyncConnection, job_id: str) -> JobRecord | None:
        cur = await conn.execute(self.sql["JOB_RECORD"], {"id": job_id})
        row = await cur.fetchone()
        return JobRecord(*row) if row is not None else None

    def retry_result(self, conn: psycopg.Connection, job_id: str, new_id: str) -> bool:
        """Enqueue finished job ``job_id`` again as job ``new_id``; False when it has no results row."""
        return conn.execute(self.sql["RETRY_RESULT"], {"id": job_id, "new_id": new_id}).fetchone() is not None
