"""The tasks the chaos scenarios run: ``sqlq -A benchmarks.chaos.app worker ...``.

Workers get the private cluster through ``SQLQ_DATABASE_URL`` and the schema through
``SQLQ_SCHEMA``; the side tables (``chaos_runs``, ``chaos_ledger``) live in that schema and are
created by the scenario before any worker starts (``lab.SIDE_TABLES``).

``work`` records each run that reached its end on a connection of its own, so a run that
completed but whose outcome was never recorded is still visible (that is how duplicates are
counted). ``pay`` is the transactional twin: its ledger row commits with its outcome or not at all.
The poison tasks each produce one value or exception PostgreSQL or the encoder cannot take.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time

import psycopg

from sqlq import App

app = App("benchmarks.chaos.app")
#: The beat scenario's schedule; synced into the table only when a `sqlq beat` starts.
app.conf.beat_schedule = {"chaos-tick": {"task": "benchmarks.chaos.app.tick", "schedule": 1.0}}

_local = threading.local()
#: How long a run keeps trying to write its row while the database is away (a restart or a
#: crash-stop lasts seconds); past it the task fails, with a traceback, which the figures show.
_RECORD_PATIENCE_S = 90.0


def _side_connection() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(app.database_url, autocommit=True, connect_timeout=5,
                               application_name="chaos-task-side")
        _local.conn = conn
    return conn


def record_run(job_id: str | None, attempt: int, worker_id: str | None, started: float) -> None:
    """One row per run that reached its end, written outside the job's own bookkeeping."""
    statement = (f'INSERT INTO "{app.conf.schema}".chaos_runs (job_id, attempt, worker_id, pid, started_at) '
                 "VALUES (%s, %s, %s, %s, %s)")
    params = (job_id, attempt, worker_id, os.getpid(), dt.datetime.fromtimestamp(started, dt.UTC))
    deadline = time.monotonic() + _RECORD_PATIENCE_S
    while True:
        try:
            _side_connection().execute(statement, params)
            return
        except psycopg.OperationalError:
            _local.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@app.task(bind=True)
def work(self, n: int, sleep_ms: float) -> int:  # noqa: ANN001 - self is the bound Task
    """Sleep a few ms, then record the run."""
    started = time.time()
    time.sleep(sleep_ms / 1000.0)
    record_run(self.request.id, self.request.attempt, self.request.worker_id, started)
    return n


@app.task(bind=True, transactional=True)
def pay(self, n: int, sleep_ms: float) -> int:  # noqa: ANN001
    """Insert a business row keyed by job id in the transaction that records the outcome."""
    from sqlalchemy import text

    time.sleep(sleep_ms / 1000.0)
    self.connection.execute(
        text(f'INSERT INTO "{app.conf.schema}".chaos_ledger (job_id, attempt, worker_id) '
             "VALUES (:id, :attempt, :worker)"),
        {"id": self.request.id, "attempt": self.request.attempt, "worker": self.request.worker_id})
    return n


@app.task
def noop(n: int = 0) -> int:
    return n


@app.task
def tick() -> None:
    """What the beat schedule sends; the scenario reads the tick rows, not the outcome."""


# --- poison --------------------------------------------------------------------------------------

class UnprintableError(Exception):
    """An exception whose message cannot be read: ``str(exc)`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("UnprintableError.__str__ raised")


@app.task
def returns_nan() -> float:
    return float("nan")  # JSON text NaN, which jsonb refuses


@app.task
def returns_nul() -> str:
    return "before\x00after"  # \u0000, which jsonb refuses


@app.task
def raises_nul() -> None:
    raise ValueError("before\x00after")  # a NUL byte, which a text column refuses


@app.task
def raises_unprintable() -> None:
    raise UnprintableError()
