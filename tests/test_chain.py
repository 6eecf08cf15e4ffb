"""Chains on a real database with real workers: each step enqueued by the database (the results
trigger) in the transaction that records the previous step's SUCCESS, results handed on as the
first argument (not to immutable steps), a failing step stopping the chain with every later step
recorded as FAILURE carrying its error, the chain's result walking back through ``.parent``, the
forms Celery writes (``|``, chain of chains, sig | chain), refusals at send time, and a chain of 50
steps surviving a worker killed mid-chain."""

from __future__ import annotations

import json

import pytest

from sqlq import chain, signature
from sqlq.errors import ConfigurationError
from tests.apps.harness import WorkerProcess, create_runs_table, result_row, scalar, wait_for

TIMEOUT = 30


@pytest.fixture
def tasks(app):
    @app.task(name="proj.add")
    def add(x, y=0):
        return x + y

    @app.task(name="proj.mul")
    def mul(x, y):
        return x * y

    @app.task(name="proj.boom")
    def boom(*args):
        raise ValueError(f"bad {list(args)}")

    @app.task(name="proj.pickled", serializer="pickle")
    def pickled(x):
        return x

    @app.task(name="proj.quiet", ignore_result=True)
    def quiet(x):
        return x

    return add, mul, boom, pickled, quiet


def test_a_chain_hands_each_result_to_the_next_step(app, run_worker, tasks, raw_conn, schema):
    add, mul, *_ = tasks
    with run_worker(app):
        result = chain(add.s(2, 2), add.s(4), mul.s(8)).apply_async()
        assert result.get(timeout=TIMEOUT) == 64
        assert result.parent.get(timeout=TIMEOUT) == 8
        assert result.parent.parent.get(timeout=TIMEOUT) == 4
        assert result.parent.parent.parent is None
    first = result.parent.parent.id
    rows = raw_conn.execute(f'SELECT id::text, root_id::text, parent_id::text, args FROM "{schema}".results '
                            f'ORDER BY finished_at').fetchall()
    # every step has the first as its root and the step before as its parent; results lead the args
    assert [(r[1], r[2], r[3]) for r in rows] == [(first, None, [2, 2]), (first, first, [4, 4]),
                                                   (first, result.parent.id, [8, 8])]
    # a handle made from the id alone finds its parent in the tables
    from sqlq import AsyncResult

    assert AsyncResult(result.id, app).parent.id == result.parent.id
    assert [c.id for c in AsyncResult(first, app).children] == [result.parent.id]


def test_only_the_first_step_is_a_job_until_it_succeeds(app, tasks, raw_conn, schema):
    add, mul, *_ = tasks
    result = (add.s(1, 1) | mul.s(3)).apply_async()
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 1
    assert result.state == "PENDING" and result.parent.state == "PENDING"


def test_forms_celery_writes(app, run_worker, tasks):
    add, mul, *_ = tasks
    with run_worker(app):
        assert (add.s(1, 1) | add.s(1) | mul.s(10)).delay().get(timeout=TIMEOUT) == 30
        inner = chain(add.s(1), add.s(1))
        assert (add.s(1, 1) | inner).delay().get(timeout=TIMEOUT) == 4  # sig | chain
        assert (inner | add.s(1)).delay(5).get(timeout=TIMEOUT) == 8  # chain | sig, args to the first
        assert chain(add.s(1, 1), chain(add.s(1), add.s(1))).delay().get(timeout=TIMEOUT) == 4
        assert chain(add.s(1, 1), add.si(10, 10)).delay().get(timeout=TIMEOUT) == 20  # immutable
        assert chain(add.s(2, 2)).delay().get(timeout=TIMEOUT) == 4


def test_a_failing_step_stops_the_chain_and_its_error_is_the_chains(app, run_worker, tasks, raw_conn, schema):
    add, _, boom, *_ = tasks
    with run_worker(app):
        result = chain(add.s(1, 1), boom.s(), add.s(1), add.s(1)).apply_async()
        with pytest.raises(ValueError, match=r"bad \[2\]"):
            result.get(timeout=TIMEOUT)
    third = result.parent
    failed = third.parent
    for handle in (result, third):
        row = result_row(raw_conn, schema, handle.id)
        assert row["state"] == "FAILURE" and row["exc_type"] == "ValueError"
        assert row["traceback"] == result_row(raw_conn, schema, failed.id)["traceback"]
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0  # nothing left to run


def test_a_chain_survives_json_and_runs_from_its_dict(app, run_worker, tasks):
    add, mul, *_ = tasks
    c = chain(add.s(2, 2), mul.s(5))
    again = signature(json.loads(json.dumps(c)), app=app)
    assert isinstance(again, chain) and len(again.tasks) == 2
    with run_worker(app):
        assert again.delay().get(timeout=TIMEOUT) == 20


def test_refused_at_send_time_with_what_to_do(app, tasks, raw_conn, schema):
    add, _, _, pickled, quiet = tasks
    app.conf.result_serializer = "msgpack"
    try:
        with pytest.raises(ConfigurationError, match=r"msgpack, not JSON.*\.si\(.*json result serializer"):
            chain(add.s(1), add.s(1)).delay()
    finally:
        app.conf.result_serializer = "json"
    with pytest.raises(ConfigurationError, match="ignore_result"):
        chain(quiet.s(1), add.s(1)).delay()
    with pytest.raises(ConfigurationError, match="needs JSON: use the json serializer"):
        chain(add.s(1, 1), pickled.si(1)).delay()
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0
    chain(quiet.s(1), add.si(1, 1)).delay()  # an immutable step takes nothing, so it may follow
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 1


def test_a_step_after_a_non_json_result_of_a_task_unknown_to_the_sender_fails_saying_why(
        app, run_worker, tasks, raw_conn, schema, database_url):
    from sqlq import App

    sender = App("sender", database_url=database_url, schema=schema)  # knows neither task
    try:
        # proj.pickled returns pickle (the worker's app has it): the database finds out at its outcome
        result = chain(signature("proj.pickled", (3,), app=sender),
                       signature("proj.add", (1,), app=sender)).apply_async()
        with run_worker(app):
            wait_for(lambda: result_row(raw_conn, schema, result.id), timeout=TIMEOUT)
    finally:
        sender.close()
    row = result_row(raw_conn, schema, result.id)
    assert row["state"] == "FAILURE" and row["exc_type"] == "sqlq.errors.WorkflowError"
    assert "not JSON" in row["exc_message"] and ".si()" in row["exc_message"]
    assert result_row(raw_conn, schema, result.parent.id)["state"] == "SUCCESS"


def test_chain_inside_a_callers_transaction_is_all_or_nothing(app, tasks, raw_conn, schema, database_url):
    import psycopg

    add, mul, *_ = tasks
    with psycopg.connect(database_url) as conn:
        chain(add.s(1, 1), mul.s(2)).apply_async(connection=conn)
        conn.rollback()
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0


def test_a_chain_of_50_steps_survives_a_worker_killed_mid_chain(raw_conn, schema, tmp_path, monkeypatch):
    """Every step recorded once, in order, and the chain completes: the next step is written by the
    transaction that records the previous one's outcome, so a killed worker loses none."""
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "2")
    monkeypatch.setenv("SQLQ_WORKER_HEARTBEAT_INTERVAL", "0.3")
    monkeypatch.setenv("SQLQ_WORKER_MAINTENANCE_INTERVAL", "0.5")
    from tests.apps import workflows

    workflows.app.close()
    workflows.app.migrate()
    create_runs_table(raw_conn, schema)
    result = chain(workflows.step.s(0), *[workflows.step.s() for _ in range(49)]).apply_async()
    first = WorkerProcess(tmp_path / "w1.log", app_path="tests.apps.workflows:app", pool="threads", concurrency=2)
    second = WorkerProcess(tmp_path / "w2.log", app_path="tests.apps.workflows:app", pool="threads", concurrency=2)
    try:
        done = lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema)  # noqa: E731
        wait_for(lambda: done() >= 10, timeout=60, message="10 steps done")
        first.kill()  # SIGKILL mid-chain
        assert done() < 50
        assert result.get(timeout=90) == 50
    finally:
        first.stop()
        second.stop()
        workflows.app.close()
    rows = raw_conn.execute(f'SELECT state, result FROM "{schema}".results ORDER BY result::text::int'
                            ).fetchall()
    assert [r[1] for r in rows] == list(range(1, 51)) and {r[0] for r in rows} == {"SUCCESS"}
    # each step ran to success once; only the step the killed worker held may have run twice
    runs = raw_conn.execute(f'SELECT job_id, count(*) FROM "{schema}".runs GROUP BY job_id').fetchall()
    assert len(runs) == 50 and sum(n for _, n in runs) <= 50 + 2
