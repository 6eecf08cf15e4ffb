"""Periodic schedules (schedules.sql): definitions as rows, the cursor a beat claims and moves,
and one tick row per tick sent, written with its job.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

import psycopg

from .base import StoreBase
from .records import ForeignSchedule, NextDue, ScheduleRow


class Schedules(StoreBase):
    def schedule_clock(self, conn: psycopg.Connection) -> dt.datetime:
        return cast("tuple[dt.datetime]", conn.execute(self.sql["SCHEDULE_CLOCK"]).fetchone())[0]

    def upsert_schedule(self, conn: psycopg.Connection, params: dict[str, Any]) -> None:
        conn.execute(self.sql["SCHEDULE_UPSERT"], params)

    def insert_schedule(self, conn: psycopg.Connection, params: dict[str, Any]) -> bool:
        """False when a schedule of that name already exists."""
        return conn.execute(self.sql["SCHEDULE_INSERT"], params).fetchone() is not None

    def delete_stale_config_schedules(self, conn: psycopg.Connection, owner: str,
                                      keep: Sequence[str]) -> list[str]:
        rows = conn.execute(self.sql["SCHEDULE_DELETE_STALE_CONFIG"], {"owner": owner, "names": list(keep)})
        return sorted(r[0] for r in rows.fetchall())

    def foreign_config_schedules(self, conn: psycopg.Connection, owner: str,
                                 names: Sequence[str]) -> list[ForeignSchedule]:
        rows = conn.execute(self.sql["SCHEDULE_FOREIGN_CONFIG"], {"owner": owner, "names": list(names)})
        return [ForeignSchedule(*r) for r in rows.fetchall()]

    def delete_schedule(self, conn: psycopg.Connection, name: str) -> bool:
        return conn.execute(self.sql["SCHEDULE_DELETE"], {"name": name}).fetchone() is not None

    def get_schedule(self, conn: psycopg.Connection, name: str, *, lock: bool = False) -> ScheduleRow | None:
        row = conn.execute(self.sql["SCHEDULE_GET_FOR_UPDATE" if lock else "SCHEDULE_GET"], {"name": name}).fetchone()
        return ScheduleRow(*row) if row is not None else None

    def list_schedules(self, conn: psycopg.Connection) -> list[ScheduleRow]:
        return [ScheduleRow(*r) for r in conn.execute(self.sql["SCHEDULE_LIST"]).fetchall()]

    def claim_due_schedules(self, conn: psycopg.Connection, now: dt.datetime, limit: int) -> list[ScheduleRow]:
        rows = conn.execute(self.sql["SCHEDULE_CLAIM_DUE"], {"now": now, "limit": limit}).fetchall()
        return [ScheduleRow(*r) for r in rows]

    def insert_ticks(self, conn: psycopg.Connection, name: str, ticks: Sequence[dt.datetime],
                     job_ids: Sequence[str], fired_by: str) -> set[str]:
        """Record ticks with their job ids; returns the ids whose tick was new (send only those)."""
        if not ticks:
            return set()
        rows = conn.execute(self.sql["SCHEDULE_TICKS_INSERT"], {
            "name": name, "ticks": list(ticks), "job_ids": list(job_ids), "fired_by": fired_by,
        }).fetchall()
        return {r[0] for r in rows}

    def advance_schedule(self, conn: psycopg.Connection, name: str, *, next_fire_at: dt.datetime | None,
                         last_fire_at: dt.datetime | None = None, fired: int = 0,
                         last_error: str | None = None, prune_before: dt.datetime | None = None) -> None:
        conn.execute(self.sql["SCHEDULE_ADVANCE"], {"name": name, "next_fire_at": next_fire_at,
                                                    "last_fire_at": last_fire_at, "fired": fired,
                                                    "last_error": last_error, "prune_before": prune_before},
                     prepare=True)

    def pause_schedule(self, conn: psycopg.Connection, name: str) -> bool:
        """False when there is no such schedule or it was already paused."""
        return conn.execute(self.sql["SCHEDULE_PAUSE"], {"name": name}).fetchone() is not None

    def resume_schedule(self, conn: psycopg.Connection, name: str, next_fire_at: dt.datetime | None,
                        last_error: str | None) -> bool:
        """False when there is no such schedule or it was not paused."""
        return conn.execute(self.sql["SCHEDULE_RESUME"], {"name": name, "next_fire_at": next_fire_at,
                                                          "last_error": last_error}).fetchone() is not None

    def schedule_next_due(self, conn: psycopg.Connection) -> NextDue:
        return NextDue(*cast("tuple[Any, ...]", conn.execute(self.sql["SCHEDULE_NEXT_DUE"]).fetchone()))
