"""Workflows (workflows.sql): a workflow's first jobs written from its plan, and a workflow read
back (a job's parent and children, the whole tree). The steps after the first are written by the
database (the trigger of migration 0007), never by this module.
"""

from __future__ import annotations

import psycopg

from .base import StoreBase
from .records import FailedJob, WorkflowRow


class Workflows(StoreBase):
    def workflow_start(self, conn: psycopg.Connection, plan_json: str, parent_row: str | None) -> None:
        """Write the first jobs of the plan ``plan_json`` (sqlq/workflows.py), all in one statement."""
        conn.execute(self.sql["WORKFLOW_START"], {"plan": plan_json, "parent": parent_row})

    def workflow_failed(self, conn: psycopg.Connection, job_id: str) -> FailedJob | None:
        row = conn.execute(self.sql["WORKFLOW_FAILED"], {"id": job_id}).fetchone()
        return FailedJob(*row) if row is not None else None

    def workflow_parent(self, conn: psycopg.Connection, job_id: str) -> tuple[str, bool] | None:
        """(the parent's id, whether it is a chord header's group id), or None without a parent."""
        row = conn.execute(self.sql["WORKFLOW_PARENT"], {"id": job_id}).fetchone()
        return (row[0], bool(row[1])) if row is not None else None

    def workflow_children(self, conn: psycopg.Connection, job_id: str) -> list[tuple[str, str]]:
        """(id, task) of the jobs ``job_id`` sent, in the order they were enqueued."""
        return [(r[0], r[1]) for r in conn.execute(self.sql["WORKFLOW_CHILDREN"], {"id": job_id}).fetchall()]

    def workflow_tree(self, conn: psycopg.Connection, root_id: str) -> list[WorkflowRow]:
        return [WorkflowRow(*r) for r in conn.execute(self.sql["WORKFLOW_TREE"], {"id": root_id}).fetchall()]
