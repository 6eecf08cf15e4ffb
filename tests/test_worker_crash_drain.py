"""The crash test: 5,000 jobs drained by 3 worker processes while one worker is
SIGKILLed and one prefork child is SIGKILLed. Every job must end in ``results`` exactly once, as
SUCCESS; none is lost, and none runs more than twice (once before the crash, once after)."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.apps.harness import WorkerProcess, create_runs_table, scalar, wait_for

JOBS = 5000


@pytest.fixture
def crash_settings(monkeypatch):
    """Presume a silent worker dead after 3 s (the live ones beat every 0.5 s)."""
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "3")
    monkeypatch.setenv("SQLQ_WORKER_HEARTBEAT_INTERVAL", "0.5")
    monkeypatch.setenv("SQLQ_WORKER_MAINTENANCE_INTERVAL", "0.5")


def test_crash_drain_every_job_exactly_once(basic_app, raw_conn, schema, tmp_path, crash_settings):
    from tests.apps import basic

    create_runs_table(raw_conn, schema)
    ids = {r.id for r in basic.recorded.delay_many([() for _ in range(JOBS)])}
    assert len(ids) == JOBS

    def finished() -> int:
        return scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema)

    def held_by(pid: int) -> set[str]:
        """The jobs the worker process ``pid`` has claimed and not finished (running or prefetched)."""
        query = (f'SELECT j.id::text FROM "{schema}".jobs AS j JOIN "{schema}".workers AS w '
                 f"ON w.id = j.worker_id WHERE w.pid = %s AND j.state = 'running'")
        return {r[0] for r in raw_conn.execute(query, (pid,))}

    def freeze_holding_unstarted_jobs(worker: WorkerProcess) -> set[str]:
        """SIGSTOP the worker; return the jobs it holds that no child has started (resume it and
        return nothing if there are none).

        Only those are sure to be orphaned: a statement the worker sent just before it stopped (a
        FINISH still running on the server) can only be about jobs a child already ran, and every
        run is recorded before the child reports it."""
        os.kill(worker.pid, signal.SIGSTOP)
        held = held_by(worker.pid)
        started = raw_conn.execute(f'SELECT job_id::text FROM "{schema}".runs WHERE job_id = ANY(%s::uuid[])',
                                   (list(held),))
        unstarted = held - {r[0] for r in started}
        if not unstarted:
            os.kill(worker.pid, signal.SIGCONT)
        return unstarted

    def kill_a_child(worker: WorkerProcess) -> str | None:
        """SIGKILL one prefork child; the id of the job it was running, or None if it was idle.

        The parent logs the interrupted job before it starts the replacement child, so once the
        replacement is up the log says whether a job was interrupted."""
        before = set(worker.children())
        working = f'SELECT DISTINCT pid FROM "{schema}".runs WHERE pid = ANY(%s)'  # ready: it ran jobs
        victim = wait_for(lambda: raw_conn.execute(working, (list(before),)).fetchone(),
                          message="a working child")[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: set(worker.children()) - before, message="a replacement child")
        found = re.search(rf"child process {victim} running \S+\[([0-9a-f-]+)\] died", worker.output())
        return found.group(1) if found else None

    workers = [WorkerProcess(tmp_path / f"worker{i}.log", pool="prefork", concurrency=2) for i in range(3)]
    try:
        wait_for(lambda: finished() >= JOBS // 10, timeout=60, interval=0.05, message="the drain to start")
        orphaned = wait_for(lambda: freeze_holding_unstarted_jobs(workers[0]),
                            message="worker 0 to hold prefetched jobs")
        workers[0].kill()  # SIGKILL mid-drain: its jobs come back when its heartbeat is found stale

        wait_for(lambda: finished() >= JOBS // 3, timeout=60, interval=0.05, message="the drain to go on")
        interrupted = wait_for(lambda: kill_a_child(workers[1]), message="a child killed mid-task")

        wait_for(lambda: finished() >= JOBS, timeout=90, interval=0.1,
                 message=f"all {JOBS} jobs to finish; worker logs in {tmp_path}")
        for survivor in workers[1:]:
            survivor.process.send_signal(signal.SIGTERM)
        assert [w.process.wait(60) for w in workers[1:]] == [0, 0]
    finally:
        for w in workers:
            w.stop()

    rows = raw_conn.execute(f'SELECT id::text, state, attempts FROM "{schema}".results').fetchall()
    assert len(rows) == JOBS and {r[0] for r in rows} == ids
    assert {r[1] for r in rows} == {"SUCCESS"}
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0

    runs = dict(raw_conn.execute(f'SELECT job_id::text, count(*) FROM "{schema}".runs GROUP BY 1').fetchall())
    assert set(runs) == ids  # every job ran
    assert max(runs.values()) <= 2  # the interrupted ones ran at most twice
    attempts = {r[0]: r[2] for r in rows}
    assert all(runs[job] <= attempts[job] for job in ids)  # every execution was a claimed attempt
    assert all(attempts[job] >= 2 for job in orphaned)  # the killed worker's jobs were claimed again
    assert attempts[interrupted] >= 2  # the killed child's job was handed back and ran again
