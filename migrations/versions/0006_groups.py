"""Groups: the saved member lists of ``GroupResult.save()``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

* ``groups``: one row per saved group (``GroupResult.save()``), read back by
  ``GroupResult.restore(id)``. ``results`` holds the members' task ids in the group's order (text:
  a task id may be any string, as in Celery). The jobs and results rows already carry the group's
  id (``group_id``); this table only keeps the order and the membership of a group after its
  handle is gone. Rows older than ``result_expires`` go with the results (EXPIRE_RESULTS).
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.create_table(
        "groups",
        sa.Column("id", UUID(as_uuid=False), nullable=False),
        sa.Column("results", ARRAY(sa.Text), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id", name="groups_pkey"),
        schema=schema,
    )
    op.create_index("groups_saved_at", "groups", ["saved_at"], schema=schema)


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_index("groups_saved_at", table_name="groups", schema=schema)
    op.drop_table("groups", schema=schema)
