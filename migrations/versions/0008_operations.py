"""Operations: dead workers kept for a while, the task names each worker runs, paused queues, the
hand-backs of jobs whose task a worker does not know, and a retried job's last traceback.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

* ``dead_workers``: a worker presumed dead (RESCUE) leaves ``workers`` as before, so claims and the
  liveness checks still read only the workers that may be alive, and its row is kept here with
  ``died_at``, so ``sqlq inspect workers`` shows it as dead instead of forgetting it; maintenance
  deletes rows older than ``worker_dead_retention``. A worker that turns out to be alive registers
  again and leaves this table.
* ``workers.tasks``: the task names the worker's app registers, published at registration, so a
  worker that claims a job of a task it does not know can tell whether a live worker of that queue
  knows it (then the job is handed back for it) or none does (FAILURE ``NotRegistered``). NULL for a
  worker that does not say (an older sqlq): it is taken to know every task.
* ``queue_pauses``: one row per paused queue (``sqlq queues pause``, ``app.pause_queue``); every
  worker leaves a paused queue's jobs waiting until the row goes.
* ``jobs.handbacks``: how many times the job was handed back by workers that do not know its task
  (bounded by ``worker_unknown_task_handbacks``). A default on a new column rewrites no row.
* ``jobs.last_traceback``: the traceback of the attempt that asked for the retry (RETRY), so a
  waiting retry's ``AsyncResult.traceback`` is its last attempt's, as in Celery.
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.create_table(
        "dead_workers",
        sa.Column("id", UUID(as_uuid=False), nullable=False),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("queues", ARRAY(sa.Text), nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("pool", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("died_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id", name="dead_workers_pkey"),
        schema=schema,
    )
    op.create_index("dead_workers_died_at", "dead_workers", ["died_at"], schema=schema)
    op.add_column("workers", sa.Column("tasks", ARRAY(sa.Text)), schema=schema)
    op.create_table(
        "queue_pauses",
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("queue", name="queue_pauses_pkey"),
        schema=schema,
    )
    op.add_column("jobs", sa.Column("handbacks", sa.Integer, nullable=False, server_default=sa.text("0")),
                  schema=schema)
    op.add_column("jobs", sa.Column("last_traceback", sa.Text), schema=schema)


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_column("jobs", "last_traceback", schema=schema)
    op.drop_column("jobs", "handbacks", schema=schema)
    op.drop_table("queue_pauses", schema=schema)
    op.drop_column("workers", "tasks", schema=schema)
    op.drop_index("dead_workers_died_at", table_name="dead_workers", schema=schema)
    op.drop_table("dead_workers", schema=schema)
