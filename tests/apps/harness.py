"""Helpers the worker tests share: wait for a condition, read job and result rows, run worker
processes and find their prefork children.

Tests wait on conditions (never on a fixed sleep) with generous timeouts, because the machine that
runs them is shared and slow at times; a timeout here means the behaviour is missing, not late.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02,
             message: str | Callable[[], str] = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (and return that); fail the test after
    ``timeout``. ``message`` says what was awaited; a callable is asked at the timeout, so it can
    tell the last state seen. The one polling loop of the suite: every wait goes through here or
    through :func:`await_for`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {_said(message)}")
        time.sleep(interval)


async def await_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.01,
                    message: str | Callable[[], str] = "condition") -> Any:
    """:func:`wait_for` for coroutines: the same contract, sleeping with ``asyncio.sleep`` so that
    the event loop keeps running the tasks the condition waits on."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {_said(message)}")
        await asyncio.sleep(interval)


def _said(message: str | Callable[[], str]) -> str:
    return message() if callable(message) else message


def job_row(conn: psycopg.Connection, schema: str, job_id: str) -> dict | None:
    """The job's row in the hot table (None once it has finished)."""
    query = sql.SQL("SELECT * FROM {}.jobs WHERE id = %s").format(sql.Identifier(schema))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (job_id,)).fetchone()


def result_row(conn: psycopg.Connection, schema: str, job_id: str) -> dict | None:
    query = sql.SQL("SELECT * FROM {}.results WHERE id = %s").format(sql.Identifier(schema))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (job_id,)).fetchone()


def wait_result(conn: psycopg.Connection, schema: str, job_id: str, timeout: float = 30.0) -> dict:
    return wait_for(lambda: result_row(conn, schema, job_id), timeout, message=f"a result for job {job_id}")


def scalar(conn: psycopg.Connection, query: str, *params: Any, schema: str | None = None) -> Any:
    """Run ``query`` (``{s}`` stands for the quoted schema) and return the first column of the first row."""
    statement = sql.SQL(query).format(s=sql.Identifier(schema)) if schema else sql.SQL(query)
    row = conn.execute(statement, params).fetchone()
    return row[0] if row else None


def create_runs_table(conn: psycopg.Connection, schema: str) -> None:
    """The side table ``tests.apps.basic.record_run`` writes one row per execution into."""
    conn.execute(sql.SQL("CREATE TABLE {}.runs (job_id uuid NOT NULL, pid int NOT NULL, "
                         "at timestamptz NOT NULL DEFAULT clock_timestamp())").format(sql.Identifier(schema)))


def runs_of(conn: psycopg.Connection, schema: str, job_id: str) -> int:
    return scalar(conn, "SELECT count(*) FROM {s}.runs WHERE job_id = %s", job_id, schema=schema)


def claim_as_dead_worker(app: Any, *results: Any) -> str:
    """Claim the given jobs as a worker that then never beats again; returns its id."""
    dead = str(uuid.uuid4())
    with app.connection() as conn:
        app.store.register_worker(conn, id=dead, hostname="dead@host", pid=1, queues=["default"],
                                  concurrency=1, pool="threads")
        claimed = app.store.claim(conn, dead, "default", 100)
    assert {j.id for j in claimed} == {r.id for r in results}
    return dead


def wait_answering(app: Any, *hostnames: str) -> dict:
    """Wait until the workers named answer a control ping (they are started and listening for
    commands); returns the last ping's replies (tests/test_control*.py, test_inspect.py)."""
    return wait_for(lambda: (r := app.control.inspect(timeout=1).ping()) and set(r) >= set(hostnames) and r,
                    message=f"pongs from {', '.join(hostnames)}")


# --- worker processes ---------------------------------------------------------------------------

def worker_command(app_path: str = "tests.apps.basic:app", pool: str = "prefork", concurrency: int = 2,
                   extra: tuple[str, ...] = ()) -> list[str]:
    """A worker process as a user starts one."""
    return [sys.executable, "-m", "sqlq", "-A", app_path, "worker", "-P", pool, "-c", str(concurrency), *extra]


class WorkerProcess:
    """A worker in its own process group, its output captured in a file for the test to read."""

    def __init__(self, log_path: Path, **command: Any):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(worker_command(**command), cwd=ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        return child_pids(self.pid)

    def kill(self) -> None:
        """SIGKILL the worker process alone (its prefork children notice and exit on their own)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        """Clean up whatever is left: the whole process group, then the log file."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # orphaned children of a killed worker
        except ProcessLookupError:
            pass
        self._log.close()


def child_pids(parent: int) -> list[int]:
    """Pids of the live processes whose parent is ``parent`` (read from /proc, no extra dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (2nd field) is in parentheses and may hold spaces: split after it
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry.name))
    return found

