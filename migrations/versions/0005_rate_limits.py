"""Rate limits: one token bucket per rate-limited task, shared by every worker.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

* ``rate_limits``: a row per task that has a limit (no row: no limit). ``rate`` is tasks per
  second, ``capacity`` the most tokens the bucket holds (``sqlq.rate_limits.capacity``), ``tokens``
  what it held at ``refilled_at``; the tokens it holds now are computed from those two and the rate
  by whoever reads it, so nothing has to refill the bucket in the background. A worker takes tokens
  in the statement that claims the task's jobs (CLAIM_RATE_LIMITED), under the row's lock.
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.create_table(
        "rate_limits",
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("rate", sa.Double, nullable=False),
        sa.Column("capacity", sa.Double, nullable=False),
        sa.Column("tokens", sa.Double, nullable=False),
        sa.Column("refilled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("task", name="rate_limits_pkey"),
        sa.CheckConstraint("rate > 0 AND rate < 'infinity'::float8", name="rate_limits_rate_check"),
        sa.CheckConstraint("capacity >= 1 AND capacity < 'infinity'::float8", name="rate_limits_capacity_check"),
        schema=schema,
    )


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_table("rate_limits", schema=schema)
