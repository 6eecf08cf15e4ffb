"""What every group of the store builds on: the registry's statements rendered for one schema, and
the statements about the schema as a whole (base.sql: its migration revision, its advisory locks).

A ``Store`` is made once per schema and then only reads its rendered statements, so one may be
shared by any number of threads; it holds no connection: every method runs on the connection it
is handed (a pooled autocommit connection, or the caller's own inside the caller's transaction).
"""

from __future__ import annotations

import zlib
from typing import cast

import psycopg
from psycopg import sql

from ..migrate import VERSION_TABLE
from ..names import validate_identifier
from . import fast
from .statements import SCHEMA_GROUPS, STATEMENTS


class StoreBase:
    """Named statements rendered for one schema."""

    def __init__(self, schema: str = "sqlq"):
        self.schema = validate_identifier(schema, "schema")
        self.jobs_channel = f"{schema}.jobs"
        self.results_channel = f"{schema}.results"
        self.control_channel = f"{schema}.control"
        self.control_replies_channel = f"{schema}.control_replies"
        self.queues_channel = f"{schema}.queues"
        self.events_channel = f"{schema}.events"
        names = {
            "schema": sql.Identifier(schema),
            "jobs": sql.Identifier(schema, "jobs"),
            "results": sql.Identifier(schema, "results"),
            "workers": sql.Identifier(schema, "workers"),
            "dead_workers": sql.Identifier(schema, "dead_workers"),
            "queue_pauses": sql.Identifier(schema, "queue_pauses"),
            "version_table": sql.Identifier(schema, VERSION_TABLE),
            "schedules": sql.Identifier(schema, "schedules"),
            "schedule_ticks": sql.Identifier(schema, "schedule_ticks"),
            "exchanges": sql.Identifier(schema, "exchanges"),
            "bindings": sql.Identifier(schema, "bindings"),
            "route_queues": sql.Identifier(schema, "route_queues"),
            "rate_limits": sql.Identifier(schema, "rate_limits"),
            "concurrency_limits": sql.Identifier(schema, "concurrency_limits"),
            "groups": sql.Identifier(schema, "groups"),
            "chords": sql.Identifier(schema, "chords"),
            "revoked": sql.Identifier(schema, "revoked"),
            "workflow_start": sql.Identifier(schema, "workflow_start"),
            "control": sql.Identifier(schema, "control"),
            "unique_keys": sql.Identifier(schema, "unique_keys"),
            "control_replies": sql.Identifier(schema, "control_replies"),
            "events": sql.Identifier(schema, "events"),
            "events_channel": sql.Literal(self.events_channel),
            "events_channel_identifier": sql.Identifier(self.events_channel),
            "control_channel": sql.Literal(self.control_channel),
            "control_replies_channel": sql.Literal(self.control_replies_channel),
            "control_channel_identifier": sql.Identifier(self.control_channel),
            "control_replies_channel_identifier": sql.Identifier(self.control_replies_channel),
            "jobs_channel": sql.Literal(self.jobs_channel),
            "results_channel": sql.Literal(self.results_channel),
            "queues_channel": sql.Literal(self.queues_channel),
            "queues_channel_identifier": sql.Identifier(self.queues_channel),
            "jobs_channel_identifier": sql.Identifier(self.jobs_channel),
            "results_channel_identifier": sql.Identifier(self.results_channel),
        }
        #: Every statement of the schema's groups, by name, ready to run.
        self.sql: dict[str, str] = {
            name: sql.SQL(statement.text).format(**names).as_string(None)
            for name, statement in STATEMENTS.items() if statement.group in SCHEMA_GROUPS
        }
        self._fast = {key: fast.FastStatement.of(key, self.sql[key]) for key in fast.STATEMENTS}

    def schema_revision(self, conn: psycopg.Connection) -> str | None:
        """The schema's migration revision, None when sqlq was never migrated there."""
        try:
            row = conn.execute(self.sql["SCHEMA_REVISION"]).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None
        return row[0] if row else None

    def lock_key(self, purpose: str) -> int:
        """The advisory-lock key for one purpose in this schema (two schemas never share a lock)."""
        return zlib.crc32(f"sqlq-{purpose}:{self.schema}".encode())

    def try_xact_lock(self, conn: psycopg.Connection, key: int) -> bool:
        return cast("tuple[bool]", conn.execute(self.sql["TRY_XACT_LOCK"], {"key": key}).fetchone())[0]

    def xact_lock(self, conn: psycopg.Connection, key: int) -> None:
        conn.execute(self.sql["XACT_LOCK"], {"key": key})

    def drop_schema(self, conn: psycopg.Connection) -> None:
        """Drop this schema and everything in it (``sqlq.testing``'s fresh schema per test)."""
        conn.execute(self.sql["DROP_SCHEMA"])
