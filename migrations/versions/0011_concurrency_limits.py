"""Concurrency limits: at most N running jobs of a task (or of one key of a task), cluster-wide.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

* ``concurrency_limits``: a row per limited task and key (``key`` NULL: the task's limit, which
  applies to each key value of a keyed task; a row with a key overrides it for that value). A task
  without a row has no limit. Claims lock the row (CONCURRENCY_LOCK) and count the running jobs.
* ``jobs.concurrency_key``: the key a keyed task's ``concurrency_key`` computed at enqueue, or ''
  written by a limited claim for a job without one (NULL: a job no limited claim has taken), and
  ``jobs_concurrency_running`` on (task, concurrency_key) for running jobs that have one, so that a
  claim's count of a task's running jobs is an index probe and plain jobs add no index entry.
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.create_table(
        "concurrency_limits",
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("limit", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint('"limit" > 0', name="concurrency_limits_limit_check"),
        schema=schema,
    )
    op.create_index("concurrency_limits_task_key", "concurrency_limits", ["task", "key"], unique=True,
                    postgresql_nulls_not_distinct=True, schema=schema)
    op.add_column("jobs", sa.Column("concurrency_key", sa.Text), schema=schema)
    op.create_index("jobs_concurrency_running", "jobs", ["task", "concurrency_key"],
                    postgresql_where=sa.text("state = 'running' AND concurrency_key IS NOT NULL"), schema=schema)


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_index("jobs_concurrency_running", table_name="jobs", schema=schema)
    op.drop_column("jobs", "concurrency_key", schema=schema)
    op.drop_index("concurrency_limits_task_key", table_name="concurrency_limits", schema=schema)
    op.drop_table("concurrency_limits", schema=schema)
