"""Paused queues (``sqlq queues pause``, ``App.pause_queue``), on a real PostgreSQL with real
workers: a pause is a row every worker reads before its next claim, so it holds for workers started
after it as for those running; a paused queue's jobs stay waiting, nothing is lost, and they run
once the queue is resumed."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner

from sqlq import App
from sqlq.cli import main
from sqlq.errors import InvalidNameError
from tests.apps.harness import WorkerProcess, job_row, wait_answering, wait_for, wait_result


def _waiting(raw_conn: psycopg.Connection, schema: str, job_id: str) -> bool:
    row = job_row(raw_conn, schema, job_id)
    return row is not None and row["state"] == "available" and row["attempt"] == 0


def test_the_cli_pauses_lists_and_resumes(app: App, schema: str):
    runner = CliRunner()
    paused = runner.invoke(main, ["queues", "pause", "reports", "mail"])
    assert paused.exit_code == 0, paused.output
    assert "queue 'reports' paused" in paused.output
    assert "queue 'mail' was already paused" in runner.invoke(main, ["queues", "pause", "mail"]).output
    listed = runner.invoke(main, ["queues", "paused"])
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["reports", "mail"]
    app.send_task("any.task", queue="reports")
    depths = runner.invoke(main, ["queues"]).stdout.splitlines()
    assert any(line.split() == ["reports", "1", "0", "0", "paused"] for line in depths)
    assert any(line.split() == ["mail", "0", "0", "0", "paused"] for line in depths)  # paused, no jobs yet
    assert "queue 'mail' resumed" in runner.invoke(main, ["queues", "resume", "mail"]).output
    assert "queue 'mail' was not paused" in runner.invoke(main, ["queues", "resume", "mail"]).output
    assert app.paused_queues() == ["reports"]


def test_names_are_validated_before_anything_is_paused(app: App, schema: str):
    runner = CliRunner()
    bad = runner.invoke(main, ["queues", "pause", "good", "no spaces; allowed"])
    assert bad.exit_code == 1
    assert "invalid queue name 'no spaces; allowed'" in bad.output
    assert app.paused_queues() == []  # not even the good one
    assert runner.invoke(main, ["queues", "resume", "x y"]).exit_code == 1
    with pytest.raises(InvalidNameError):
        app.pause_queue("x y")
    assert runner.invoke(main, ["purge", "-Q", "x y", "-f"]).exit_code == 1


def test_a_worker_started_after_the_pause_leaves_the_queue_waiting(ops_app: App, tmp_path, raw_conn, schema: str):
    from tests.apps import operations

    assert ops_app.pause_queue("slow") is True
    held = operations.add.apply_async((1, 2), queue="slow")
    worker = WorkerProcess(tmp_path / "worker.log", app_path="tests.apps.operations:app", concurrency=1,
                           extra=("-Q", "slow,fast"))
    try:
        # the worker serves both queues in each round: once a later job of the other queue has run,
        # the worker has passed the paused one over at least once
        assert operations.add.apply_async((2, 3), queue="fast").get(timeout=60) == 5
        assert _waiting(raw_conn, schema, held.id)
        wait_for(lambda: "paused queue(s), their jobs left waiting: slow" in worker.output(),
                 message="the worker's log line naming the paused queue")
        assert ops_app.resume_queue("slow") is True
        assert held.get(timeout=60) == 3
    finally:
        worker.stop()


def test_a_pause_reaches_a_running_worker_and_resume_runs_what_waited(app: App, run_worker, raw_conn, schema: str):
    @app.task(name="t.add")
    def add(x, y):
        return x + y

    with run_worker(app, queues=["a", "b"]) as worker:
        assert add.apply_async((1, 1), queue="a").get(timeout=30) == 2
        app.pause_queue("a")
        wait_for(lambda: worker._paused == {"a"}, message="the worker to hear of the pause")
        waiting = [add.apply_async((i, i), queue="a") for i in range(5)]
        assert add.apply_async((3, 3), queue="b").get(timeout=30) == 6
        assert all(_waiting(raw_conn, schema, r.id) for r in waiting)
        app.resume_queue("a")
        assert [r.get(timeout=30) for r in waiting] == [0, 2, 4, 6, 8]


def test_a_burst_worker_ends_when_only_paused_queues_have_jobs(app: App, run_worker, raw_conn, schema: str):
    @app.task(name="t.noop")
    def noop():
        return None

    app.pause_queue("default")
    job = noop.delay()
    wt = run_worker(app, burst=True)
    with wt:
        wt.thread.join(60)
        assert not wt.thread.is_alive(), "a burst worker with only paused work must end, not spin"
    assert _waiting(raw_conn, schema, job.id)
    app.resume_queue("default")
    second = run_worker(app, burst=True)
    with second as again:
        second.thread.join(60)
    assert again.processed == 1
    assert wait_result(raw_conn, schema, job.id)["state"] == "SUCCESS"


def test_a_paused_queue_added_by_add_consumer_stays_paused(app: App, run_worker, raw_conn, schema: str):
    """add_consumer of a queue paused before: the worker claims from it only once it has read the
    pauses with it, so the pause holds; resume runs what waited."""
    @app.task(name="t.mul")
    def mul(x, y):
        return x * y

    app.pause_queue("extra")
    waiting = [mul.apply_async((i, 2), queue="extra") for i in range(3)]
    with run_worker(app, pool="threads", hostname="p@test") as worker:
        wait_answering(app, "p@test")
        assert app.control.add_consumer("extra", reply=True, timeout=5) == [{"p@test": {"ok": "add consumer extra"}}]
        wait_for(lambda: worker._paused == {"extra"} and not worker._unchecked,
                 message="the worker to read the pauses with the added queue")
        assert mul.delay(3, 3).get(timeout=30) == 9  # (it claims: from default)
        assert all(_waiting(raw_conn, schema, r.id) for r in waiting)
        app.resume_queue("extra")
        assert [r.get(timeout=30) for r in waiting] == [0, 2, 4]
