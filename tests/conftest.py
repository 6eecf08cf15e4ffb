"""Test fixtures: every test gets its own PostgreSQL schema, migrated, and dropped afterwards.

The database is SQLQ_TEST_DATABASE_URL, else the local server on 127.0.0.1:5432/test, else the
embedded one. Subprocesses (CLI, workers, prefork children) inherit SQLQ_DATABASE_URL and
SQLQ_SCHEMA from the environment the fixture sets, so they see the same isolated schema.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from sqlq import App
from sqlq.worker.worker import Worker

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unit: pure logic that needs no PostgreSQL (every test under tests/unit/)")


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _pick_url() -> str:
    url = os.environ.get("SQLQ_TEST_DATABASE_URL")
    if url:
        return url
    if _reachable(LOCAL_URL):
        return LOCAL_URL
    from sqlq.embedded import ensure_embedded

    return ensure_embedded()


@pytest.fixture(scope="session")
def database_url() -> str:
    """Looked up (and connected to) only when a test asks for it: the unit tier never does."""
    return _pick_url()


@pytest.fixture
def schema(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh schema name, exported so subprocesses and importable test apps use it too."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SQLQ_DATABASE_URL", database_url)
    monkeypatch.setenv("SQLQ_SCHEMA", name)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _prepare_threshold() -> int | None:
    """psycopg's default, or None when the suite runs through a transaction pooler that keeps no
    prepared statements (tests/test_pgbouncer.py sets SQLQ_DATABASE_PREPARED_STATEMENTS=0)."""
    off = os.environ.get("SQLQ_DATABASE_PREPARED_STATEMENTS", "").strip().lower() in {"0", "false", "no", "off"}
    return None if off else 5


@pytest.fixture
def raw_conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True, prepare_threshold=_prepare_threshold()) as conn:
        yield conn


@pytest.fixture
def app(schema: str, database_url: str) -> Iterator[App]:
    """A migrated app on the test's own schema."""
    application = App("tests", database_url=database_url, schema=schema)
    application.migrate()
    yield application
    application.close()


@pytest.fixture
def basic_app(schema: str) -> Iterator[App]:
    """The importable app in tests/apps/basic.py (needed by prefork children), migrated."""
    from tests.apps import basic

    basic.app.close()  # drop connections made for a previous test's schema
    basic.app.migrate()
    yield basic.app
    basic.app.close()


@pytest.fixture
def ops_app(schema: str) -> Iterator[App]:
    """The importable app in tests/apps/operations.py (Ignore/Reject, retries, unknown tasks), migrated."""
    from tests.apps import operations

    operations.app.close()
    operations.app.migrate()
    yield operations.app
    operations.app.close()


class WorkerThread:
    """A worker running in a thread of the test process; stopped (warm) at the end of the test."""

    def __init__(self, app: App, **options):
        options.setdefault("concurrency", 2)
        options.setdefault("pool", "threads")
        self.worker = Worker(app, **options)
        self.thread = threading.Thread(target=self.worker.run, name="test-worker", daemon=True)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, cold: bool = False, timeout: float = 30) -> None:
        if self.thread.is_alive():
            self.worker.stop(cold=cold)
            self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


@pytest.fixture
def run_worker():
    """``with run_worker(app, pool='threads') as worker: ...``"""
    started: list[WorkerThread] = []

    def start(app: App, **options) -> WorkerThread:
        wt = WorkerThread(app, **options)
        started.append(wt)
        return wt

    yield start
    for wt in started:
        if wt.thread.is_alive():
            wt.stop(cold=True)
