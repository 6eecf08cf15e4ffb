"""Connections: how sqlq reaches PostgreSQL, and how connection failures read to a person.

Two kinds of connection exist for different jobs:

* the SQLAlchemy ``Engine`` (``App.engine``) for migrations, transactional tasks and anything that
  wants SQLAlchemy semantics;
* a pool of raw psycopg connections in autocommit mode for the hot path (enqueue, claim, finish),
  where SQLAlchemy's per-statement overhead would cost more than the round trip itself. The pool is
  our own, about forty lines: a check-out costs about a microsecond (SQLAlchemy's ``QueuePool`` took
  about 15 µs of every ``delay()``), and a worker or producer that never uses the engine never pays
  for importing SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator

import psycopg

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


_IDLE = psycopg.pq.TransactionStatus.IDLE


class ConnectionPool:
    """Thread-safe pool of autocommit psycopg connections for the hot path.

    Keeps up to ``size`` idle connections and opens up to ``size + max_overflow`` in all; a caller
    that finds every one in use waits up to ``timeout`` seconds. Idle connections are reused most
    recently returned first, so a quiet app keeps few warm connections. A connection is dropped
    instead of returned when it broke (``OperationalError``), is closed, or was left inside a
    transaction that cannot be rolled back."""

    def __init__(self, url: str, size: int = 5, max_overflow: int = 20, timeout: float = 30.0):
        self.url = url
        self.size = size
        self.limit = size + max_overflow
        self.timeout = timeout
        self._idle: list[psycopg.Connection] = []
        self._open = 0  # connections that exist: idle plus checked out
        self._generation = 0  # bumped by dispose(): connections out at that moment are closed on return
        self._waiting = 0  # threads waiting for a connection (check-in skips notify() when none)
        self._cond = threading.Condition(threading.Lock())

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        conn, generation = self._checkout()
        keep = False
        try:
            yield conn
            if conn.pgconn.transaction_status != _IDLE:
                conn.rollback()
            keep = True
        except psycopg.OperationalError:
            raise  # the connection may be broken: drop it
        except BaseException:
            keep = not conn.closed and conn.pgconn.transaction_status == _IDLE
            raise
        finally:
            self._checkin(conn, generation, keep)

    def _checkout(self) -> tuple[psycopg.Connection, int]:
        deadline = None
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop(), self._generation
                if self._open < self.limit:
                    self._open += 1
                    generation = self._generation
                    break
                deadline = deadline or time.monotonic() + self.timeout
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DatabaseUnavailableError(
                        f"all {self.limit} pooled connections to {redact_url(self.url)} stayed in use for "
                        f"{self.timeout:g} s; return connections sooner or use fewer threads"
                    )
                self._waiting += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._waiting -= 1
        try:
            return connect(self.url), generation
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _checkin(self, conn: psycopg.Connection, generation: int, keep: bool) -> None:
        with self._cond:
            reuse = keep and not conn.closed and generation == self._generation and len(self._idle) < self.size
            if reuse:
                self._idle.append(conn)
            else:
                self._open -= 1
            if self._waiting:
                self._cond.notify()
        if not reuse:
            conn.close()

    def dispose(self) -> None:
        """Close the idle connections; those checked out are closed when they come back."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._generation += 1
            self._cond.notify_all()
        for conn in idle:
            conn.close()


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
