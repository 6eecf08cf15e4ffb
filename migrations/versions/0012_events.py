"""The events stream: what happened to jobs and workers, for monitors (``sqlq events``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

* ``events``: Celery's events (``task-received``, ``task-succeeded``, ``worker-heartbeat``, ...).
  A row is one event (``type``, ``task_id``, ``name``, ``hostname``, ``time``, ``fields``: the rest
  of Celery's fields), or, with ``type`` 'batch', the events of one statement of a worker or
  producer in ``batch``, a JSON array of ``[type, task id, task name, seconds since the epoch,
  fields]``: a row per claim or finished batch instead of a row per event. Each write is announced
  with one NOTIFY. Maintenance deletes rows older than ``events_retention`` through the BRIN index
  on ``time`` (rows arrive in time order, so a BRIN index costs an insert next to nothing).
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("task_id", UUID(as_uuid=False)),
        sa.Column("name", sa.Text),
        sa.Column("hostname", sa.Text),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")),
        sa.Column("fields", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("batch", sa.JSON),
        sa.PrimaryKeyConstraint("id", name="events_pkey"),
        schema=schema,
    )
    op.create_index("events_time", "events", ["time"], schema=schema, postgresql_using="brin")
    # A batch is tens of kB of JSON, always compressed into TOAST: pglz (the default) cost a drain
    # with -E ~5 µs of server time per event, lz4 a quarter of that for the same size. A server
    # built without lz4 stores batches uncompressed instead (cheaper than pglz; more disk).
    # (a DO block, so that `sqlq migrate --sql` prints it too; the schema name is validated)
    op.execute(f"""DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
        EXECUTE format('ALTER TABLE %I.events ALTER COLUMN batch SET COMPRESSION lz4', '{schema}');
    ELSE
        EXECUTE format('ALTER TABLE %I.events ALTER COLUMN batch SET STORAGE EXTERNAL', '{schema}');
    END IF;
END $$""")

def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_index("events_time", table_name="events", schema=schema)
    op.drop_table("events", schema=schema)
