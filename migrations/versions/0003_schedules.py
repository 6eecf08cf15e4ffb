"""Periodic tasks: schedules (one row per periodic task) and schedule_ticks (one row per fired tick).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

``schedule_ticks`` has one row per (schedule, tick), written in the same transaction as the job
that tick enqueued: its primary key is what makes a tick fire at most once however many beat
processes run.
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "schedules",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("args", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("kwargs", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("options", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("cron", sa.Text),
        sa.Column("interval_seconds", sa.Double),
        sa.Column("anchor", tz),
        sa.Column("timezone", sa.Text, nullable=False, server_default=sa.text("'UTC'")),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("source", sa.Text, nullable=False, server_default=sa.text("'manual'")),
        sa.Column("next_fire_at", tz),
        sa.Column("last_fire_at", tz),
        sa.Column("total_run_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="schedules_kind_check"),
        sa.CheckConstraint("interval_seconds > 0", name="schedules_interval_check"),
        sa.CheckConstraint("source IN ('config', 'manual')", name="schedules_source_check"),
        schema=schema,
    )
    op.create_index("schedules_due", "schedules", ["next_fire_at"], schema=schema,
                    postgresql_where=sa.text("enabled"))

    op.create_table(
        "schedule_ticks",
        sa.Column("schedule", sa.Text, nullable=False),
        sa.Column("tick", tz, nullable=False),
        sa.Column("job_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("fired_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.Column("fired_by", sa.Text),
        sa.PrimaryKeyConstraint("schedule", "tick", name="schedule_ticks_pkey"),
        sa.ForeignKeyConstraint(["schedule"], [f"{schema}.schedules.name"], name="schedule_ticks_schedule_fkey",
                                ondelete="CASCADE", onupdate="CASCADE"),
        schema=schema,
    )


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_table("schedule_ticks", schema=schema)
    op.drop_table("schedules", schema=schema)
