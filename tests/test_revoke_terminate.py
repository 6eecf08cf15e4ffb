"""Revoking jobs a worker holds: terminating a running one in each pool (REVOKED, "terminated by
..."), a revoke reaching a worker that does not run the job (nothing changes), a claimed job with a
revoked id (REVOKED, never run), and a worker started after the revoke still honouring it."""

from __future__ import annotations

import threading
import time

from tests.apps.harness import (
    claim_as_dead_worker,
    create_runs_table,
    runs_of,
    wait_answering,
    wait_for,
    wait_result,
)


def _running(app, name, job_id):
    wait_for(lambda: [i for i in (app.control.inspect(destination=[name], timeout=5).active() or {}).get(name, [])
                      if i["id"] == job_id], timeout=60, message=f"{job_id} running on {name}")


def test_terminate_in_the_threads_and_solo_pools(app, run_worker, raw_conn, schema):
    @app.task
    def loops():
        for _ in range(1200):
            time.sleep(0.05)
        return "finished"

    @app.task
    def after():
        return "still working"

    for pool in ("threads", "solo"):
        with run_worker(app, pool=pool, hostname=f"{pool}@test"):
            wait_answering(app, f"{pool}@test")
            job = loops.delay()
            _running(app, f"{pool}@test", job.id)
            assert app.control.revoke(job.id, terminate=True, reply=True, timeout=5) == [
                {f"{pool}@test": {"ok": f"terminate: {job.id}"}}]
            row = wait_result(raw_conn, schema, job.id)
            assert row["state"] == "REVOKED" and row["exc_type"] == "sqlq.errors.TaskRevokedError"
            assert row["exc_message"] == "terminated by SIGTERM (revoke with terminate=True)"
            assert job.state == "REVOKED"
            assert after.delay().get(timeout=30) == "still working"  # the pool thread lives on


def test_terminate_an_async_task_in_a_thread_says_it_cannot(app, run_worker, raw_conn, schema):
    import asyncio

    release = threading.Event()

    @app.task
    async def waits():
        while not release.is_set():
            await asyncio.sleep(0.02)
        return "done"

    with run_worker(app, pool="threads", hostname="as@test"):
        wait_answering(app, "as@test")
        job = waits.delay()
        _running(app, "as@test", job.id)
        [reply] = app.control.revoke(job.id, terminate=True, reply=True, timeout=5)
        assert "cannot terminate" in reply["as@test"]["error"]
        release.set()
        assert wait_result(raw_conn, schema, job.id)["state"] == "SUCCESS"


def test_terminate_in_the_prefork_pool_signals_the_child(basic_app, run_worker, raw_conn, schema):
    from tests.apps import basic

    with run_worker(basic_app, pool="prefork", concurrency=1, hostname="pf@test", app_path="tests.apps.basic:app") as w:
        wait_answering(basic_app, "pf@test")
        before = basic.pid.delay().get(timeout=60)
        job = basic.sleep.delay(60)
        _running(basic_app, "pf@test", job.id)
        started = time.monotonic()
        assert job.revoke(terminate=True) is False  # (it was running, not waiting)
        row = wait_result(raw_conn, schema, job.id, timeout=60)
        assert time.monotonic() - started < 30  # not the task's 60 s
        assert row["state"] == "REVOKED" and row["exc_message"] == "terminated by SIGTERM (revoke with terminate=True)"
        after = basic.pid.delay().get(timeout=60)
        assert after != before and w.pool.processes() == [after]  # the child was replaced

        job = basic.sleep.delay(60)
        _running(basic_app, "pf@test", job.id)
        basic_app.control.terminate(job.id, signal="SIGKILL")
        row = wait_result(raw_conn, schema, job.id, timeout=60)
        assert row["state"] == "REVOKED" and "terminated by SIGKILL" in row["exc_message"]


def test_a_revoke_reaching_a_worker_that_does_not_run_the_job_changes_nothing(app, run_worker, raw_conn, schema):
    release = threading.Event()

    @app.task
    def held():
        release.wait(30)
        return "done"

    with run_worker(app, pool="threads", hostname="runs@test"), \
            run_worker(app, pool="threads", hostname="other@test", queues=["elsewhere"]):
        wait_answering(app, "runs@test", "other@test")
        job = held.delay()
        _running(app, "runs@test", job.id)
        assert app.control.revoke(job.id, terminate=True, destination=["other@test"], reply=True, timeout=5) == [
            {"other@test": {"ok": "terminate: tasks unknown"}}]
        release.set()
        assert wait_result(raw_conn, schema, job.id)["state"] == "SUCCESS"


def test_a_reserved_job_that_is_revoked_never_runs(app, run_worker, raw_conn, schema):
    release = threading.Event()
    create_runs_table(raw_conn, schema)

    @app.task(bind=True)
    def counted(self):
        from tests.apps.basic import record_run

        record_run(self.request.id)
        release.wait(30)

    with run_worker(app, pool="threads", concurrency=1, hostname="rs@test"):
        wait_answering(app, "rs@test")
        first, second = counted.delay(), counted.delay()
        _running(app, "rs@test", first.id)
        wait_for(lambda: [i for i in app.control.inspect(timeout=5).reserved()["rs@test"] if i["id"] == second.id],
                 message="the second job reserved")
        assert app.control.revoke(second.id, reply=True, timeout=5) == [
            {"rs@test": {"ok": f"tasks {second.id} flagged as revoked"}}]
        row = wait_result(raw_conn, schema, second.id)
        assert row["state"] == "REVOKED" and row["exc_message"] == "revoked before it started"
        assert app.control.inspect(timeout=5).revoked()["rs@test"] == [second.id]
        release.set()
        assert wait_result(raw_conn, schema, first.id)["state"] == "SUCCESS"
        assert runs_of(raw_conn, schema, second.id) == 0


def test_a_worker_started_after_the_revoke_honours_it(app, run_worker, raw_conn, schema):
    """The job was claimed by a worker that died; revoked meanwhile (nobody runs it, so only the
    table holds the revoke); rescued and claimed by a worker started later: REVOKED, never run."""
    create_runs_table(raw_conn, schema)
    app.conf.worker_lost_timeout = 1.0

    @app.task(bind=True)
    def counted(self):
        from tests.apps.basic import record_run

        record_run(self.request.id)

    job = counted.delay()
    claim_as_dead_worker(app, job)
    assert app.control.revoke(job.id) is None  # no worker runs: the table keeps it
    assert job.state == "STARTED"
    with run_worker(app, pool="threads", hostname="new@test"):
        row = wait_result(raw_conn, schema, job.id, timeout=60)
        assert row["state"] == "REVOKED" and row["exc_type"] == "sqlq.errors.TaskRevokedError"
        assert job.id in app.control.inspect(timeout=5).revoked()["new@test"]
    assert runs_of(raw_conn, schema, job.id) == 0


def test_revoked_ids_expire(app, raw_conn, schema):
    app.conf.worker_revoke_expires = 0.001
    app.control.revoke(["00000000-0000-4000-8000-000000000001"])
    with app.connection() as conn:
        wait_for(lambda: not app.store.revoked_ids(conn, 10), message="the revoked id to expire")
        app.store.control_prune(conn, 60.0)
    assert raw_conn.execute(f'SELECT count(*) FROM "{schema}".revoked').fetchone()[0] == 0


def test_revoke_of_a_waiting_job_and_an_unknown_signal(app):
    import pytest

    from sqlq.errors import ConfigurationError

    @app.task
    def waiting():
        return 1

    job = waiting.delay()
    assert app.control.revoke(job.id) is None
    assert job.state == "REVOKED"
    with pytest.raises(ConfigurationError, match="not a signal name"):
        app.control.revoke(job.id, terminate=True, signal="SIGNOPE")


def test_the_worker_sends_task_revoked_for_a_terminated_job(app, run_worker, raw_conn, schema):
    from sqlq import signals

    seen = []

    def receiver(sender=None, request=None, terminated=None, signum=None, expired=None, **kwargs):
        seen.append((request.id, terminated, signum, expired))

    @app.task
    def loops():
        for _ in range(1200):
            time.sleep(0.05)

    signals.task_revoked.connect(receiver)
    try:
        with run_worker(app, pool="threads", hostname="sig@test"):
            wait_answering(app, "sig@test")
            job = loops.delay()
            _running(app, "sig@test", job.id)
            app.control.revoke(job.id, terminate=True, signal="SIGUSR1")
            assert wait_result(raw_conn, schema, job.id)["exc_message"].startswith("terminated by SIGUSR1")
            wait_for(lambda: seen, message="task_revoked")
            assert seen == [(job.id, True, 10, False)]
    finally:
        signals.task_revoked.disconnect(receiver)


def test_a_job_queued_in_a_prefork_child_that_is_revoked_never_runs(basic_app, run_worker, raw_conn, schema):
    from tests.apps import basic

    with run_worker(basic_app, pool="prefork", concurrency=1, hostname="pq@test", app_path="tests.apps.basic:app") as w:
        wait_answering(basic_app, "pq@test")
        assert basic.add.delay(1, 1).get(timeout=60) == 2  # (the child is up)
        first = basic.sleep.delay(3)
        queued = basic.add.delay(2, 2)  # sent to the child behind the sleeping job
        _running(basic_app, "pq@test", first.id)
        wait_for(lambda: any(j.id == queued.id for c in w.pool._children for j in list(c.queue)[1:]),
                 message="the second job queued in the child")
        basic_app.control.revoke(queued.id)
        row = wait_result(raw_conn, schema, queued.id, timeout=60)
        assert row["state"] == "REVOKED" and row["exc_message"] == "revoked before it started"
        assert wait_result(raw_conn, schema, first.id, timeout=60)["state"] == "SUCCESS"
