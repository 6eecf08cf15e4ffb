"""Rate limits (rate_limits.sql): the token buckets of the rate-limited tasks, one row each.

What a limit means and where it comes from is sqlq/rate_limits.py; the tokens are taken by the
claim itself (``Claims.claim_rate_limited``, CLAIM_RATE_LIMITED in claims.sql). These are the
statements that write and read the limits: a worker's declaration at start, a live change
(``sqlq.rate_limits.set_rate_limit``, ``app.control.rate_limit``), a worker's periodic
re-read and the listing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import psycopg

from ..rate_limits import limits_arrays
from .base import StoreBase
from .records import DeclaredLimits, RateLimitRow


class RateLimits(StoreBase):
    def rate_limits_declare(self, conn: psycopg.Connection, limits: Mapping[str, float | None]) -> DeclaredLimits:
        """Make the table say ``limits`` (task → tasks per second; None deletes the task's row); rows
        already at their rate are left alone, their tokens untouched."""
        if not limits:
            return DeclaredLimits(0, 0)
        row = conn.execute(self.sql["RATE_LIMITS_DECLARE"], limits_arrays(limits)).fetchone()
        return DeclaredLimits(*cast("tuple[Any, ...]", row))

    def rate_limits_set(self, conn: psycopg.Connection, task: str, rate: float | None) -> DeclaredLimits:
        """Set one task's limit (tasks per second, validated by the caller: sqlq.rate_limits.parse_rate);
        None removes it. Workers see it at their next read of the table, within about a second."""
        return self.rate_limits_declare(conn, {task: rate})

    def rate_limited_tasks(self, conn: psycopg.Connection) -> list[str]:
        """The names of the tasks that have a limit now."""
        return [r[0] for r in conn.execute(self.sql["RATE_LIMITED_TASKS"]).fetchall()]

    def rate_limits(self, conn: psycopg.Connection) -> list[RateLimitRow]:
        """Every limit, with the tokens its bucket holds now."""
        return [RateLimitRow(*r) for r in conn.execute(self.sql["RATE_LIMITS"]).fetchall()]
