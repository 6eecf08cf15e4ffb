"""Enqueue inside the caller's transaction (SQLAlchemy and psycopg, sync and async).

Rolled back, the job never existed and nobody was woken; committed, it is visible and idle workers
get exactly one NOTIFY on the jobs channel, sent at commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlq import App
from sqlq.config import libpq_url, sqlalchemy_url
from sqlq.errors import ConfigurationError

NOTIFY_TIMEOUT = 30


@pytest.fixture
def add(app: App):
    @app.task
    def add(x, y):
        return x + y

    return add


@pytest.fixture
def listener(app: App, database_url: str) -> Iterator[psycopg.Connection]:
    """A connection LISTENing on the jobs channel, as an idle worker does."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(app.store.listen_jobs)
        yield conn


def _notifications_so_far(listener: psycopg.Connection) -> list[str]:
    """Notifications already delivered: a round trip first, so anything sent has arrived."""
    listener.execute("SELECT 1")
    return [n.payload for n in listener.notifies(timeout=0.2)]


def _wait_notifications(listener: psycopg.Connection, count: int = 1) -> list[str]:
    """Wait for ``count`` notifications. The generator is drained, not abandoned: several may
    arrive in one packet and an abandoned generator would drop the rest."""
    return [n.payload for n in listener.notifies(timeout=NOTIFY_TIMEOUT, stop_after=count)]


def _job_ids(app: App, database_url: str) -> set[str]:
    """What another session sees: only committed jobs."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {r[0] for r in conn.execute(f'SELECT id::text FROM "{app.conf.schema}".jobs').fetchall()}


# --- the caller's sync connections ---------------------------------------------------------------

@contextlib.contextmanager
def _sqlalchemy_connection(app: App) -> Iterator[tuple[Any, Callable, Callable]]:
    with app.engine.connect() as conn:
        conn.begin()
        yield conn, conn.commit, conn.rollback


@contextlib.contextmanager
def _sqlalchemy_session(app: App) -> Iterator[tuple[Any, Callable, Callable]]:
    with Session(app.engine) as session:
        yield session, session.commit, session.rollback


@contextlib.contextmanager
def _psycopg_connection(app: App) -> Iterator[tuple[Any, Callable, Callable]]:
    with psycopg.connect(libpq_url(app.database_url)) as conn:
        yield conn, conn.commit, conn.rollback


SYNC_KINDS = {"sqlalchemy-connection": _sqlalchemy_connection, "sqlalchemy-session": _sqlalchemy_session,
              "psycopg-connection": _psycopg_connection}


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_rolled_back_enqueue_never_existed(kind, app: App, add, listener, database_url):
    with SYNC_KINDS[kind](app) as (conn, _commit, rollback):
        result = add.apply_async((1, 2), connection=conn)
        assert result.id not in _job_ids(app, database_url)
        rollback()
    assert _job_ids(app, database_url) == set()
    assert _notifications_so_far(listener) == []
    assert app.AsyncResult(result.id).state == "PENDING"


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_committed_enqueue_is_visible_and_wakes_workers_at_commit(kind, app: App, add, listener, database_url):
    with SYNC_KINDS[kind](app) as (conn, commit, _rollback):
        result = add.apply_async((1, 2), connection=conn)
        assert _notifications_so_far(listener) == []  # not before commit
        assert _job_ids(app, database_url) == set()
        commit()
    assert _wait_notifications(listener) == ["default"]
    assert _notifications_so_far(listener) == []  # exactly one
    assert _job_ids(app, database_url) == {result.id}


def test_bulk_enqueue_in_a_transaction_wakes_each_queue_once(app: App, add, listener, database_url):
    with Session(app.engine) as session:
        add.apply_many([((1, 2), {}), ((3, 4), {})], queue="alpha", connection=session)
        add.apply_many([((5, 6), {})], queue="beta", connection=session)
        add.apply_async((7, 8), queue="gamma", countdown=3600, connection=session)  # scheduled: no wake-up
        assert _notifications_so_far(listener) == []
        session.commit()
    assert sorted(_wait_notifications(listener, 2)) == ["alpha", "beta"]
    assert _notifications_so_far(listener) == []
    assert len(_job_ids(app, database_url)) == 4


def test_enqueue_and_the_callers_own_writes_commit_together(app: App, add, database_url, raw_conn):
    table = f'"{app.conf.schema}".orders'
    raw_conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    for outcome in ("rollback", "commit"):
        with Session(app.engine) as session:
            session.connection().exec_driver_sql(f"INSERT INTO {table} VALUES (1)")
            result = add.apply_async((1, 1), connection=session)
            getattr(session, outcome)()
    assert raw_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1
    assert _job_ids(app, database_url) == {result.id}


def test_without_connection_enqueue_commits_on_its_own(app: App, add, listener, database_url):
    with app.engine.connect() as conn:
        conn.begin()
        result = add.delay(1, 2)  # no connection=: not part of the open transaction
        assert _wait_notifications(listener) == ["default"]
        assert _job_ids(app, database_url) == {result.id}
        conn.rollback()
    assert _job_ids(app, database_url) == {result.id}


def test_sync_api_refuses_an_async_or_foreign_connection(app: App, add, database_url):
    with pytest.raises(ConfigurationError, match="connection= must be a SQLAlchemy Connection or Session"):
        add.apply_async((1, 2), connection=object())
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        with pytest.raises(ConfigurationError, match="async ones with the async API"):
            add.apply_async((1, 2), connection=AsyncSession(engine))
    finally:
        engine.sync_engine.dispose()
    assert _job_ids(app, database_url) == set()


# --- the caller's async connections --------------------------------------------------------------

@pytest.fixture
async def async_engine(database_url: str) -> AsyncIterator[Any]:
    engine = create_async_engine(sqlalchemy_url(database_url))
    yield engine
    await engine.dispose()


@contextlib.asynccontextmanager
async def _async_sqlalchemy_connection(engine: Any, url: str) -> AsyncIterator[tuple[Any, Callable, Callable]]:
    async with engine.connect() as conn:
        await conn.begin()
        yield conn, conn.commit, conn.rollback


@contextlib.asynccontextmanager
async def _async_sqlalchemy_session(engine: Any, url: str) -> AsyncIterator[tuple[Any, Callable, Callable]]:
    async with AsyncSession(engine) as session:
        yield session, session.commit, session.rollback


@contextlib.asynccontextmanager
async def _async_psycopg_connection(engine: Any, url: str) -> AsyncIterator[tuple[Any, Callable, Callable]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        yield conn, conn.commit, conn.rollback


ASYNC_KINDS = {"async-sqlalchemy-connection": _async_sqlalchemy_connection,
               "async-sqlalchemy-session": _async_sqlalchemy_session,
               "async-psycopg-connection": _async_psycopg_connection}


@pytest.mark.parametrize("kind", ASYNC_KINDS)
async def test_async_rollback_and_commit(kind, app: App, add, listener, database_url, async_engine):
    url = libpq_url(database_url)
    async with ASYNC_KINDS[kind](async_engine, url) as (conn, _commit, rollback):
        dropped = await add.aapply_async((1, 2), connection=conn)
        await rollback()
    assert _job_ids(app, database_url) == set()
    assert _notifications_so_far(listener) == []
    assert app.AsyncResult(dropped.id).state == "PENDING"

    async with ASYNC_KINDS[kind](async_engine, url) as (conn, commit, _rollback):
        kept = await add.aapply_async((3, 4), connection=conn)
        many = await add.adelay_many([(5, 6), (7, 8)], connection=conn)
        assert _notifications_so_far(listener) == []
        assert _job_ids(app, database_url) == set()
        await commit()
    assert _wait_notifications(listener) == ["default"]
    assert _notifications_so_far(listener) == []  # PostgreSQL folds identical NOTIFYs of one transaction
    assert _job_ids(app, database_url) == {kept.id, *(r.id for r in many)}


async def test_async_api_refuses_a_sync_connection(app: App, add, database_url):
    with app.engine.connect() as conn, pytest.raises(ConfigurationError, match="for the async API"):
        await add.aapply_async((1, 2), connection=conn)
    assert _job_ids(app, database_url) == set()


async def test_async_without_connection_commits_on_its_own(app: App, add, listener, database_url):
    result = await add.adelay(1, 2)
    assert _wait_notifications(listener) == ["default"]
    assert _job_ids(app, database_url) == {result.id}
