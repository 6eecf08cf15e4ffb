"""Groups (groups.sql): the members' states of a ``GroupResult`` in one statement, and the saved
member lists of ``GroupResult.save()`` / ``restore()``.

A group of n members is checked with one query over ``id = ANY(...)``, never n queries: a
``ready()`` poll of a 10,000-member group is one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from .base import StoreBase
from .records import JobState


class Groups(StoreBase):
    def group_states(self, conn: psycopg.Connection, job_ids: Sequence[str]) -> list[JobState | None]:
        """``fetch_state`` of each of ``job_ids`` (row ids), in their order; None for an id that is in
        neither jobs nor results."""
        states: list[JobState | None] = [None] * len(job_ids)
        for row in conn.execute(self.sql["GROUP_STATES"], {"ids": list(job_ids)}).fetchall():
            states[row[0] - 1] = JobState(*row[1:])
        return states

    def group_save(self, conn: psycopg.Connection, group_id: str, task_ids: Sequence[str]) -> None:
        conn.execute(self.sql["GROUP_SAVE"], {"id": group_id, "results": list(task_ids)})

    def group_restore(self, conn: psycopg.Connection, group_id: str) -> list[str] | None:
        """The saved member task ids, or None for a group that was never saved (or has expired)."""
        row = conn.execute(self.sql["GROUP_RESTORE"], {"id": group_id}).fetchone()
        return list(row[0]) if row is not None else None

    def group_forget(self, conn: psycopg.Connection, group_id: str | None, job_ids: Sequence[str]) -> None:
        """Delete the saved group (if ``group_id``) and the stored outcomes of its members (row ids)."""
        conn.execute(self.sql["GROUP_FORGET"], {"id": group_id, "ids": list(job_ids)})
