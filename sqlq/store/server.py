"""Statements on the server itself (server.sql), for the embedded development database: whether it
accepts connections, and the database sqlq uses created on it. No schema exists yet when they run,
so they are module functions rather than ``Store`` methods.
"""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import sql

from .statements import STATEMENTS


def ping(conn: psycopg.Connection) -> None:
    """One round trip; raises psycopg's error when the server does not answer."""
    conn.execute(STATEMENTS["SERVER_PING"].text)


def ensure_database(conn: psycopg.Connection, name: str) -> None:
    """Create database ``name`` unless it exists (``conn``: autocommit, on another database)."""
    if conn.execute(STATEMENTS["DATABASE_EXISTS"].text, {"name": name}).fetchone() is None:
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL(STATEMENTS["CREATE_DATABASE"].text).format(database=sql.Identifier(name)))
