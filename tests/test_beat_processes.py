"""Real beat processes. Three `sqlq beat` processes share one sub-second schedule, one of
them is killed mid-run, and every tick from the first to the last still becomes exactly one job.
Also `sqlq worker -B`, whose periodic jobs run in the same process.

Nothing here asserts a duration: the waits only bound how long a broken build takes to fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import psycopg
import pytest

from sqlq import every
from sqlq.periodic import add_schedule
from tests.apps.harness import wait_for

ROOT = Path(__file__).resolve().parent.parent
TASK = "tests.apps.basic.add"


class Processes:
    """`python -m sqlq ...` children, their stderr kept in files for the failure report."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.tmp_path / f"proc-{len(self.procs)}.log", "w")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen([sys.executable, "-m", "sqlq", "-A", "tests.apps.basic", *args], cwd=ROOT,
                                env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.args[4:]} pid {p.pid}\n{Path(p.log.name).read_text()[-3000:]}" for p in self.procs)

    def stop(self, proc: subprocess.Popen, timeout: float = 30) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        finally:
            proc.log.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    for proc in procs.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.log.close()


def ticks(conn: psycopg.Connection, schema: str) -> list[tuple]:
    return conn.execute(f'SELECT tick, job_id::text, fired_by FROM "{schema}".schedule_ticks '
                        f"WHERE schedule = 'fast' ORDER BY tick").fetchall()


def test_three_beats_send_every_tick_exactly_once_even_when_one_dies(basic_app, raw_conn, processes):
    schema = basic_app.conf.schema
    add_schedule(basic_app, "fast", TASK, every(0.5), args=[1, 2])
    env = {"SQLQ_BEAT_CATCHUP": "backfill", "SQLQ_BEAT_INTERVAL": "0.2"}
    beats = [processes.start("beat", "-l", "info", env=env) for _ in range(3)]
    try:
        wait_for(lambda: len(ticks(raw_conn, schema)) >= 8, 60, message="8 ticks")
        # kill -9 the beat that sent the latest tick, mid-flight, with no chance to clean up
        *_, (_, _, fired_by) = ticks(raw_conn, schema)
        victim = next(b for b in beats if fired_by.endswith(f":{b.pid}"))
        victim.kill()
        victim.wait(10)
        sent_before = len(ticks(raw_conn, schema))
        wait_for(lambda: len(ticks(raw_conn, schema)) >= sent_before + 8, 60, message="8 more ticks")
        survivors = [b for b in beats if b is not victim]
        assert [processes.stop(b) for b in survivors] == [0, 0]
    except AssertionError:
        print(processes.logs())
        raise

    rows = ticks(raw_conn, schema)
    assert {b - a for (a, *_), (b, *_) in pairwise(rows)} == {timedelta(seconds=0.5)}  # no gap, no duplicate
    job_ids = {r[0] for r in raw_conn.execute(f'SELECT id::text FROM "{schema}".jobs WHERE task = %s', (TASK,))}
    assert job_ids == {job_id for _, job_id, _ in rows}  # one job per tick, none without a tick
    after_kill = {fired_by for _, _, fired_by in rows[sent_before:]}
    assert after_kill and not any(f.endswith(f":{victim.pid}") for f in after_kill)
    assert "Traceback" not in processes.logs()


def test_worker_with_beat_runs_periodic_jobs(basic_app, raw_conn, processes):
    schema = basic_app.conf.schema
    add_schedule(basic_app, "fast", TASK, every(0.5), args=[2, 3])
    worker = processes.start("worker", "-B", "-P", "threads", "-c", "2", "-l", "info")

    def done() -> list[tuple]:
        return raw_conn.execute(f'SELECT id::text, state, result FROM "{schema}".results WHERE task = %s',
                                (TASK,)).fetchall()

    try:
        wait_for(lambda: len(done()) >= 3, 60, message="3 periodic jobs to run")
        assert processes.stop(worker) == 0
    except AssertionError:
        print(processes.logs())
        raise
    finished = done()
    assert {(state, result) for _, state, result in finished} == {("SUCCESS", 5)}
    assert {job_id for job_id, *_ in finished} <= {job_id for _, job_id, _ in ticks(raw_conn, schema)}
