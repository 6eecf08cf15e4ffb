"""Groups and progress: the saved member lists of ``GroupResult.save()``, and the state a running
task reports with ``update_state``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

* ``groups``: one row per saved group (``GroupResult.save()``), read back by
  ``GroupResult.restore(id)``. ``results`` holds the members' task ids in the group's order (text:
  a task id may be any string, as in Celery). The jobs and results rows already carry the group's
  id (``group_id``); this table only keeps the order and the membership of a group after its
  handle is gone. Rows older than ``result_expires`` go with the results (EXPIRE_RESULTS).
* ``jobs.progress_state``, ``progress_meta``, ``progress_attempt`` (nullable, so adding them
  rewrites no row): what ``self.update_state(state=, meta=)`` last said of the running job, and in
  which attempt, so a retried job does not show its previous attempt's progress. The job's row
  leaves ``jobs`` when its outcome is recorded, so the outcome replaces the progress.
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

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
    op.add_column("jobs", sa.Column("progress_state", sa.Text), schema=schema)
    op.add_column("jobs", sa.Column("progress_meta", JSONB), schema=schema)
    op.add_column("jobs", sa.Column("progress_attempt", sa.Integer), schema=schema)


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    for column in ("progress_attempt", "progress_meta", "progress_state"):
        op.drop_column("jobs", column, schema=schema)
    op.drop_index("groups_saved_at", table_name="groups", schema=schema)
    op.drop_table("groups", schema=schema)
