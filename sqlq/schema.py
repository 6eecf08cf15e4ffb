"""The single description of sqlq's tables.

Migrations create these tables (see ``migrations/``) and a test compares a migrated database with
this file, so the two cannot drift. The schema name is configurable, hence a function rather than
module-level tables.

Shape, and why:

* ``jobs`` is the *hot* table: only waiting (``available``), scheduled and running rows. Finished
  jobs leave it in the same statement that records their outcome, so it stays small and its
  indexes stay in memory.
* Claiming reads ``jobs_available`` — a partial index ordered the way workers take jobs
  (queue, highest priority first, then FIFO by ``seq``). Scheduled rows (countdown/eta/retry) live in
  ``jobs_scheduled`` by ``run_at`` and never sit in the claim index until promoted.
* ``results`` holds one row per finished job: the outcome, its timing and everything needed to
  understand a failure. Reporting is SQL on this table.
* ``workers`` holds one heartbeat row per running worker; a row that stops beating marks the jobs
  of a dead worker for rescue.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from .names import validate_identifier

JOB_STATES = ("available", "scheduled", "running")
FINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED", "EXPIRED")

VERSION_TABLE = "sqlq_alembic_version"


def build_metadata(schema: str = "sqlq") -> MetaData:
    """All of sqlq's tables in ``schema``."""
    validate_identifier(schema, "schema")
    md = MetaData(schema=schema)
    now = text("now()")

    Table(
        "jobs", md,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("seq", BigInteger, Identity(always=False), nullable=False),
        Column("task", Text, nullable=False),
        Column("queue", Text, nullable=False),
        Column("priority", SmallInteger, nullable=False, server_default=text("0")),
        Column("state", Text, nullable=False),
        Column("args", JSONB),
        Column("kwargs", JSONB),
        Column("payload", LargeBinary),
        Column("content_type", Text, nullable=False, server_default=text("'application/json'")),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("run_at", DateTime(timezone=True), nullable=False, server_default=now),
        Column("expires_at", DateTime(timezone=True)),
        Column("enqueued_at", DateTime(timezone=True), nullable=False, server_default=now),
        Column("started_at", DateTime(timezone=True)),
        Column("attempt", Integer, nullable=False, server_default=text("0")),
        Column("retries", Integer, nullable=False, server_default=text("0")),
        Column("acks_late", Boolean, nullable=False, server_default=text("true")),
        Column("worker_id", UUID(as_uuid=False)),
        Column("group_id", UUID(as_uuid=False)),
        Column("last_error", Text),
        CheckConstraint("state IN ('available', 'scheduled', 'running')", name="jobs_state_check"),
        Index("jobs_available", "queue", text("priority DESC"), "seq",
              postgresql_where=text("state = 'available'")),
        Index("jobs_scheduled", "run_at", postgresql_where=text("state = 'scheduled'")),
        Index("jobs_running", "worker_id", postgresql_where=text("state = 'running'")),
    )

    Table(
        "results", md,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("task", Text, nullable=False),
        Column("queue", Text, nullable=False),
        Column("priority", SmallInteger, nullable=False, server_default=text("0")),
        Column("state", Text, nullable=False),
        Column("args", JSONB),
        Column("kwargs", JSONB),
        Column("payload", LargeBinary),
        Column("content_type", Text, nullable=False, server_default=text("'application/json'")),
        Column("result", JSONB),
        Column("result_payload", LargeBinary),
        Column("result_content_type", Text),
        Column("exc_type", Text),
        Column("exc_message", Text),
        Column("traceback", Text),
        Column("enqueued_at", DateTime(timezone=True)),
        Column("started_at", DateTime(timezone=True)),
        Column("finished_at", DateTime(timezone=True), nullable=False, server_default=now),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("retries", Integer, nullable=False, server_default=text("0")),
        Column("worker_id", UUID(as_uuid=False)),
        Column("group_id", UUID(as_uuid=False)),
        CheckConstraint("state IN ('SUCCESS', 'FAILURE', 'REVOKED', 'EXPIRED')", name="results_state_check"),
        Index("results_finished_at", "finished_at"),
        Index("results_task_finished_at", "task", "finished_at"),
        Index("results_group", "group_id", postgresql_where=text("group_id IS NOT NULL")),
    )

    Table(
        "workers", md,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("hostname", Text, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("queues", ARRAY(Text), nullable=False),
        Column("concurrency", Integer, nullable=False),
        Column("pool", Text, nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False, server_default=now),
        Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=now),
    )
    return md
