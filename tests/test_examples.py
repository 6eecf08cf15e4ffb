"""`examples/` must run as written: each script in a database of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new database, because the examples use the default `sqlq` schema and a `demo_orders` table."""
    name = f"sqlq_example_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    monkeypatch.delenv("SQLQ_SCHEMA", raising=False)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_example(script: str, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SQLQ_SCHEMA"}
    env["SQLQ_DATABASE_URL"] = url
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_demo_runs_worker_producer_and_results(fresh_database: str):
    proc = run_example("examples/demo.py", fresh_database)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "add.delay(2, 3)" in out and "SUCCESS  5" in out
    assert "SUCCESS  42" in out  # the countdown job
    assert "after 2 retries" in out
    assert "from an async task" in out
    assert "ZeroDivisionError" in out
    assert "ConnectionError: db-7 refused the connection" in out
    assert "TRACK-" in out  # the transactional task
    assert "worker exited with 0" in out
    assert "warm shutdown" in proc.stderr


def test_transactional_enqueue_example(fresh_database: str):
    proc = run_example("examples/transactional_enqueue.py", fresh_database)
    assert proc.returncode == 0, proc.stderr
    assert "rolled-back order: job None" in proc.stdout
    with psycopg.connect(fresh_database) as conn:
        items = {row[0] for row in conn.execute("SELECT item FROM demo_orders")}
        queued = conn.execute("SELECT count(*) FROM sqlq.jobs WHERE task = 'examples.tasks.ship_order'").fetchone()[0]
    assert items == {"teapot", "mug"}
    assert queued == 2  # one per committed order, none for the rolled-back one
