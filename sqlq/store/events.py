"""The events stream (events.sql): writing a batch of events in one statement, reading a tail,
deleting old events. What the events are and who writes them is ``sqlq.events``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg

from .base import StoreBase
from .records import EventBatch, EventRow


class Events(StoreBase):
    @property
    def listen_events(self) -> str:
        """The LISTEN statement of the channel each batch of events is announced on."""
        return self.sql["LISTEN_EVENTS"]

    def events_received(self, conn: psycopg.Connection, hostname: str, ids: Sequence[str]) -> int:
        """A claim batch's task-received events (EVENTS_RECEIVED); returns how many were written."""
        if not ids:
            return 0
        row = conn.execute(self.sql["EVENTS_RECEIVED"], {"hostname": hostname, "ids": list(ids)}).fetchone()
        return cast("tuple[int, Any]", row)[0]

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

    def events_record(self, conn: psycopg.Connection, hostname: str, batch: EventBatch) -> int:
        """Events built by the worker, one statement for the whole batch (EVENTS_RECORD)."""
        if not batch.types:
            return 0
        params = {"hostname": hostname, "types": batch.types, "ids": batch.ids, "names": batch.names,
                  "ats": batch.ats, "runtimes": batch.runtimes, "results": batch.results,
                  "exceptions": batch.exceptions, "tracebacks": batch.tracebacks, "extras": batch.extras}
        # never prepared: like FINISH, a generic plan cannot see the batch size
        row = conn.execute(self.sql["EVENTS_RECORD"], params, prepare=False).fetchone()
        return cast("tuple[int, Any]", row)[0]

    def events_after(self, conn: psycopg.Connection, after: int, *, limit: int = 1000, since: float | None = None,
                     types: Sequence[str] | None = None, names: Sequence[str] | None = None) -> list[EventRow]:
        """The events after id ``after``, oldest first (EVENTS_AFTER)."""
        params = {"after": after, "limit": limit, "since": since,
                  "types": list(types) if types else None, "names": list(names) if names else None}
        return [EventRow(*r) for r in conn.execute(self.sql["EVENTS_AFTER"], params).fetchall()]

    def events_start(self, conn: psycopg.Connection, since: float | None) -> int:
        """The id a tail starting at ``since`` (seconds since the epoch; None: now) reads after."""
        return int(cast("tuple[int]", conn.execute(self.sql["EVENTS_FIRST_AFTER"], {"since": since}).fetchone())[0])

    def expire_events(self, conn: psycopg.Connection, ttl: float, limit: int = 10000) -> int:
        """Delete at most ``limit`` events older than ``ttl`` seconds (maintenance)."""
        return conn.execute(self.sql["EXPIRE_EVENTS"], {"ttl": ttl, "limit": limit}).rowcount
