"""Unique jobs: a key that at most one waiting or running job holds, and its optional window.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

* ``jobs.unique_hash`` (a job's unique key as a 128-bit hash, made by sqlq.unique.key_hash) and the
  unique partial index ``jobs_unique`` on it (``WHERE unique_hash IS NOT NULL``): jobs holds only
  waiting, scheduled and running rows, so the index is over exactly the jobs that block the key; a
  keyed enqueue is ``INSERT … ON CONFLICT`` on it. A finished job leaves the table, which frees its
  key without a statement of its own. A uuid rather than the key's text: every claim of the job
  writes the entry again, and a 16-byte entry compared as bytes costs a claim much less.
* ``unique_keys``: a key held for ``unique_for`` seconds from its job's enqueue (one row per key
  hash, with the key's text; reused once past ``held_until``; maintenance deletes rows past it).
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import UUID

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.add_column("jobs", sa.Column("unique_hash", UUID(as_uuid=False)), schema=schema)
    op.create_index("jobs_unique", "jobs", ["unique_hash"], unique=True, schema=schema,
                    postgresql_where=sa.text("unique_hash IS NOT NULL"))
    op.create_table(
        "unique_keys",
        sa.Column("key_hash", UUID(as_uuid=False), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("job_id", UUID(as_uuid=False), nullable=False),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name="unique_keys_pkey"),
        schema=schema,
    )
    op.create_index("unique_keys_held_until", "unique_keys", ["held_until"], schema=schema)


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.drop_index("unique_keys_held_until", table_name="unique_keys", schema=schema)
    op.drop_table("unique_keys", schema=schema)
    op.drop_index("jobs_unique", table_name="jobs", schema=schema)
    op.drop_column("jobs", "unique_hash", schema=schema)
