"""Remote control: commands to workers and their replies.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

* ``control``: one row per command sent to the workers (``app.control``, ``sqlq inspect`` and
  ``sqlq control``), announced with NOTIFY; ``destination`` names the hostnames or worker ids it
  is for (NULL: all). Maintenance deletes rows past ``expires_at`` (with their replies).
* ``control_replies``: one row per worker and command, written by the worker that answers.
The ``revoked`` ids workers honour are migration 0007's table.
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "control",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("arguments", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("destination", ARRAY(sa.Text)),
        sa.Column("reply", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("sent_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.Column("expires_at", tz, nullable=False),
        sa.PrimaryKeyConstraint("id", name="control_pkey"),
        schema=schema,
    )
    op.create_index("control_expires_at", "control", ["expires_at"], schema=schema)
    op.create_table(
        "control_replies",
        sa.Column("control_id", sa.BigInteger, nullable=False),
        sa.Column("worker_id", UUID(as_uuid=False), nullable=False),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("reply", JSONB, nullable=False),
        sa.Column("replied_at", tz, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("control_id", "worker_id", name="control_replies_pkey"),
        sa.ForeignKeyConstraint(["control_id"], [f"{schema}.control.id"], name="control_replies_control_id_fkey",
                                ondelete="CASCADE"),
        schema=schema,
    )


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_table("control_replies", schema=schema)
    op.drop_index("control_expires_at", table_name="control", schema=schema)
    op.drop_table("control", schema=schema)
