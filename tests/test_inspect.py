"""`app.control.inspect()` against real workers: every inspect command's reply, in Celery's
shapes, destination filtering, a dead worker and no worker at all, and how fast an idle or a busy
worker answers (its LISTEN connection wakes its control thread)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.apps.harness import wait_answering, wait_for, wait_result


def test_every_inspect_command_answers_in_celerys_shape(app, run_worker, raw_conn, schema):
    gate = threading.Event()

    @app.task(rate_limit="100/m")
    def blocked(n):
        gate.wait(30)
        return n

    @app.task
    def quick():
        return "done"

    with run_worker(app, pool="threads", concurrency=1, prefetch_multiplier=4, hostname="w1@test") as w:
        try:
            wait_answering(app, "w1@test")
            done = quick.delay()
            wait_result(raw_conn, schema, done.id)
            running, waiting = blocked.delay(1), blocked.delay(2)
            later = quick.apply_async(countdown=3600)
            inspect = app.control.inspect(timeout=5)

            active = wait_for(lambda: (a := inspect.active()) and a["w1@test"] and a, message="an active job")
            [info] = active["w1@test"]
            assert info["id"] == running.id and info["name"] == blocked.name and info["args"] == [1]
            assert info["hostname"] == "w1@test" and info["time_start"] > 0 and info["acknowledged"] is True
            assert info["delivery_info"]["routing_key"] == "default"

            reserved = wait_for(lambda: (r := inspect.reserved()) and r["w1@test"] and r, message="a reserved job")
            assert [i["id"] for i in reserved["w1@test"]] == [waiting.id]

            scheduled = inspect.scheduled()["w1@test"]
            assert [(s["request"]["id"], s["request"]["name"]) for s in scheduled] == [(later.id, quick.name)]
            assert scheduled[0]["eta"] and "priority" in scheduled[0]

            assert inspect.registered() == {"w1@test": sorted([blocked.name, quick.name])}
            assert inspect.registered("rate_limit")["w1@test"] == [f"{blocked.name} [rate_limit=100/m]", quick.name]

            query = inspect.query_task(running.id, waiting.id, str(uuid.uuid4()))["w1@test"]
            assert query[running.id][0] == "active" and query[waiting.id][0] == "reserved"
            assert query[running.id][1]["id"] == running.id

            stats = inspect.stats()["w1@test"]
            assert stats["total"] == {quick.name: 1}
            assert stats["pool"]["max-concurrency"] == 1 and stats["pool"]["implementation"] == "threads"
            assert stats["prefetch_count"] == 4 and stats["worker_id"] == w.id and stats["pid"] > 0
            assert stats["broker"]["transport"] == "postgresql" and "rusage" in stats

            [queue] = inspect.active_queues()["w1@test"]
            assert queue["name"] == "default" and queue["routing_key"] == "default"

            assert inspect.revoked() == {"w1@test": []}
            conf = inspect.conf()["w1@test"]
            assert conf["schema"] == schema
            assert inspect.conf(with_defaults=True)["w1@test"]["worker_prefetch_multiplier"] == 4
        finally:
            gate.set()  # (before the worker's warm shutdown, which waits for its jobs)


def test_conf_masks_the_database_password(schema, database_url, run_worker):
    from sqlq import App

    secret_url = database_url.replace("postgres@", "postgres:hunter2@", 1)
    assert "hunter2" in secret_url
    app = App("masked", schema=schema)
    app.conf.database_url = secret_url  # (trust authentication: the password is not checked)
    app.migrate()
    try:
        with run_worker(app, pool="threads", hostname="masked@test"):
            conf = wait_for(lambda: app.control.inspect(timeout=1).conf(), message="a conf reply")["masked@test"]
            assert "hunter2" not in str(conf) and ":**@" in conf["database_url"]
    finally:
        app.close()


def test_destination_filters_by_hostname_and_by_worker_id(app, run_worker):
    with run_worker(app, pool="threads", hostname="a@test") as a, run_worker(app, pool="threads", hostname="b@test"):
        wait_answering(app, "a@test", "b@test")
        assert set(app.control.inspect(destination=["a@test"], timeout=5).ping()) == {"a@test"}
        assert set(app.control.inspect(destination="b@test", timeout=5).ping()) == {"b@test"}
        assert set(app.control.inspect(destination=[a.id], timeout=5).ping()) == {"a@test"}
        assert app.control.ping(destination=["b@test"], timeout=5) == [{"b@test": {"ok": "pong"}}]
        assert app.control.inspect(destination=["nobody@test"], timeout=0.3).ping() is None


def test_no_worker_means_no_reply_after_the_timeout(app):
    started = time.monotonic()
    assert app.control.inspect(timeout=0.3).ping() is None
    assert app.control.ping(timeout=0.3) == []
    assert time.monotonic() - started >= 0.6


def test_a_dead_worker_does_not_answer_and_the_live_ones_do(app, run_worker):
    """Three workers: one busy, one idle, one dead (its row stays until it is found dead)."""
    gate = threading.Event()

    @app.task
    def hold():
        gate.wait(30)

    dead = str(uuid.uuid4())
    with app.connection() as conn:
        app.store.register_worker(conn, id=dead, hostname="dead@test", pid=1, queues=["nothing"], concurrency=1,
                                  pool="threads")
    with run_worker(app, pool="threads", concurrency=1, hostname="busy@test"), \
            run_worker(app, pool="threads", concurrency=1, hostname="idle@test", queues=["other"]):
        try:
            wait_answering(app, "busy@test", "idle@test")
            job = hold.delay()
            wait_for(lambda: (a := app.control.inspect(destination=["busy@test"], timeout=5).active())
                     and a["busy@test"], message="the busy worker's job")
            started = time.monotonic()
            replies = app.control.inspect(timeout=1.0).ping()
            # the dead worker is expected (its heartbeat is recent), so the sender waits the timeout
            assert set(replies) == {"busy@test", "idle@test"}
            assert time.monotonic() - started >= 1.0
            active = app.control.inspect(timeout=1.0).active()
            assert [i["id"] for i in active["busy@test"]] == [job.id] and active["idle@test"] == []
        finally:
            gate.set()


def test_an_idle_worker_answers_at_once_and_a_busy_one_without_waiting_for_its_jobs(app, run_worker):
    """Woken by NOTIFY, not by the control thread's one-second poll; the sender stops as soon as
    every live worker has answered instead of waiting out its timeout."""
    gate = threading.Event()

    @app.task
    def hold():
        gate.wait(60)

    with run_worker(app, pool="threads", concurrency=2, hostname="lat@test"):
        try:
            wait_answering(app, "lat@test")
            idle = []
            for _ in range(5):
                started = time.monotonic()
                assert app.control.inspect(timeout=30).ping() == {"lat@test": {"ok": "pong"}}
                idle.append(time.monotonic() - started)
            hold.delay(), hold.delay(), hold.delay()
            wait_for(lambda: len((app.control.inspect(timeout=5).active() or {}).get("lat@test", [])) == 2,
                     message="both threads busy")
            busy = []
            for _ in range(5):
                started = time.monotonic()
                assert app.control.inspect(timeout=30).ping() == {"lat@test": {"ok": "pong"}}
                busy.append(time.monotonic() - started)
            # well under the poll interval (1 s) even on a loaded machine: the median of five
            assert sorted(idle)[2] < 0.5, idle
            assert sorted(busy)[2] < 0.5, busy
        finally:
            gate.set()


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_inspect_in_solo_and_prefork_workers(basic_app, run_worker, raw_conn, schema, pool):
    from tests.apps import basic

    with run_worker(basic_app, pool=pool, concurrency=2, hostname=f"{pool}@test", app_path="tests.apps.basic:app"):
        wait_answering(basic_app, f"{pool}@test")
        seconds = 30 if pool == "prefork" else 2  # (a solo worker's job runs to its end: see below)
        job = basic.sleep.delay(seconds)
        active = wait_for(lambda: (a := basic_app.control.inspect(timeout=5).active()) and a[f"{pool}@test"] and a,
                          timeout=60, message="the sleeping job")
        [info] = active[f"{pool}@test"]
        assert info["id"] == job.id and info["args"] == [seconds]
        stats = basic_app.control.inspect(timeout=5).stats()[f"{pool}@test"]
        if pool == "prefork":
            assert info["worker_pid"] in stats["pool"]["processes"] and len(stats["pool"]["processes"]) == 2
        else:
            assert info["worker_pid"] == stats["pid"]
        if pool == "prefork":  # (terminating: tests/test_revoke_terminate.py)
            basic_app.control.revoke(job.id, terminate=True)
            assert wait_result(raw_conn, schema, job.id, timeout=60)["state"] == "REVOKED"
