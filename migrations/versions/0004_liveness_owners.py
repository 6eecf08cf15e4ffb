"""Liveness locks for workers, owners for config schedules.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

* ``workers.lock_key``: each worker holds the session-level advisory lock (schema namespace,
  ``lock_key``) on its housekeeping connection for as long as it lives, so a worker whose process
  died is seen at once (its lock is free) instead of after ``worker_lost_timeout``. NULL: a worker
  that holds no such lock (a burst worker), judged by its heartbeat alone.
* ``workers.lock_lost_at``: when maintenance first saw that lock free; a worker is presumed dead
  once it has stayed free for a grace second (a live worker whose session was cut takes it back
  within that second).
* ``schedules.owner``: the app that declared a config schedule (its name or ``beat_schedule_owner``),
  so one app's beat never removes another app's schedules. NULL on rows written before this
  revision: no beat removes those by itself.
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.add_column("workers", sa.Column("lock_key", sa.Integer), schema=schema)
    op.add_column("workers", sa.Column("lock_lost_at", sa.DateTime(timezone=True)), schema=schema)
    op.add_column("schedules", sa.Column("owner", sa.Text), schema=schema)


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_column("schedules", "owner", schema=schema)
    op.drop_column("workers", "lock_lost_at", schema=schema)
    op.drop_column("workers", "lock_key", schema=schema)
