"""Initial tables: jobs (hot), results (history), workers (heartbeats).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "jobs",
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("args", pg.JSONB),
        sa.Column("kwargs", pg.JSONB),
        sa.Column("payload", sa.LargeBinary),
        sa.Column("content_type", sa.Text, nullable=False, server_default=sa.text("'application/json'")),
        sa.Column("headers", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("run_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.Column("expires_at", tz),
        sa.Column("enqueued_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.Column("started_at", tz),
        sa.Column("attempt", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("retries", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("acks_late", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("worker_id", pg.UUID(as_uuid=False)),
        sa.Column("group_id", pg.UUID(as_uuid=False)),
        sa.Column("last_error", sa.Text),
        sa.CheckConstraint("state IN ('available', 'scheduled', 'running')", name="jobs_state_check"),
        schema=schema,
    )
    op.create_index("jobs_available", "jobs", ["queue", sa.text("priority DESC"), "seq"], schema=schema,
                    postgresql_where=sa.text("state = 'available'"))
    op.create_index("jobs_scheduled", "jobs", ["run_at"], schema=schema,
                    postgresql_where=sa.text("state = 'scheduled'"))
    op.create_index("jobs_running", "jobs", ["worker_id"], schema=schema,
                    postgresql_where=sa.text("state = 'running'"))

    op.create_table(
        "results",
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("args", pg.JSONB),
        sa.Column("kwargs", pg.JSONB),
        sa.Column("payload", sa.LargeBinary),
        sa.Column("content_type", sa.Text, nullable=False, server_default=sa.text("'application/json'")),
        sa.Column("result", pg.JSONB),
        sa.Column("result_payload", sa.LargeBinary),
        sa.Column("result_content_type", sa.Text),
        sa.Column("exc_type", sa.Text),
        sa.Column("exc_message", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("enqueued_at", tz),
        sa.Column("started_at", tz),
        sa.Column("finished_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("retries", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("worker_id", pg.UUID(as_uuid=False)),
        sa.Column("group_id", pg.UUID(as_uuid=False)),
        sa.CheckConstraint("state IN ('SUCCESS', 'FAILURE', 'REVOKED', 'EXPIRED')", name="results_state_check"),
        schema=schema,
    )
    op.create_index("results_finished_at", "results", ["finished_at"], schema=schema)
    op.create_index("results_group", "results", ["group_id"], schema=schema,
                    postgresql_where=sa.text("group_id IS NOT NULL"))

    op.create_table(
        "workers",
        sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("queues", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("pool", sa.Text, nullable=False),
        sa.Column("started_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.Column("heartbeat_at", tz, nullable=False, server_default=sa.text("now()")),
        schema=schema,
    )


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_table("workers", schema=schema)
    op.drop_table("results", schema=schema)
    op.drop_table("jobs", schema=schema)
