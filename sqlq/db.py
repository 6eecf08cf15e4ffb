"""Connections: how sqlq reaches PostgreSQL, and how connection failures read to a person.

Two kinds of connection exist for different jobs:

* the SQLAlchemy ``Engine`` (``App.engine``) for migrations, transactional tasks and anything that
  wants SQLAlchemy semantics;
* a pool of raw psycopg connections in autocommit mode for the hot path (enqueue, claim, finish),
  where SQLAlchemy's per-statement overhead would cost more than the round trip itself. The pool is
  our own: a check-out is a list pop and a socket poll, and a worker or producer that never uses
  the engine never pays for importing SQLAlchemy. Why not psycopg_pool (measured in
  docs/connection-pool.md, benchmarks/bench_pool.py): its health check sleeps with backoff between
  dead idle connections (seconds for the first ``delay()`` after a restart), it connects in
  background threads, so an unreachable server makes every check-out wait the pool's timeout
  instead of failing with a readable error, and its async pool belongs to one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import threading
import time
from collections.abc import AsyncIterator, Iterator

import psycopg

from .config import libpq_url, redact_url
from .errors import DatabaseUnavailableError, DuplicateJobError, SchemaNotMigratedError, first_line


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


def connect(url: str, *, autocommit: bool = True, connect_timeout: int = 10, prepare: bool = True) -> psycopg.Connection:
    """A raw psycopg connection, with a readable error when it cannot be made. ``prepare=False``
    (the setting ``database_prepared_statements``): psycopg prepares nothing on it, nor does the
    store's fast path (store/fast.py), because a transaction pooler without prepared-statement
    support runs the next statement on whichever server connection is free."""
    try:
        return psycopg.connect(libpq_url(url), autocommit=autocommit, connect_timeout=connect_timeout,
                               prepare_threshold=_THRESHOLD if prepare else None)
    except psycopg.OperationalError as exc:
        raise explain_connection_error(url, exc) from None


async def aconnect(url: str, *, autocommit: bool = True, connect_timeout: int = 10,
                   prepare: bool = True) -> psycopg.AsyncConnection:
    try:
        return await psycopg.AsyncConnection.connect(
            libpq_url(url), autocommit=autocommit, connect_timeout=connect_timeout,
            prepare_threshold=_THRESHOLD if prepare else None,
        )
    except psycopg.OperationalError as exc:
        raise explain_connection_error(url, exc) from None


#: psycopg's default: a statement run this many times on a connection is prepared there.
_THRESHOLD = 5


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



def _naming(ids: list[str]) -> str:
    if len(ids) == 1:
        return f"job {ids[0]}"
    return f"{len(ids)} jobs ({', '.join(ids[:3])}{', …' if len(ids) > 3 else ''})"


def write_lost(ids: list[str], first: BaseException, retry: BaseException) -> DatabaseUnavailableError:
    """The error for an enqueue on sqlq's own connection whose connection broke and whose one
    retry failed too: the first attempt may have committed, so the message names the jobs and
    how to find out."""
    return DatabaseUnavailableError(
        f"the connection to PostgreSQL broke while writing {_naming(ids)} ({first_line(first)}), and the "
        f"retry on a new connection failed too ({first_line(retry)}); the first attempt may or may not "
        f"have been committed: once the database is back, send the same call again with the same "
        f"task_id= (a DuplicateJobError then means it is waiting or running; a result for that id means it ran)"
    )


def broke_in_transaction(ids: list[str], exc: BaseException, in_transaction: bool) -> DatabaseUnavailableError:
    """The error for a write on the caller's connection whose connection broke. sqlq retries
    nothing there: the rest of the caller's transaction is gone with the connection."""
    if not in_transaction:  # the caller's own autocommit connection: the statement was its transaction
        return DatabaseUnavailableError(
            f"your connection to PostgreSQL broke while writing {_naming(ids)} on it in autocommit mode "
            f"({first_line(exc)}); the write may or may not have been committed: on a new connection, "
            f"send the same call again with the same task_id= (a DuplicateJobError then means it was written)"
        )
    return DatabaseUnavailableError(
        f"your connection to PostgreSQL broke inside your transaction while writing {_naming(ids)} "
        f"({first_line(exc)}); the server rolled that transaction back, so nothing of it was committed, "
        f"this enqueue included; sqlq does not retry inside a caller's transaction: run the whole "
        f"transaction again on a new connection"
    )


_IDLE = psycopg.pq.TransactionStatus.IDLE
_OK = psycopg.pq.ConnStatus.OK


def usable(conn: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    """Whether an idle pooled connection can be handed out, judged without a round trip.

    A connection the server dropped (a restart, ``pg_terminate_backend``, an idle timeout) is
    usually already known to the kernel: the server said why (a FATAL error message) and closed
    the socket, so the socket polls readable. An idle autocommit connection is owed nothing by
    the server, so anything readable means it is going or gone; the rare harmless message (a
    reloaded setting's ParameterStatus) costs one reconnect. libpq's own status covers a socket
    it already saw fail. A connection that died without a word (a host gone, no FIN) passes this
    check; the statement then fails and the enqueue retry (``App.enqueue``) takes over."""
    pgconn = conn.pgconn
    if pgconn.status != _OK or pgconn.transaction_status != _IDLE:
        return False
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.OperationalError):  # no socket any more
        return False


def broke(conn: psycopg.Connection | psycopg.AsyncConnection, exc: BaseException) -> bool:
    """Whether ``exc``, raised by a statement on ``conn``, means the connection itself is lost
    (the statement may or may not have reached the server, and, in autocommit, committed), as
    opposed to an error the server reported on a connection that still works."""
    return isinstance(exc, psycopg.OperationalError) and (conn.closed or conn.pgconn.status != _OK)


class ConnectionPool:
    """Thread-safe pool of autocommit psycopg connections for the hot path.

    Keeps up to ``size`` idle connections and opens up to ``size + max_overflow`` in all; a caller
    that finds every one in use waits up to ``timeout`` seconds. Idle connections are reused most
    recently returned first, so a quiet app keeps few warm connections. An idle connection is
    checked before it is handed out (``usable``: no round trip), and one that died while idle (a
    server restart, a terminated backend) is closed and the next one, or a new one, is taken
    instead. A connection is dropped instead of returned when it broke (``OperationalError``), is
    closed, or was left inside a transaction that cannot be rolled back."""

    def __init__(self, url: str, size: int = 5, max_overflow: int = 20, timeout: float = 30.0,
                 prepare: bool = True):
        self.url = url
        self.size = size
        self.limit = size + max_overflow
        self.timeout = timeout
        self.prepare = prepare  # (connect's)
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
                while self._idle:
                    conn = self._idle.pop()
                    if usable(conn):
                        return conn, self._generation
                    self._open -= 1  # dead while idle: drop it and look again
                    conn.close()
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
            return connect(self.url, prepare=self.prepare), generation
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
    """Async connections for the async API, bounded like ``ConnectionPool``: asyncio apps need no
    extra library.

    An asyncio connection belongs to the event loop that made it, so idle connections are kept
    per loop (a program may call ``asyncio.run`` more than once); the bound counts every open
    connection, whatever its loop. At most ``size`` idle per loop, at most ``size + max_overflow``
    open in all; a caller that finds them all in use waits up to ``timeout`` seconds, then gets a
    ``DatabaseUnavailableError`` that says so. Idle connections are checked before reuse
    (``usable``). A connection returned while a caller of another loop waits is closed instead of
    kept, so that caller can open its own. Idle connections of a loop that has closed are closed
    (their sockets directly) the next time the pool looks for room."""

    def __init__(self, url: str, size: int = 5, max_overflow: int = 20, timeout: float = 30.0,
                 prepare: bool = True):
        self.url = url
        self.size = size
        self.limit = size + max_overflow
        self.timeout = timeout
        self.prepare = prepare  # (aconnect's)
        self._idle: dict[asyncio.AbstractEventLoop, list[psycopg.AsyncConnection]] = {}
        self._open = 0  # connections that exist, idle or checked out, in every loop
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closed = False  # close(): connections still out are closed when they come back
        self._lock = threading.Lock()

    def close(self) -> None:
        """Drop idle connections. Their event loops may be gone, so close the sockets directly
        (libpq's finish) instead of awaiting ``close()`` on a loop that no longer runs; those
        checked out are closed when they come back (they no longer fit anywhere)."""
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
            self._open -= len(idle)
            self._closed = True
        for conn in idle:
            if not conn.closed:
                conn.pgconn.finish()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        loop = asyncio.get_running_loop()
        conn = await self._checkout(loop)
        keep = False
        try:
            yield conn
            keep = True
        except psycopg.OperationalError:
            raise  # the connection may be broken: drop it
        except BaseException:
            keep = True  # (kept only if idle and open: _checkin)
            raise
        finally:
            await self._checkin(loop, conn, keep)

    async def _checkout(self, loop: asyncio.AbstractEventLoop) -> psycopg.AsyncConnection:
        deadline = time.monotonic() + self.timeout
        while True:
            dead: list[psycopg.AsyncConnection] = []
            with self._lock:
                idle = self._idle.get(loop)
                while idle:
                    conn = idle.pop()
                    if usable(conn):
                        break
                    self._open -= 1
                    dead.append(conn)
                else:
                    conn = None
                if conn is None:
                    if self._open >= self.limit:
                        dead += self._forget_closed_loops()
                    if self._open < self.limit:
                        self._open += 1
                        waiter = None
                    else:
                        waiter = loop.create_future()
                        self._waiters.append((loop, waiter))
            for gone in dead:
                gone.pgconn.finish()  # (a dead socket: nothing to await)
            if conn is not None:
                return conn
            if waiter is None:
                try:
                    return await aconnect(self.url, prepare=self.prepare)
                except BaseException:
                    with self._lock:
                        self._open -= 1
                        self._wake_one()
                    raise
            try:
                await asyncio.wait_for(waiter, max(deadline - time.monotonic(), 0))
            except BaseException as exc:  # timed out or cancelled
                with self._lock:
                    if (loop, waiter) in self._waiters:
                        self._waiters.remove((loop, waiter))
                    else:
                        self._wake_one()  # woken as we gave up: pass the turn on
                if isinstance(exc, TimeoutError):
                    raise DatabaseUnavailableError(
                        f"all {self.limit} pooled async connections to {redact_url(self.url)} stayed in use "
                        f"for {self.timeout:g} s; return connections sooner or run fewer tasks at once"
                    ) from None
                raise

    async def _checkin(self, loop: asyncio.AbstractEventLoop, conn: psycopg.AsyncConnection, keep: bool) -> None:
        keep = keep and not conn.closed and conn.info.transaction_status == _IDLE
        with self._lock:
            other_loop_waits = any(waiting is not loop for waiting, _ in self._waiters)
            idle = self._idle.setdefault(loop, [])
            reuse = keep and not self._closed and not other_loop_waits and len(idle) < self.size
            if reuse:
                idle.append(conn)
            else:
                self._open -= 1
            self._wake_one(prefer=loop)
        if not reuse:
            await conn.close()

    def _wake_one(self, prefer: asyncio.AbstractEventLoop | None = None) -> None:
        """Wake one waiting caller (one of ``prefer``'s loop first); called with the lock held."""
        if not self._waiters:
            return
        index = next((i for i, (waiting, _) in enumerate(self._waiters) if waiting is prefer), 0)
        waiting, future = self._waiters.pop(index)
        waiting.call_soon_threadsafe(_set_done, future)

    def _forget_closed_loops(self) -> list[psycopg.AsyncConnection]:
        """Idle connections of loops that have closed (called with the lock held): out of the
        count, for the caller to close."""
        gone = [loop for loop in self._idle if loop.is_closed()]
        dead = [conn for loop in gone for conn in self._idle.pop(loop)]
        self._open -= len(dead)
        return dead


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
