"""`app.control`'s commands against real workers: each one's effect and reply, what a pool cannot
do (an error that says so), bad commands, and the rows the channel leaves behind."""

from __future__ import annotations

import time

import pytest

from sqlq.errors import ConfigurationError
from tests.apps.harness import result_row, scalar, wait_answering, wait_for, wait_result


def test_shutdown_stops_the_worker_after_replying(app, run_worker):
    wt = run_worker(app, pool="threads", hostname="bye@test")
    with wt:
        wait_answering(app, "bye@test")
        assert app.control.shutdown(reply=True, timeout=5) == [{"bye@test": {"ok": "shutting down"}}]
        wt.thread.join(30)
        assert not wt.thread.is_alive()
    assert app.control.ping(timeout=0.3) == []


def test_shutdown_without_reply_and_by_destination(app, run_worker):
    keep, stop = run_worker(app, pool="threads", hostname="keep@test"), run_worker(app, pool="threads",
                                                                                    hostname="stop@test")
    with keep, stop:
        wait_answering(app, "keep@test", "stop@test")
        assert app.control.shutdown(destination=["stop@test"]) is None
        stop.thread.join(30)
        assert not stop.thread.is_alive() and keep.thread.is_alive()


def test_rate_limit_is_written_once_and_read_by_every_worker_at_once(app, run_worker, raw_conn, schema):
    @app.task
    def limited():
        return 1

    with run_worker(app, pool="threads", hostname="r1@test") as w:
        wait_answering(app, "r1@test")
        assert app.control.rate_limit(limited.name, "10/m", reply=True, timeout=5) == [
            {"r1@test": {"ok": "new rate limit set successfully"}}]
        assert scalar(raw_conn, "SELECT rate FROM {s}.rate_limits WHERE task = %s", limited.name,
                      schema=schema) == pytest.approx(10 / 60)
        assert w._limited == (limited.name,)  # read at the command, not a second later
        assert app.control.rate_limit(limited.name, None, reply=True, timeout=5) == [
            {"r1@test": {"ok": "rate limit disabled successfully"}}]
        assert w._limited == ()
        assert app.control.rate_limit("no.such.task", "1/s", reply=True, timeout=5) == [
            {"r1@test": {"error": "unknown task"}}]
        with pytest.raises(ConfigurationError, match="shared by every worker"):
            app.control.rate_limit(limited.name, "1/s", destination=["r1@test"])
        with pytest.raises(ConfigurationError, match="not a rate"):
            app.control.rate_limit(limited.name, "fast")


def test_time_limit_changes_the_limits_of_the_next_jobs(app, run_worker, raw_conn, schema):
    @app.task
    def loops():
        for _ in range(400):
            time.sleep(0.05)
        return "finished"

    with run_worker(app, pool="threads", hostname="t1@test"):
        wait_answering(app, "t1@test")
        assert app.control.time_limit(loops.name, soft=0.3, reply=True, timeout=5) == [
            {"t1@test": {"ok": "time limits set successfully"}}]
        row = wait_result(raw_conn, schema, loops.delay().id)
        assert row["state"] == "FAILURE" and row["exc_type"] == "sqlq.errors.SoftTimeLimitExceeded"
        assert app.control.time_limit("no.such", 1, reply=True, timeout=5) == [{"t1@test": {"error": "unknown task"}}]


def test_time_limit_reaches_prefork_children(basic_app, run_worker, raw_conn, schema):
    from tests.apps import basic

    with run_worker(basic_app, pool="prefork", concurrency=1, hostname="tp@test", app_path="tests.apps.basic:app"):
        wait_answering(basic_app, "tp@test")
        assert basic.sleep.delay(0).get(timeout=60) == 0  # (the child is up)
        assert basic_app.control.time_limit(basic.sleep.name, soft=0.3, reply=True, timeout=5) == [
            {"tp@test": {"ok": "time limits set successfully"}}]
        row = wait_result(raw_conn, schema, basic.sleep.delay(20).id, timeout=60)
        assert row["state"] == "FAILURE" and row["exc_type"] == "sqlq.errors.SoftTimeLimitExceeded"


def test_pool_grow_and_shrink_in_threads(app, run_worker):
    with run_worker(app, pool="threads", concurrency=2, hostname="g@test") as w:
        wait_answering(app, "g@test")
        assert app.control.pool_grow(3, reply=True, timeout=5) == [{"g@test": {"ok": "pool will grow"}}]
        assert w.concurrency == 5 and w.capacity == 5 * w.prefetch_multiplier
        assert len([t for t in w.pool._threads if t.is_alive()]) == 5
        assert app.control.pool_shrink(4, reply=True, timeout=5) == [{"g@test": {"ok": "pool will shrink"}}]
        wait_for(lambda: len([t for t in w.pool._threads if t.is_alive()]) == 1, message="four threads retired")
        [reply] = app.control.pool_shrink(1, reply=True, timeout=5)
        assert "cannot shrink" in reply["g@test"]["error"]
        stats = app.control.inspect(timeout=5).stats()["g@test"]
        assert stats["pool"]["max-concurrency"] == 1


def test_pool_grow_and_shrink_in_prefork(basic_app, run_worker):
    from tests.apps import basic

    with run_worker(basic_app, pool="prefork", concurrency=1, hostname="gp@test", app_path="tests.apps.basic:app") as w:
        wait_answering(basic_app, "gp@test")
        assert basic_app.control.pool_grow(1, reply=True, timeout=5) == [{"gp@test": {"ok": "pool will grow"}}]
        wait_for(lambda: len(w.pool.processes()) == 2, message="a second child")
        pids = set(w.pool.processes())
        assert {basic.pid.delay().get(timeout=60) for _ in range(10)} <= pids
        assert basic_app.control.pool_shrink(1, reply=True, timeout=5) == [{"gp@test": {"ok": "pool will shrink"}}]
        wait_for(lambda: len(w.pool.processes()) == 1, message="one child retired")
        assert basic.pid.delay().get(timeout=60) in pids


def test_what_the_solo_pool_cannot_do_is_an_error(app, run_worker):
    with run_worker(app, pool="solo", hostname="s@test"):
        wait_answering(app, "s@test")
        for reply in (app.control.pool_grow(1, reply=True, timeout=5), app.control.pool_shrink(1, reply=True, timeout=5)):
            [answer] = reply
            assert "solo pool has a fixed size" in answer["s@test"]["error"]


def test_add_and_cancel_consumer(app, run_worker, raw_conn, schema):
    @app.task
    def hello():
        return "hi"

    with run_worker(app, pool="threads", hostname="c@test") as w:
        wait_answering(app, "c@test")
        job = hello.apply_async(queue="extra")
        assert app.control.add_consumer("extra", reply=True, timeout=5) == [{"c@test": {"ok": "add consumer extra"}}]
        assert wait_result(raw_conn, schema, job.id)["state"] == "SUCCESS"
        assert app.control.add_consumer("extra", reply=True, timeout=5) == [
            {"c@test": {"ok": "already consuming from extra"}}]
        assert scalar(raw_conn, "SELECT queues FROM {s}.workers WHERE id = %s", w.id, schema=schema) == [
            "default", "extra"]
        assert app.control.inspect(timeout=5).active_queues()["c@test"][1]["name"] == "extra"
        assert app.control.cancel_consumer("default", reply=True, timeout=5) == [
            {"c@test": {"ok": "no longer consuming from default"}}]
        stays = hello.delay()
        [last] = app.control.cancel_consumer("extra", reply=True, timeout=5)
        assert "only queue" in last["c@test"]["error"]
        [bad] = app.control.add_consumer("bad queue!", reply=True, timeout=5)
        assert "error" in bad["c@test"]
        with pytest.raises(ConfigurationError, match="queue name only"):
            app.control.add_consumer("q", exchange="ex")
        assert w.queues == ["extra"]
        assert result_row(raw_conn, schema, stays.id) is None  # (default: nobody consumes it now)


def test_bad_commands_get_error_replies_and_the_worker_goes_on(app, run_worker):
    with run_worker(app, pool="threads", hostname="e@test"):
        wait_answering(app, "e@test")
        assert app.control.broadcast("explode", reply=True, timeout=5) == [
            {"e@test": {"error": "No such control command: explode"}}]
        [answer] = app.control.broadcast("pool_grow", {"n": "many"}, reply=True, timeout=5)
        assert "whole number" in answer["e@test"]["error"]
        [answer] = app.control.broadcast("ping", {"unexpected": 1}, reply=True, timeout=5)
        assert "unexpected" in answer["e@test"]["error"]
        assert app.control.ping(timeout=5) == [{"e@test": {"ok": "pong"}}]
        with pytest.raises(ConfigurationError, match="not a broker"):
            app.control.inspect(connection=object())


def test_maintenance_prunes_old_commands_with_their_replies(app, run_worker, raw_conn, schema):
    with run_worker(app, pool="threads", hostname="m@test"):
        wait_answering(app, "m@test")
        assert scalar(raw_conn, "SELECT count(*) FROM {s}.control_replies", schema=schema) > 0
        raw_conn.execute(f'UPDATE "{schema}".control SET expires_at = now() - interval \'1 hour\'')
        with app.connection() as conn:
            app.store.control_prune(conn, 60.0)
        assert scalar(raw_conn, "SELECT count(*) FROM {s}.control", schema=schema) == 0
        assert scalar(raw_conn, "SELECT count(*) FROM {s}.control_replies", schema=schema) == 0


def test_a_worker_ignores_commands_sent_before_it_started(app, run_worker):
    app.control.shutdown()  # nobody listens: must not stop a worker started later
    with run_worker(app, pool="threads", hostname="late@test") as w:
        wait_answering(app, "late@test")
        assert w._stop_mode is None


def test_a_callback_sees_each_reply_and_limit_ends_the_wait(app, run_worker):
    seen = []
    with run_worker(app, pool="threads", hostname="cb1@test"), run_worker(app, pool="threads", hostname="cb2@test"):
        wait_answering(app, "cb1@test", "cb2@test")
        replies = app.control.broadcast("ping", reply=True, timeout=5, callback=seen.append)
        assert sorted(seen, key=str) == sorted(replies, key=str) and len(replies) == 2
        assert len(app.control.broadcast("ping", reply=True, timeout=30, limit=1)) == 1


def test_remote_control_can_be_disabled_as_in_celery(app, run_worker):
    app.conf.worker_enable_remote_control = False
    with run_worker(app, pool="threads", hostname="deaf@test") as w:
        wait_for(lambda: w.control._since is not None, message="the worker to start")
        assert app.control.inspect(timeout=1.5).ping() is None
        assert app.control.shutdown(reply=True, timeout=0.5) == [] and w._stop_mode is None
