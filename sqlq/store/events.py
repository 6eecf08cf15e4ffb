"""The events stream (events.sql): writing a statement's events as one row, reading a tail,
deleting old events. What the events are and who writes them is ``sqlq.events``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg

from .base import StoreBase
from .records import EventRow


class Events(StoreBase):
    @property
    def listen_events(self) -> str:
        """The LISTEN statement of the channel each write of events is announced on."""
        return self.sql["LISTEN_EVENTS"]

    def events_batch(self, conn: psycopg.Connection, hostname: str, batch: str) -> int:
        """A worker's events, ``batch`` the JSON text of their array (EVENTS_BATCH); returns the
        row's id."""
        # never prepared: the parameter is one text, and planning an INSERT ... VALUES is nothing
        row = conn.execute(self.sql["EVENTS_BATCH"], {"hostname": hostname, "batch": batch}, prepare=False).fetchone()
        return int(cast("tuple[int, Any, Any]", row)[0])

    def events_sent(self, conn: psycopg.Connection, hostname: str, ids: Sequence[str]) -> int:
        """An enqueue's task-sent events (EVENTS_SENT), on the enqueue's connection and transaction."""
        if not ids:
            return 0
        row = conn.execute(self.sql["EVENTS_SENT"], {"hostname": hostname, "ids": list(ids)}).fetchone()
        return cast("tuple[int, Any]", row)[0]

    async def aevents_sent(self, conn: psycopg.AsyncConnection, hostname: str, ids: Sequence[str]) -> int:
        """``events_sent`` for the async API."""
        if not ids:
            return 0
        cur = await conn.execute(self.sql["EVENTS_SENT"], {"hostname": hostname, "ids": list(ids)})
        return cast("tuple[int, Any]", await cur.fetchone())[0]

    def events_sent_statement(self, hostname: str, ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """EVENTS_SENT and its parameters, for a connection the store does not run (SQLAlchemy's)."""
        return self.sql["EVENTS_SENT"], {"hostname": hostname, "ids": list(ids)}

    def events_after(self, conn: psycopg.Connection, after: int, *, limit: int = 100,
                     since: float | None = None) -> list[EventRow]:
        """The event rows after id ``after``, oldest first (EVENTS_AFTER)."""
        params = {"after": after, "limit": limit, "since": since}
        return [EventRow(*r) for r in conn.execute(self.sql["EVENTS_AFTER"], params).fetchall()]

    def events_start(self, conn: psycopg.Connection, since: float | None) -> int:
        """The id a tail starting at ``since`` (seconds since the epoch; None: now) reads after."""
        return int(cast("tuple[int]", conn.execute(self.sql["EVENTS_FIRST_AFTER"], {"since": since}).fetchone())[0])

    def expire_events(self, conn: psycopg.Connection, ttl: float, limit: int = 10000) -> int:
        """Delete at most ``limit`` event rows older than ``ttl`` seconds (maintenance)."""
        return conn.execute(self.sql["EXPIRE_EVENTS"], {"ttl": ttl, "limit": limit}).rowcount
