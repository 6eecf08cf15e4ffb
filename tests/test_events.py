"""The events stream (sqlq.events) against real workers: a worker with task events on (-E, or
worker_send_task_events) writes Celery's task and worker events, in order and with Celery's
fields; off by default it writes none; maintenance deletes old ones; producers write task-sent
with task_send_sent_event; `sqlq events --dump/--json` and app.events receivers read them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.apps.harness import WorkerProcess, scalar, wait_answering, wait_for, wait_result
from tests.test_cli import ROOT, run_cli


def _events(conn: psycopg.Connection, schema: str, job_id: str | None = None) -> list[dict]:
    """This schema's events (of one job), in the stream's order, as a receiver gives them."""
    from sqlq.events import expand
    from sqlq.store import Store

    store, events, after = Store(schema), [], 0
    while rows := store.events_after(conn, after):
        events += [e for row in rows for e in expand(row)]
        after = rows[-1].id
    return [e for e in events if job_id is None or e.get("uuid") == job_id]


def _types(conn: psycopg.Connection, schema: str, job_id: str) -> list[str]:
    return [e["type"] for e in _events(conn, schema, job_id)]


def test_a_job_run_by_a_worker_process_with_minus_e(basic_app, raw_conn, schema, tmp_path):
    from tests.apps import basic

    worker = WorkerProcess(tmp_path / "worker.log", pool="prefork", concurrency=1,
                           extra=("-E", "-n", "events@test"))
    try:
        job = basic.add.delay(2, 3)
        assert job.get(timeout=60) == 5
        wait_for(lambda: "task-succeeded" in _types(raw_conn, schema, job.id), message="task-succeeded")
        received, started, succeeded = _events(raw_conn, schema, job.id)
        assert [received["type"], started["type"], succeeded["type"]] == [
            "task-received", "task-started", "task-succeeded"]
        for event in (received, started, succeeded):
            assert event["uuid"] == job.id and event["name"] == "tests.apps.basic.add"
            assert event["hostname"] == "events@test"
        assert received["args"] == [2, 3] and received["kwargs"] == {} and received["retries"] == 0
        assert received["timestamp"] <= started["timestamp"] <= succeeded["timestamp"]
        assert succeeded["result"] == 5  # the JSON result itself (Celery: its repr)
        assert 0 <= succeeded["runtime"] < 30
        assert started["pid"] > 0
        # the worker's own: online at start, heartbeats (every 5 s by default) come later
        assert [e["type"] for e in _events(raw_conn, schema) if e["type"].startswith("worker-")][0] == "worker-online"
    finally:
        worker.stop()


def test_failure_retry_and_worker_events(basic_app, run_worker, raw_conn, schema):
    from tests.apps import basic

    basic_app.conf.worker_heartbeat_interval = 0.2
    try:
        with run_worker(basic_app, pool="threads", hostname="ev@test", task_events=True):
            failed = basic.fail.delay("kaput")
            retried = basic.flaky.delay(1)
            with pytest.raises(ValueError):
                failed.get(timeout=30)
            assert retried.get(timeout=30) == 1
            wait_for(lambda: "task-succeeded" in _types(raw_conn, schema, retried.id), message="retry's success")
            wait_for(lambda: "worker-heartbeat" in [e["type"] for e in _events(raw_conn, schema)],
                     message="a heartbeat event")
    finally:
        basic_app.conf.worker_heartbeat_interval = 5.0

    assert _types(raw_conn, schema, failed.id) == ["task-received", "task-started", "task-failed"]
    failure = _events(raw_conn, schema, failed.id)[-1]
    assert failure["exception"] == "ValueError('kaput')"
    assert "Traceback (most recent call last)" in failure["traceback"]
    assert "ValueError: kaput" in failure["traceback"]

    assert _types(raw_conn, schema, retried.id) == [
        "task-received", "task-retried", "task-received", "task-started", "task-succeeded"]
    retry = _events(raw_conn, schema, retried.id)[1]
    assert retry["retries"] == 1 and "Traceback" in retry["traceback"] and retry["exception"]

    workers = [e for e in _events(raw_conn, schema) if e["type"].startswith("worker-")]
    kinds = [e["type"] for e in workers]
    assert kinds[0] == "worker-online" and kinds[-1] == "worker-offline" and "worker-heartbeat" in kinds
    assert all(e["hostname"] == "ev@test" and e["freq"] == 0.2 and e["sw_ident"] == "sqlq" for e in workers)
    assert workers[-1]["processed"] >= 3


def test_a_terminated_job_sends_task_revoked(app, run_worker, raw_conn, schema):
    started = threading.Event()

    @app.task
    def loops():
        started.set()
        for _ in range(1200):
            time.sleep(0.05)

    with run_worker(app, pool="threads", hostname="rv@test", task_events=True):
        wait_answering(app, "rv@test")
        job = loops.delay()
        assert started.wait(30)
        app.control.revoke(job.id, terminate=True, reply=True, timeout=5)
        assert wait_result(raw_conn, schema, job.id)["state"] == "REVOKED"
        wait_for(lambda: "task-revoked" in _types(raw_conn, schema, job.id), message="task-revoked")
    revoked = _events(raw_conn, schema, job.id)[-1]
    assert revoked["type"] == "task-revoked" and revoked["terminated"] is True and revoked["expired"] is False


def test_off_by_default_and_per_task_opt_out(app, run_worker, raw_conn, schema):
    @app.task
    def plain():
        return 1

    @app.task(send_events=False)
    def quiet():
        return 2

    with run_worker(app, pool="threads"):
        assert plain.delay().get(timeout=30) == 1
    assert scalar(raw_conn, f'SELECT count(*) FROM "{schema}".events') == 0

    with run_worker(app, pool="threads", task_events=True):
        loud = plain.delay()
        hushed = quiet.delay()
        assert loud.get(timeout=30) == 1 and hushed.get(timeout=30) == 2
        wait_for(lambda: "task-succeeded" in _types(raw_conn, schema, loud.id), message="plain's events")
    assert _types(raw_conn, schema, hushed.id) == []

    from sqlq.errors import TaskDefinitionError

    def chatty():
        return 3

    with pytest.raises(TaskDefinitionError, match="send_events= of task .* must be True or False"):
        app.task(send_events="no")(chatty)


def test_the_setting_turns_them_on(app, run_worker, raw_conn, schema):
    @app.task
    def noop():
        return None

    app.conf.worker_send_task_events = True
    with run_worker(app, pool="threads"):
        job = noop.delay()
        job.get(timeout=30)
        wait_for(lambda: "task-succeeded" in _types(raw_conn, schema, job.id), message="events")


def test_retention_deletes_old_events(app, run_worker, raw_conn, schema):
    raw_conn.execute(f"""INSERT INTO "{schema}".events (type, hostname, time)
                         SELECT 'worker-heartbeat', 'old@test', now() - interval '2 hours' FROM generate_series(1, 50)""")
    raw_conn.execute(f"""INSERT INTO "{schema}".events (type, hostname) VALUES ('worker-heartbeat', 'new@test')""")
    app.conf.events_retention = 3600
    app.conf.worker_maintenance_interval = 0.2
    with run_worker(app, pool="threads"):
        wait_for(lambda: scalar(raw_conn, f"""SELECT count(*) FROM "{schema}".events
                                             WHERE hostname = 'old@test'""") == 0, message="old events deleted")
    assert scalar(raw_conn, f"""SELECT count(*) FROM "{schema}".events WHERE hostname = 'new@test'""") == 1


def test_task_sent_in_the_enqueue_transaction(app, raw_conn, schema, database_url):
    @app.task
    def noop(x):
        return x

    one = noop.delay(1)
    assert _types(raw_conn, schema, one.id) == []  # off by default

    app.conf.task_send_sent_event = True
    one = noop.delay(1)
    many = noop.apply_many([((i,), {}) for i in range(300)])  # a bulk: one statement for its events
    sent = _events(raw_conn, schema, one.id)
    assert [e["type"] for e in sent] == ["task-sent"] and sent[0]["args"] == [1] and sent[0]["queue"] == "default"
    ids = {r.id for r in many}
    assert len([e for e in _events(raw_conn, schema) if e["type"] == "task-sent" and e["uuid"] in ids]) == 300
    assert scalar(raw_conn, f'SELECT count(*) FROM "{schema}".events') == 2  # a row per enqueue statement

    with psycopg.connect(database_url) as conn:  # the caller's transaction, rolled back: no job, no event
        gone = noop.apply_async((2,), connection=conn)
        conn.rollback()
    assert _types(raw_conn, schema, gone.id) == []


def _seed(app, raw_conn, schema) -> None:
    raw_conn.execute(f"""INSERT INTO "{schema}".events (type, task_id, name, hostname, fields) VALUES
        ('task-received', '00000000-0000-4000-8000-000000000001', 'proj.add', 'w1@test', '{{"args": [1, 2]}}'),
        ('task-succeeded', '00000000-0000-4000-8000-000000000001', 'proj.add', 'w1@test',
         '{{"runtime": 0.25, "result": "3"}}'),
        ('task-failed', '00000000-0000-4000-8000-000000000002', 'proj.div', 'w1@test',
         '{{"exception": "ZeroDivisionError()", "traceback": "Traceback ...\\nZeroDivisionError"}}')""")


def test_sqlq_events_dump_and_json(app, raw_conn, schema):
    _seed(app, raw_conn, schema)
    dump = run_cli("events", "--dump", "--since", "1h", "--limit", "3", timeout=60)
    assert dump.returncode == 0, dump.stderr
    lines = dump.stdout.splitlines()
    assert len(lines) == 3
    assert lines[1].split(" ", 2)[2] == ("task-succeeded uuid=00000000-0000-4000-8000-000000000001 name=proj.add "
                                        "result=3 runtime=0.25 hostname=w1@test")
    assert lines[2].endswith('traceback="Traceback ...\\nZeroDivisionError" hostname=w1@test')

    js = run_cli("events", "--json", "--since", "1h", "--type", "task-failed", "--limit", "1", timeout=60)
    assert js.returncode == 0, js.stderr
    event = json.loads(js.stdout)
    assert event["type"] == "task-failed" and event["name"] == "proj.div" and event["exception"] == "ZeroDivisionError()"

    table = run_cli("events", "--since", "1h", "--timeout", "1", timeout=60)  # not a tty: summary lines
    assert table.returncode == 0, table.stderr
    assert "success=1 failure=1" in table.stdout.splitlines()[-1]

    bad = run_cli("events", "--type", "task-exploded", "--limit", "1", timeout=60)
    assert bad.returncode == 1 and "unknown event type(s) task-exploded" in bad.stderr


def test_receiver_capture_with_limit_and_celery_spelling(app, raw_conn, schema):
    _seed(app, raw_conn, schema)
    seen: list[dict] = []
    failures: list[dict] = []
    receiver = app.events.receiver(handlers={"task-failed": failures.append, "*": seen.append}, since=3600)
    assert receiver.capture(limit=2) == 2
    assert [e["type"] for e in seen] == ["task-received", "task-succeeded"] and failures == []
    assert receiver.capture(limit=1) == 1  # goes on after the last one it handled
    assert failures[0]["uuid"] == "00000000-0000-4000-8000-000000000002"

    state = app.events.State()
    with app.connection() as conn:
        recv = app.events.Receiver(conn, handlers={"*": state.event}, since=3600)
        assert recv.capture(limit=None, timeout=0.5, wakeup=True) == 3
    assert state.counts["SUCCESS"] == 1 and state.counts["FAILURE"] == 1 and state.counts["RECEIVED"] == 0
    assert state.tasks["00000000-0000-4000-8000-000000000001"]["runtime"] == 0.25


def test_a_live_receiver_wakes_on_the_notify(app, run_worker, raw_conn, schema):
    @app.task
    def noop():
        return None

    got: list[dict] = []
    receiver = app.events.receiver(handlers={"task-succeeded": got.append}, types=["task-succeeded"])
    reader = threading.Thread(target=receiver.capture, kwargs={"limit": 1, "timeout": 60}, daemon=True)
    reader.start()
    wait_for(lambda: receiver.last_id is not None, message="the receiver started")
    with run_worker(app, pool="threads", task_events=True):
        job = noop.delay()
        reader.join(60)
    assert [e["uuid"] for e in got] == [job.id]


def _events_process(tmp_path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "events.out"
    proc = subprocess.Popen([sys.executable, "-m", "sqlq", "events", *args], cwd=ROOT, stdout=open(out, "wb"),  # noqa: SIM115
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                            stdin=subprocess.DEVNULL)
    return proc, out


def test_sqlq_events_exits_cleanly_on_ctrl_c(app, raw_conn, schema, tmp_path):
    _seed(app, raw_conn, schema)
    proc, out = _events_process(tmp_path, "--since", "1h")
    try:
        wait_for(lambda: "success=1" in out.read_text(), message="the first summary line")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sqlq_events_rides_out_a_database_outage(tmp_path):
    from sqlq import App
    from tests.cluster import PrivateCluster

    with PrivateCluster() as cluster:
        outage_app = App("events-outage", database_url=cluster.url, schema="evo")
        outage_app.migrate()
        outage_app.close()

        def insert(host: str) -> None:
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                conn.execute("INSERT INTO evo.events (type, hostname) VALUES ('worker-heartbeat', %s)", [host])

        proc, out = _events_process(tmp_path, "--dump", "--limit", "2",
                                    env={"SQLQ_DATABASE_URL": cluster.url, "SQLQ_SCHEMA": "evo"})
        try:
            wait_for(lambda: proc.poll() is None and _started(cluster.url), message="the tail is listening")
            insert("before@test")
            wait_for(lambda: "hostname=before@test" in out.read_text(), message="the first event")
            cluster.stop()
            cluster.start()
            cluster.wait_ready()
            insert("after@test")
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            lines = out.read_text().splitlines()
            assert [line.rsplit("=", 1)[1] for line in lines] == ["before@test", "after@test"]
            assert "lost the database" in err and "is back" in err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _started(url: str) -> bool:
    """Whether the tail has read the stream once (so it took its starting point): its session's
    last statement is EVENTS_AFTER (the private cluster has no other client)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return bool(conn.execute("""SELECT count(*) FROM pg_stat_activity
                                    WHERE query LIKE '%%"events"%%ORDER BY id%%' AND pid <> pg_backend_pid()"""
                                 ).fetchone()[0])


def test_task_sent_from_the_async_api(app, raw_conn, schema):
    import asyncio

    @app.task
    def noop(x):
        return x

    app.conf.task_send_sent_event = True
    sent = asyncio.run(noop.adelay(7))
    assert [(e["type"], e["args"]) for e in _events(raw_conn, schema, sent.id)] == [("task-sent", [7])]
