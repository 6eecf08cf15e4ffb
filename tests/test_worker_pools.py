"""The pools, async tasks in each, queue selection, burst mode,
max_tasks_per_child and the prefetch bound."""

from __future__ import annotations

import subprocess
import threading
from collections import Counter

import pytest

from sqlq.worker.worker import Worker
from tests.apps.harness import ROOT, result_row, scalar, wait_for, wait_result, worker_command


@pytest.mark.parametrize("pool", ["solo", "threads", "prefork"])
def test_every_pool_runs_sync_and_async_tasks_and_records_failures(basic_app, run_worker, raw_conn, schema, pool):
    from tests.apps import basic

    ok = basic.add.delay(2, 3)
    coro = basic.async_add.delay(4, 5)
    bad = basic.fail.delay("nope")
    with run_worker(basic_app, pool=pool, concurrency=2):
        assert ok.get(timeout=60) == 5
        assert coro.get(timeout=60) == 9
        with pytest.raises(ValueError, match="nope"):
            bad.get(timeout=60)
    row = result_row(raw_conn, schema, ok.id)
    assert row["state"] == "SUCCESS" and row["attempts"] == 1
    assert scalar(raw_conn, "SELECT pool FROM {s}.workers", schema=schema) is None  # unregistered on stop


def test_worker_consumes_only_its_queues_and_defaults_to_default(app, run_worker, raw_conn, schema):
    @app.task
    def where():
        return where.request.queue

    in_a = where.apply_async(queue="a")
    in_b = where.apply_async(queue="b")
    in_c = where.apply_async(queue="c")
    in_default = where.delay()
    with run_worker(app, queues=["a", "b"]):
        assert in_a.get(timeout=30) == "a"
        assert in_b.get(timeout=30) == "b"
    assert in_c.state == "PENDING" and in_default.state == "PENDING"
    with run_worker(app):  # no queues given: the default queue, named `default`
        assert in_default.get(timeout=30) == "default"
    assert in_c.state == "PENDING"
    assert scalar(raw_conn, "SELECT state FROM {s}.jobs WHERE id = %s", in_c.id, schema=schema) == "available"


def test_burst_runs_what_is_due_then_exits_zero(app, raw_conn, schema):
    @app.task
    def echo(x):
        return x

    now = [echo.delay(i) for i in range(5)]
    later = echo.apply_async((99,), countdown=3600)
    just_due = echo.apply_async((7,), countdown=0.2)
    wait_for(lambda: scalar(raw_conn, "SELECT run_at <= now() FROM {s}.jobs WHERE id = %s", just_due.id,
                            schema=schema), message="the countdown to pass")
    assert scalar(raw_conn, "SELECT state FROM {s}.jobs WHERE id = %s", just_due.id, schema=schema) == "scheduled"

    assert Worker(app, pool="threads", concurrency=2, burst=True).run() == 0

    assert [r.get(timeout=1) for r in now] == list(range(5))
    assert just_due.get(timeout=1) == 7  # due while scheduled: promoted and run before exiting
    assert later.state == "PENDING"
    assert scalar(raw_conn, "SELECT state FROM {s}.jobs WHERE id = %s", later.id, schema=schema) == "scheduled"


def test_burst_with_nothing_to_do_exits_zero(app):
    assert Worker(app, pool="solo", burst=True).run() == 0


def test_max_tasks_per_child_replaces_the_child(basic_app, run_worker, raw_conn, schema):
    from tests.apps import basic

    jobs = [basic.pid.delay() for _ in range(7)]
    with run_worker(basic_app, pool="prefork", concurrency=1, max_tasks_per_child=2):
        pids = [r.get(timeout=60) for r in jobs]
    per_child = Counter(pids)
    assert len(per_child) >= 4, per_child
    assert max(per_child.values()) <= 2, per_child
    # a child that retires is not handed a job it will never run: every job ran on its first attempt
    attempts = [result_row(raw_conn, schema, r.id)["attempts"] for r in jobs]
    assert attempts == [1] * len(jobs)


def test_prefetch_multiplier_bounds_claimed_but_unstarted_jobs(app, run_worker, raw_conn, schema):
    release = threading.Event()
    started = []

    @app.task
    def block(i):
        started.append(i)
        release.wait(60)
        return i

    results = [block.delay(i) for i in range(12)]
    try:
        with run_worker(app, pool="threads", concurrency=2, prefetch_multiplier=2) as worker:
            wait_for(lambda: len(started) == 2, message="both pool threads to start a job")
            held = scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE worker_id = %s", worker.id, schema=schema)
            waiting = scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE state = 'available'", schema=schema)
            assert held == 4  # 2 running + 2 prefetched (concurrency x multiplier), no more
            assert waiting == 8
            release.set()
            assert [r.get(timeout=60) for r in results] == list(range(12))
    finally:
        release.set()
    assert [wait_result(raw_conn, schema, r.id)["state"] for r in results] == ["SUCCESS"] * 12


def test_cli_burst_worker_on_queues_a_and_b(basic_app, raw_conn, schema):
    from tests.apps import basic

    jobs = {q: basic.add.apply_async((1, 2), queue=q) for q in ("a", "b", "c")}
    done = subprocess.run(worker_command(pool="solo", concurrency=1, extra=("-Q", "a,b", "--burst")),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert jobs["a"].get(timeout=1) == 3 and jobs["b"].get(timeout=1) == 3
    assert scalar(raw_conn, "SELECT queue FROM {s}.jobs", schema=schema) == "c"


def test_finish_ok_binary_arrays_round_trip(raw_conn):
    """FINISH_OK's parameters, encoded in PostgreSQL's binary array format by sqlq itself."""
    import uuid

    from sqlq.serialization import json_dumps
    from sqlq.store import Outcome
    from sqlq.store.binary import int4_array, text_array, uuid_array
    from sqlq.store.claims import _finish_ok_params

    ids = [str(uuid.uuid4()) for _ in range(300)]
    attempts = [(i * 7919) % 100_000 - 3 for i in range(300)]
    values = [json_dumps(v) for v in ['a"b', "back\\slash", "x,y}{", "NULL", "", None, {"k": [1, '\\"', "é"]},
                                      "line\nbreak", 2 ** 70, 1.5, True, [], {}, "日本"]] + [None]
    got = raw_conn.execute("SELECT %s::uuid[]::text[], %s::int[], %s::text[]",
                           [uuid_array(ids), int4_array(attempts), text_array(values)]).fetchone()
    assert got == (ids, attempts, values)
    assert raw_conn.execute("SELECT %s::text[]", [text_array(["null", "null"])]).fetchone()[0] == ["null", "null"]
    with pytest.raises(ValueError):
        uuid_array(["order-17"])
    # an id that is not a uuid: no binary parameters, so FINISH runs and the server reports it
    assert _finish_ok_params(raw_conn, "w", [Outcome(id="order-17", attempt=1, state="SUCCESS")]) is None
