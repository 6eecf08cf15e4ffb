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
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from .migrate import HEAD_REVISION, VERSION_TABLE  # noqa: F401 - re-exported: facts about the migrations
from .names import validate_identifier

JOB_STATES = ("available", "scheduled", "running")
FINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED", "EXPIRED")


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
        # What update_state last said of the running job, and in which attempt (a retried job
        # shows no progress of its previous attempt); the outcome replaces it (the row leaves jobs).
        Column("progress_state", Text),
        Column("progress_meta", JSONB),
        Column("progress_attempt", Integer),
        # Workflows (sqlq.workflows): the first job of the line and the job whose outcome or run sent
        # this one; what this job's outcome sets off (NULL for every plain job), copied into results.
        Column("root_id", UUID(as_uuid=False)),
        Column("parent_id", UUID(as_uuid=False)),
        Column("workflow", JSONB),
        # Hand-backs by workers that do not know the job's task (worker_unknown_task_handbacks
        # bounds them), and the traceback of the attempt that asked for the retry (RETRY).
        Column("handbacks", Integer, nullable=False, server_default=text("0")),
        Column("last_traceback", Text),
        # the key a keyed task's concurrency_key computed at enqueue, or '' once a limited claim took a
        # job without one (sqlq.concurrency_limits); NULL: not counted by any limit
        Column("concurrency_key", Text),
        # Unique jobs: at most one job of the table (waiting, scheduled or running) holds a key (as its
        # 128-bit hash, sqlq.unique.key_hash: every claim writes the index entry again); a keyed enqueue
        # is INSERT ... ON CONFLICT on jobs_unique, and the key frees when the row leaves.
        Column("unique_hash", UUID(as_uuid=False)),
        CheckConstraint("state IN ('available', 'scheduled', 'running')", name="jobs_state_check"),
        Index("jobs_available", "queue", text("priority DESC"), "seq",
              postgresql_where=text("state = 'available'")),
        Index("jobs_scheduled", "run_at", postgresql_where=text("state = 'scheduled'")),
        Index("jobs_running", "worker_id", postgresql_where=text("state = 'running'")),
        # a concurrency-limited claim counts its task's (or key's) running jobs here; a job no limited
        # claim took has no key, and no entry (plain claims pay no upkeep)
        Index("jobs_concurrency_running", "task", "concurrency_key",
              postgresql_where=text("state = 'running' AND concurrency_key IS NOT NULL")),
        Index("jobs_parent", "parent_id", postgresql_where=text("parent_id IS NOT NULL")),
        Index("jobs_unique", "unique_hash", unique=True, postgresql_where=text("unique_hash IS NOT NULL")),
    )

    # A unique key held past its job's life: unique_for seconds from the enqueue that took it. One
    # row per key, taken over by the next keyed enqueue once past held_until; maintenance deletes the
    # rows past it.
    Table(
        "unique_keys", md,
        Column("key_hash", UUID(as_uuid=False), primary_key=True),
        Column("key", Text, nullable=False),
        Column("job_id", UUID(as_uuid=False), nullable=False),
        Column("held_until", DateTime(timezone=True), nullable=False),
        Index("unique_keys_held_until", "held_until"),
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
        Column("root_id", UUID(as_uuid=False)),
        Column("parent_id", UUID(as_uuid=False)),
        # A workflow job's plan; the trigger workflow_step (migration 0007) fires only where it is set.
        Column("workflow", JSONB),
        CheckConstraint("state IN ('SUCCESS', 'FAILURE', 'REVOKED', 'EXPIRED')", name="results_state_check"),
        Index("results_finished_at", "finished_at"),
        Index("results_group", "group_id", postgresql_where=text("group_id IS NOT NULL")),
        Index("results_parent", "parent_id", postgresql_where=text("parent_id IS NOT NULL")),
        Index("results_root", "root_id", postgresql_where=text("root_id IS NOT NULL")),
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
        Column("lock_key", Integer),
        Column("lock_lost_at", DateTime(timezone=True)),
        Column("tasks", ARRAY(Text)),  # the task names its app registers; NULL: taken to know them all
    )
    _operations_tables(md)
    _routing_tables(md, schema)
    _schedule_tables(md, schema)
    _rate_limit_tables(md)
    _concurrency_limit_tables(md)
    _group_tables(md)
    _workflow_tables(md)
    _control_tables(md)
    _event_tables(md)
    return md


def _operations_tables(md: MetaData) -> None:
    """Dead workers and paused queues (``sqlq status``, ``sqlq queues pause``).

    ``dead_workers`` keeps the row of a worker presumed dead (RESCUE moves it out of ``workers``,
    which claims and the liveness checks read, so they read only workers that may be alive) until
    ``worker_dead_retention`` has passed. ``queue_pauses`` holds one row per paused queue: every
    worker leaves that queue's jobs waiting until the row goes.
    """
    tz = DateTime(timezone=True)
    Table(
        "dead_workers", md,
        Column("id", UUID(as_uuid=False), nullable=False),
        Column("hostname", Text, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("queues", ARRAY(Text), nullable=False),
        Column("concurrency", Integer, nullable=False),
        Column("pool", Text, nullable=False),
        Column("started_at", tz, nullable=False),
        Column("heartbeat_at", tz, nullable=False),
        Column("died_at", tz, nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("id", name="dead_workers_pkey"),
        Index("dead_workers_died_at", "died_at"),
    )
    Table(
        "queue_pauses", md,
        Column("queue", Text, nullable=False),
        Column("paused_at", tz, nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("queue", name="queue_pauses_pkey"),
    )


def _routing_tables(md: MetaData, schema: str) -> None:
    """Exchanges and bindings (``sqlq.routing``): routes are rows, matched in SQL by the INSERT.

    A binding's key is an exact key (direct), ignored (fanout, stored as ``''``) or a topic pattern,
    compiled once into ``key_regex`` when written, so a publish translates no pattern.
    The primary key makes declaring a binding twice harmless; deleting an exchange drops its bindings.
    The SQL functions that read these tables (``route_queues``, ``topic_matches``, ``enqueue``,
    ``publish``) are created by migration 0002.
    """
    Table(
        "exchanges", md,
        Column("name", Text, nullable=False),
        Column("type", Text, nullable=False),
        Column("alternate_queue", Text),
        PrimaryKeyConstraint("name", name="exchanges_pkey"),
        CheckConstraint("type IN ('direct', 'fanout', 'topic')", name="exchanges_type_check"),
    )
    Table(
        "bindings", md,
        Column("exchange", Text, nullable=False),
        Column("binding_key", Text, nullable=False),
        Column("queue", Text, nullable=False),
        # The binding key as an anchored regex over '.' || routing_key, for topic exchanges.
        Column("key_regex", Text, Computed(text(f'"{schema}".topic_regex(binding_key)'), persisted=True)),
        PrimaryKeyConstraint("exchange", "binding_key", "queue", name="bindings_pkey"),
        ForeignKeyConstraint(["exchange"], [f"{schema}.exchanges.name"], name="bindings_exchange_fkey",
                             ondelete="CASCADE"),
    )


def _schedule_tables(md: MetaData, schema: str) -> None:
    """Periodic tasks (``sqlq beat``): one row per schedule, one row per fired tick.

    ``schedules.next_fire_at`` is the cursor: the first tick not yet sent. Beat claims due rows
    with ``FOR UPDATE SKIP LOCKED`` and, in the same transaction, inserts one ``schedule_ticks``
    row per tick and the job it enqueued; that row's primary key is what makes each tick fire
    once however many beat processes run.
    """
    tz = DateTime(timezone=True)
    Table(
        "schedules", md,
        Column("name", Text, primary_key=True),
        Column("task", Text, nullable=False),
        Column("args", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("kwargs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("options", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("cron", Text),
        Column("interval_seconds", Double),
        Column("anchor", tz),
        Column("timezone", Text, nullable=False, server_default=text("'UTC'")),
        Column("enabled", Boolean, nullable=False, server_default=text("true")),
        Column("source", Text, nullable=False, server_default=text("'manual'")),
        Column("next_fire_at", tz),
        Column("last_fire_at", tz),
        Column("total_run_count", BigInteger, nullable=False, server_default=text("0")),
        Column("last_error", Text),
        Column("created_at", tz, nullable=False, server_default=text("now()")),
        Column("updated_at", tz, nullable=False, server_default=text("now()")),
        Column("owner", Text),
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="schedules_kind_check"),
        CheckConstraint("interval_seconds > 0", name="schedules_interval_check"),
        CheckConstraint("source IN ('config', 'manual')", name="schedules_source_check"),
        Index("schedules_due", "next_fire_at", postgresql_where=text("enabled")),
    )
    Table(
        "schedule_ticks", md,
        Column("schedule", Text, nullable=False),
        Column("tick", tz, nullable=False),
        Column("job_id", UUID(as_uuid=False), nullable=False),
        Column("fired_at", tz, nullable=False, server_default=text("now()")),
        Column("fired_by", Text),
        PrimaryKeyConstraint("schedule", "tick", name="schedule_ticks_pkey"),
        ForeignKeyConstraint(["schedule"], [f"{schema}.schedules.name"], name="schedule_ticks_schedule_fkey",
                             ondelete="CASCADE", onupdate="CASCADE"),
    )


def _rate_limit_tables(md: MetaData) -> None:
    """Rate limits (``sqlq.rate_limits``): one token bucket per limited task, shared by all workers.

    A task without a row has no limit. ``tokens`` is what the bucket held at ``refilled_at``; what
    it holds now is ``least(capacity, tokens + rate * seconds since refilled_at)``, computed by the
    statement that reads it, so no one refills buckets in the background. Workers take tokens in
    the claim itself (CLAIM_RATE_LIMITED), under the row's lock.
    """
    tz = DateTime(timezone=True)
    Table(
        "rate_limits", md,
        Column("task", Text, nullable=False),
        Column("rate", Double, nullable=False),  # tasks per second
        Column("capacity", Double, nullable=False),  # the most tokens the bucket holds
        Column("tokens", Double, nullable=False),
        Column("refilled_at", tz, nullable=False, server_default=text("now()")),
        Column("updated_at", tz, nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("task", name="rate_limits_pkey"),
        CheckConstraint("rate > 0 AND rate < 'infinity'::float8", name="rate_limits_rate_check"),
        CheckConstraint("capacity >= 1 AND capacity < 'infinity'::float8", name="rate_limits_capacity_check"),
    )


def _concurrency_limit_tables(md: MetaData) -> None:
    """Concurrency limits (``sqlq.concurrency_limits``): at most ``limit`` running jobs of a task, or
    of each key value of a keyed task (``key`` NULL); a row with a key overrides the task's limit
    for that value. A task without a row has no limit. The claim locks the row and counts the
    running jobs (``jobs_concurrency_running``), so nothing keeps a count that a crash could leave
    wrong."""
    Table(
        "concurrency_limits", md,
        Column("task", Text, nullable=False),
        Column("key", Text),
        Column("limit", Integer, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        CheckConstraint('"limit" > 0', name="concurrency_limits_limit_check"),
        Index("concurrency_limits_task_key", "task", "key", unique=True, postgresql_nulls_not_distinct=True),
    )


def _group_tables(md: MetaData) -> None:
    """Saved groups (``GroupResult.save()`` / ``restore()``): a group's member task ids in order.

    Jobs and results carry their group's id themselves; this row keeps the membership and the order
    once the handle is gone, so another process can ``restore`` it. ``results`` is text because a
    task id may be any string. ``saved_at`` lets EXPIRE_RESULTS drop old groups with old results.
    """
    Table(
        "groups", md,
        Column("id", UUID(as_uuid=False), nullable=False),
        Column("results", ARRAY(Text), nullable=False),
        Column("saved_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("id", name="groups_pkey"),
        Index("groups_saved_at", "saved_at"),
    )


def _workflow_tables(md: MetaData) -> None:
    """Chords and revoked ids (``sqlq.workflows``; the functions and the results trigger that read
    them are created by migration 0007).

    ``chords``: a chord whose header is running: how many members have no outcome yet, the body's
    plan, and the first failed member (the body then fails instead of running). Each member's
    outcome decrements ``remaining`` in the transaction that records it; the member order is the
    ``groups`` row written with the header. ``revoked``: every id ``revoke()`` named, so a workflow
    step not enqueued yet is recorded REVOKED instead of running, and a worker (started before the
    revoke or after it) never runs a job whose id it holds. Chords go with EXPIRE_RESULTS's ttl;
    revoked ids at their ``expires_at`` (``worker_revoke_expires`` after the revoke) or with that
    ttl, whichever comes first.
    """
    tz = DateTime(timezone=True)
    Table(
        "chords", md,
        Column("id", UUID(as_uuid=False), nullable=False),
        Column("remaining", Integer, nullable=False),
        Column("body", JSONB, nullable=False),
        Column("failed", Text),
        Column("created_at", tz, nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("id", name="chords_pkey"),
        Index("chords_created_at", "created_at"),
    )
    Table(
        "revoked", md,
        Column("id", UUID(as_uuid=False), nullable=False),
        Column("revoked_at", tz, nullable=False, server_default=text("now()")),
        Column("terminate", Boolean, nullable=False, server_default=text("false")),
        Column("signal", Text),
        Column("expires_at", tz),
        PrimaryKeyConstraint("id", name="revoked_pkey"),
        Index("revoked_revoked_at", "revoked_at"),
    )


def _control_tables(md: MetaData) -> None:
    """Remote control (``sqlq.control``): commands to workers, and their replies.

    * ``control``: one row per command sent (``app.control.*``, ``sqlq inspect``/``control``),
      announced with NOTIFY on the schema's control channel; ``destination`` is the hostnames or
      worker ids it is for (NULL: every worker). A worker handles each command sent after its
      start and before ``expires_at`` once; maintenance deletes old commands with their replies.
    * ``control_replies``: one row per worker and command (written by the worker, so workers never
      contend for one row), collected by the sender until every live worker addressed has
      answered or the timeout passes.
    The ``revoked`` ids that workers honour are ``_workflow_tables``'s.
    """
    tz = DateTime(timezone=True)
    Table(
        "control", md,
        Column("id", BigInteger, Identity(always=False), nullable=False),
        Column("command", Text, nullable=False),
        Column("arguments", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("destination", ARRAY(Text)),
        Column("reply", Boolean, nullable=False, server_default=text("true")),
        Column("sent_at", tz, nullable=False, server_default=text("now()")),
        Column("expires_at", tz, nullable=False),
        PrimaryKeyConstraint("id", name="control_pkey"),
        Index("control_expires_at", "expires_at"),
    )
    Table(
        "control_replies", md,
        Column("control_id", BigInteger, nullable=False),
        Column("worker_id", UUID(as_uuid=False), nullable=False),
        Column("hostname", Text, nullable=False),
        Column("reply", JSONB, nullable=False),
        Column("replied_at", tz, nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("control_id", "worker_id", name="control_replies_pkey"),
        ForeignKeyConstraint(["control_id"], [f"{md.schema}.control.id"], name="control_replies_control_id_fkey",
                             ondelete="CASCADE"),
    )


def _event_tables(md: MetaData) -> None:
    """The events stream (``sqlq.events``, migration 0012): Celery's types and fields (``fields``
    holds those that are not columns); a row is one event, or (type 'batch') a statement's events
    in ``batch``. Written in batches by workers with task
    events on and by producers with ``task_send_sent_event``; deleted after ``events_retention`` by
    maintenance, found through a BRIN index on ``time`` (rows arrive in time order: a BRIN index
    costs an insert next to nothing, a B-tree would cost every event)."""
    Table(
        "events", md,
        Column("id", BigInteger, Identity(always=False), nullable=False),
        Column("type", Text, nullable=False),
        Column("task_id", UUID(as_uuid=False)),
        Column("name", Text),
        Column("hostname", Text),
        Column("time", DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")),
        Column("fields", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        # a batch's events ([type, task id, task name, epoch seconds, fields], ...), type 'batch'
        # (json, not jsonb: written once, read whole, so parsing it into jsonb would buy nothing);
        # migration 0012 compresses it with lz4 where the server has it (pglz cost 4x the time)
        Column("batch", JSON),
        PrimaryKeyConstraint("id", name="events_pkey"),
        Index("events_time", "time", postgresql_using="brin"),
    )
