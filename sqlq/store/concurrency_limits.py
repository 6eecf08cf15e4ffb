"""Concurrency limits (concurrency_limits.sql): at most N running jobs of a task, or of each key.

What a limit means and where it comes from is sqlq/concurrency_limits.py; it is enforced by the
claim itself (``Claims.claim_concurrency_limited``, CLAIM_CONCURRENCY_LIMITED and _KEYED in
claims.sql). These are the statements that write and read the limits: a worker's declaration at
start, a live change (``set_concurrency_limit``, ``app.control.concurrency_limit``), a worker's
periodic re-read and the listing.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg.rows import class_row, scalar_row

from .base import StoreBase
from .records import ConcurrencyLimitRow, DeclaredLimits


class ConcurrencyLimits(StoreBase):
    def concurrency_limits_declare(self, conn: psycopg.Connection, limits: Mapping[str, int | None]) -> DeclaredLimits:
        """Make the tasks' own rows (no key) say ``limits`` (task → limit; None deletes the row);
        rows already at their limit are left alone, rows for one key value are never touched."""
        if not limits:
            return DeclaredLimits(0, 0)
        names = sorted(limits)
        with conn.cursor(row_factory=class_row(DeclaredLimits)) as cur:
            row = cur.execute(self.sql["CONCURRENCY_LIMITS_DECLARE"],
                              {"tasks": names, "limits": [limits[n] for n in names]}).fetchone()
        assert row is not None  # (an aggregate: always one row)
        return row

    def concurrency_limit_set(self, conn: psycopg.Connection, task: str, limit: int | None,
                              key: str | None = None) -> DeclaredLimits:
        """Set the limit of ``task`` (of its key value ``key`` when given; validated by the caller:
        sqlq.concurrency_limits.parse_limit); None removes it. Each worker applies it at its next
        claim of the task, and starts claiming a newly limited task through the limited path within
        about a second."""
        with conn.cursor(row_factory=class_row(DeclaredLimits)) as cur:
            row = cur.execute(self.sql["CONCURRENCY_LIMIT_SET"], {"task": task, "key": key, "limit": limit}).fetchone()
        assert row is not None
        return row

    def concurrency_limited_tasks(self, conn: psycopg.Connection) -> list[str]:
        """The names of the tasks that have a limit now (for any key)."""
        with conn.cursor(row_factory=scalar_row) as cur:
            return [str(task) for task in cur.execute(self.sql["CONCURRENCY_LIMITED_TASKS"]).fetchall()]

    def concurrency_limits(self, conn: psycopg.Connection) -> list[ConcurrencyLimitRow]:
        """Every limit, with the jobs running under it now."""
        with conn.cursor(row_factory=class_row(ConcurrencyLimitRow)) as cur:
            return cur.execute(self.sql["CONCURRENCY_LIMITS"]).fetchall()
