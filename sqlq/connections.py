"""An app's ways to its database, made on first use and dropped together.

The database URL (by precedence: the command line, ``SQLQ_DATABASE_URL``, ``DATABASE_URL``, the
app's setting, else the embedded development database), sqlq's own pools of raw psycopg
connections for the hot path (sync and async), the SQLAlchemy engine (imported only when first
used: a worker or producer that never needs it does not pay for importing SQLAlchemy), and the
result waiter's LISTEN connection. ``close`` drops them all, and the resolved URL with them, so the
next use resolves and connects again.

``listen_url`` is where session state lives (LISTEN, a worker's liveness lock): the setting
``listen_database_url`` when ``database_url`` is a transaction pooler, else ``database_url``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg

from .config import Settings, resolve_database_url, sqlalchemy_url
from .db import AsyncConnectionPool, ConnectionPool, connect, raise_clear_error
from .notify import ResultWaiter

if TYPE_CHECKING:
    from sqlalchemy import Engine


class Connections:
    """One app's connections (``App.connection()``, ``App.engine`` … delegate here)."""

    def __init__(self, conf: Settings):
        self._conf = conf
        self._url_override: str | None = None
        self._resolved_url: str | None = None
        self._engine: Engine | None = None
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._waiter: ResultWaiter | None = None
        self._lock = threading.RLock()

    def set_url(self, url: str | None) -> None:
        """A URL given on the command line: beats every other source."""
        with self._lock:
            self._url_override = url
            self._reset()

    @property
    def url(self) -> str:
        """The URL by precedence: CLI, SQLQ_DATABASE_URL, DATABASE_URL, the app's setting, embedded."""
        if self._resolved_url is None:
            with self._lock:
                url = resolve_database_url(self._url_override, self._conf.database_url)
                if url is None:
                    from .embedded import ensure_embedded

                    url = ensure_embedded()
                sqlalchemy_url(url)  # validate early, with a clear message
                self._resolved_url = url
        return self._resolved_url

    @property
    def listen_url(self) -> str:
        """Where LISTEN and session-level locks go: ``listen_database_url``, else ``url``."""
        return self._conf.listen_database_url or self.url

    @property
    def pooled(self) -> bool:
        """Whether ``url`` is taken for a transaction pooler (``listen_database_url`` is set): no
        session state may be left on its connections, since the next transaction may run on
        another server session."""
        return bool(self._conf.listen_database_url)

    def connect_direct(self) -> psycopg.Connection:
        """A connection of sqlq's own, not pooled, to ``listen_url``: one that keeps session state."""
        return connect(self.listen_url, prepare=self.pooled or bool(self._conf.database_prepared_statements))

    @property
    def engine(self) -> Engine:
        """SQLAlchemy engine for migrations, transactional tasks and ad-hoc SQL."""
        with self._lock:
            if self._engine is None:
                from sqlalchemy import create_engine  # here: a worker that never needs it never imports it

                url = self.url
                # connect through db.connect so an unreachable server reads as one clear line here too
                prepare = bool(self._conf.database_prepared_statements)
                self._engine = create_engine(sqlalchemy_url(url), pool_pre_ping=True,
                                             creator=lambda: connect(url, autocommit=False, prepare=prepare))
            return self._engine

    def discard_idle(self) -> None:
        """Close the pool's idle connections (a connection of it just broke): they were most likely
        cut by the same event (a restart, a failover, terminated backends), and the check before
        reuse cannot see a termination whose notice has not reached the socket yet."""
        pool = self._pool
        if pool is not None:
            pool.dispose()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit psycopg connection (the hot path's way in)."""
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ConnectionPool(self.url, prepare=bool(self._conf.database_prepared_statements))
                pool = self._pool
        with pool.connection() as conn:
            try:
                yield conn
            except psycopg.Error as exc:
                raise_clear_error(exc, self._conf.schema)
                raise

    def async_pool(self) -> AsyncConnectionPool:
        with self._lock:
            if self._apool is None:
                self._apool = AsyncConnectionPool(self.url, prepare=bool(self._conf.database_prepared_statements))
            return self._apool

    def result_waiter(self, listen: str) -> ResultWaiter:
        """The app's one result waiter, started; ``listen`` is its LISTEN statement."""
        with self._lock:
            if self._waiter is None:
                self._waiter = ResultWaiter(self.listen_url, listen)
            waiter = self._waiter
        waiter.ensure_started()
        return waiter

    def close(self) -> None:
        """Close every connection opened here; the next use resolves the URL again."""
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self._resolved_url = None
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None
        if self._pool is not None:
            self._pool.dispose()
            self._pool = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._apool is not None:
            self._apool.close()
            self._apool = None
