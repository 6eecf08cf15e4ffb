"""Connections: how sqlq reaches PostgreSQL, and how connection failures read to a person.

Two kinds of connection exist for different jobs:

* the SQLAlchemy ``Engine`` (``App.engine``) for migrations, transactional tasks and anything that
  wants SQLAlchemy semantics;
* a pool of raw psycopg connections in autocommit mode for the hot path (enqueue, claim, finish),
  where SQLAlchemy's per-statement overhead would cost more than the round trip itself. The pool
  is SQLAlchemy's ``QueuePool`` used on its own, so no extra dependency is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Iterator

import psycopg
from sqlalchemy.pool import QueuePool

from .config import libpq_url, redact_url
from .errors import DatabaseUnavailableError, DuplicateJobError, SchemaNotMigratedError


def explain_connection_error(url: str, exc: BaseException) -> DatabaseUnavailableError:
    """Turn libpq's message into one line that says what is wrong and what to do."""
    msg = str(exc).strip()
    where = redact_url(url)
    low = msg.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        text = f"PostgreSQL at {where} rejected the login (wrong user or password); fix the credentials in the URL"
    elif "does not exist" in low and "database" in low:
        text = (f"the database named in {where} does not exist; create it (createdb NAME) "
                f"or point SQLQ_DATABASE_URL at an existing one")
    elif "role" in low and "does not exist" in low:
        text = f"the user named in {where} does not exist on that server; create the role or fix the URL"
    elif any(s in low for s in ("connection refused", "could not connect", "no such file", "timeout expired",
                                "could not translate host name", "name or service not known",
                                "connection failed", "network is unreachable")):
        text = (f"cannot reach PostgreSQL at {where}: is the server running and the host/port right? "
                f"({msg.splitlines()[0] if msg else type(exc).__name__})")
    else:
        text = f"cannot connect to PostgreSQL at {where}: {msg.splitlines()[0] if msg else type(exc).__name__}"
    return DatabaseUnavailableError(text)


def connect(url: str, *, autocommit: bool = True, connect_timeout: int = 10) -> psycopg.Connection:
    """A raw psycopg connection, with a readable error when it cannot be made."""
    try:
        return psycopg.connect(libpq_url(url), autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        raise explain_connection_error(url, exc) from None


async def aconnect(url: str, *, autocommit: bool = True, connect_timeout: int = 10) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(
            libpq_url(url), autocommit=autocommit, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as exc:
        raise explain_connection_error(url, exc) from None


def raise_clear_error(exc: BaseException, schema: str) -> None:
    """Re-raise the write errors a user can cause as sqlq errors that say what to do.

    A missing sqlq table almost always means `sqlq migrate` was not run; a duplicate key on the
    jobs table means a ``task_id`` was reused while that job still waits or runs."""
    if isinstance(exc, psycopg.errors.UniqueViolation) and exc.diag.constraint_name == "jobs_pkey":
        raise DuplicateJobError(
            f"a job with this id is already waiting or running ({exc.diag.message_detail}); "
            f"pass a new task_id, or leave it out to get a fresh one"
        ) from None
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName
                  | psycopg.errors.UndefinedFunction | psycopg.errors.UndefinedColumn):
        raise SchemaNotMigratedError(
            f"the sqlq tables in schema {schema!r} are missing or out of date ({str(exc).splitlines()[0]}); "
            f"run `sqlq migrate` (or app.migrate()) first"
        ) from None


class ConnectionPool:
    """Thread-safe pool of autocommit psycopg connections for the hot path."""

    def __init__(self, url: str, size: int = 5, max_overflow: int = 20):
        self.url = url
        self._pool = QueuePool(lambda: connect(url), pool_size=size, max_overflow=max_overflow,
                               reset_on_return=None, timeout=30)

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        fairy = self._pool.connect()
        try:
            conn = fairy.driver_connection
            yield conn
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
        except psycopg.OperationalError:
            fairy.invalidate()
            raise
        finally:
            fairy.close()

    def dispose(self) -> None:
        self._pool.dispose()


class AsyncConnectionPool:
    """A small per-event-loop pool of async connections: asyncio apps need no extra library."""

    def __init__(self, url: str, size: int = 5):
        self.url = url
        self.size = size
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[psycopg.AsyncConnection]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        """Drop idle connections. Their event loops may be gone, so close the sockets directly
        (libpq's finish) instead of awaiting ``close()`` on a loop that no longer runs."""
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            if not conn.closed:
                conn.pgconn.finish()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        loop = asyncio.get_running_loop()
        with self._lock:
            idle = self._idle.setdefault(loop, [])
            conn = idle.pop() if idle else None
        if conn is None or conn.closed:
            conn = await aconnect(self.url)
        ok = False
        try:
            yield conn
            ok = True
        finally:
            if ok and not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                with self._lock:
                    idle = self._idle.setdefault(loop, [])
                    if len(idle) < self.size:
                        idle.append(conn)
                        conn = None
            if conn is not None:
                await conn.close()
