"""Workflows (workflows.sql): a workflow's first jobs written from its plan, and a workflow read
back (a job's parent and children, the whole tree). The steps after the first are written by the
database (the trigger of migration 0007), never by this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from .base import StoreBase
from .records import ChildJob, FailedJob, JobParent, WorkflowRow


class Workflows(StoreBase):
    def workflow_start(self, conn: psycopg.Connection, plan_json: str, parent_row: str | None) -> None:
        """Write the first jobs of the plan ``plan_json`` (sqlq/workflows.py), all in one statement."""
        conn.execute(self.sql["WORKFLOW_START"], {"plan": plan_json, "parent": parent_row})

    def workflow_copy(self, conn: psycopg.Connection, group_id: str, results: Sequence[str], body_json: str | None,
                      rows: Iterable[tuple[Any, ...]], queues: Sequence[str]) -> None:
        """A group's (or chord's header's) members due now, written by COPY with their plans, after
        the chord's counter row and the saved member order, and their queues woken: one transaction
        (the caller's, on its connection)."""
        atomic = conn.transaction() if conn.autocommit else contextlib.nullcontext()
        with atomic, conn.cursor() as cur:
            cur.execute(self.sql["WORKFLOW_GROUP_BEGIN"], {"id": group_id, "remaining": len(results),
                                                           "body": body_json, "results": ",".join(results)})
            with cur.copy(self.sql["WORKFLOW_COPY_JOBS"]) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(self.sql["NOTIFY_QUEUES"], {"queues": list(queues)})

    def workflow_failed(self, conn: psycopg.Connection, job_id: str) -> FailedJob | None:
        row = conn.execute(self.sql["WORKFLOW_FAILED"], {"id": job_id}).fetchone()
        return FailedJob(*row) if row is not None else None

    def workflow_parent(self, conn: psycopg.Connection, job_id: str) -> JobParent | None:
        """The parent's id and whether it is a chord header's group id; None without a parent."""
        row = conn.execute(self.sql["WORKFLOW_PARENT"], {"id": job_id}).fetchone()
        return JobParent(*row) if row is not None else None

    def workflow_children(self, conn: psycopg.Connection, job_id: str) -> list[ChildJob]:
        """The jobs ``job_id`` sent, in the order they were enqueued."""
        return [ChildJob(*r) for r in conn.execute(self.sql["WORKFLOW_CHILDREN"], {"id": job_id}).fetchall()]

    def workflow_tree(self, conn: psycopg.Connection, root_id: str) -> list[WorkflowRow]:
        return [WorkflowRow(*r) for r in conn.execute(self.sql["WORKFLOW_TREE"], {"id": root_id}).fetchall()]
