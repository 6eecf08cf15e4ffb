"""``sqlq status`` and the workers' states, on a real PostgreSQL with real workers: a live worker is
online; a killed one reads as lost at once (its liveness lock is free), even with no live worker
left to rescue its jobs; once rescued it is listed as dead for ``worker_dead_retention``, then
forgotten. Two live workers with one name are warned about, at start and by ``sqlq status``."""

from __future__ import annotations

import logging

import psycopg
from click.testing import CliRunner

from sqlq import App
from sqlq.cli import main
from tests.apps.harness import WorkerProcess, scalar, wait_for


def _states(app: App) -> dict[str, str]:
    with app.connection() as conn:
        return {w.hostname: w.state for w in app.store.workers(conn, float(app.conf.worker_lost_timeout))}


def test_status_lists_live_workers_and_fails_without_any(app: App, run_worker):
    runner = CliRunner()
    none = runner.invoke(main, ["status"])
    assert none.exit_code == 1
    assert "no workers online" in none.output
    with run_worker(app, hostname="w1@test"), run_worker(app, hostname="w2@test"):
        wait_for(lambda: _states(app) == {"w1@test": "online", "w2@test": "online"}, message="two live workers")
        out = runner.invoke(main, ["status"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("->")) == ["->  w1@test: OK", "->  w2@test: OK"]
    assert lines[-1] == "2 nodes online."


def test_a_killed_worker_is_lost_then_dead_then_forgotten(app: App, run_worker, tmp_path,
                                                          raw_conn: psycopg.Connection, schema: str):
    runner = CliRunner()
    killed = WorkerProcess(tmp_path / "killed.log", concurrency=1, extra=("-n", "killed@test"))
    try:
        wait_for(lambda: _states(app).get("killed@test") == "online", timeout=60, message="the worker to start")
        assert runner.invoke(main, ["status"]).stdout.splitlines()[-1] == "1 node online."
        killed.kill()
        # nobody is left to rescue it, and it still never reads as live
        wait_for(lambda: _states(app).get("killed@test") == "lost", message="the killed worker to read as lost")
        status = runner.invoke(main, ["status"])
        assert status.exit_code == 1
        assert "no workers online (1 lost or dead: sqlq inspect workers)" in status.output
        assert "killed@test lost" in runner.invoke(main, ["inspect", "workers"]).stdout
    finally:
        killed.stop()
    with run_worker(app, hostname="rescuer@test"):
        wait_for(lambda: _states(app).get("killed@test") == "dead", message="the rescue to mark it dead")
        listed = runner.invoke(main, ["inspect", "workers"]).stdout
        assert any(line.startswith("killed@test dead ") and "dead since" in line for line in listed.splitlines())
        assert "->  rescuer@test: OK" in runner.invoke(main, ["status"]).stdout
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.dead_workers", schema=schema) == 1
    app.conf.update(worker_dead_retention=0, worker_maintenance_interval=0.1)
    with run_worker(app, hostname="sweeper@test"):
        wait_for(lambda: "killed@test" not in _states(app), message="the dead worker to be forgotten")


def test_two_live_workers_with_one_name_are_warned_about(app: App, run_worker, caplog):
    caplog.set_level(logging.WARNING, logger="sqlq.worker")
    with run_worker(app, hostname="same@test") as first:
        wait_for(lambda: _states(app).get("same@test") == "online", message="the first worker")
        with run_worker(app, hostname="same@test"):
            wait_for(lambda: any("another live worker is named same@test" in r.getMessage()
                                 and str(first.id) in r.getMessage() for r in caplog.records),
                     message="the second worker's warning")
            out = CliRunner().invoke(main, ["status"])
    assert out.exit_code == 0
    assert out.stdout.splitlines().count("->  same@test: OK") == 2
    assert "sqlq: warning: 2 live workers are named same@test" in out.output
