"""Workflow results in SQL and revoking workflows, on a real database: root_id/parent_id for
workflow steps and for tasks sent from a running task, AsyncResult.parent/children/collect, the
recursive query of the README returning a whole workflow with its states, the trigger firing only
for workflow rows, a workflow moved on by every statement that records an outcome (a rescue's
FAILURE included), the revoked table written by every revoke and honoured for steps not enqueued
yet, and its expiry with the results'."""

from __future__ import annotations

import pytest

from sqlq import AsyncResult, chain, chord, group
from sqlq.errors import IncompleteStream
from tests.apps.harness import claim_as_dead_worker, result_row, scalar, wait_for

TIMEOUT = 30


@pytest.fixture
def tasks(app):
    @app.task(name="proj.add")
    def add(x, y=0):
        return x + y

    @app.task(name="proj.tsum")
    def tsum(numbers):
        return sum(numbers)

    @app.task(name="proj.fan", bind=True)
    def fan(self, n):
        for i in range(n):
            add.delay(i, i)
        return n

    @app.task(name="proj.fragile", acks_late=False)
    def fragile(x):
        return x

    return add, tsum, fan, fragile


def test_a_task_sent_from_a_task_records_its_parent_and_root(app, run_worker, tasks, raw_conn, schema):
    _, _, fan, _ = tasks
    with run_worker(app):
        parent = fan.delay(3)
        assert parent.get(timeout=TIMEOUT) == 3
        children = wait_for(lambda: len(parent.children) == 3 and parent.children, timeout=TIMEOUT)
        assert sorted(c.get(timeout=TIMEOUT) for c in children) == [0, 2, 4]
        assert {c.parent.id for c in children} == {parent.id}
        collected = list(parent.collect())
    assert [r.id for r, _ in collected][0] == parent.id and sorted(v for _, v in collected) == [0, 2, 3, 4]
    rows = raw_conn.execute(f'SELECT root_id::text, parent_id::text FROM "{schema}".results '
                            f"WHERE task = 'proj.add'").fetchall()
    assert set(rows) == {(parent.id, parent.id)}
    # a plain job sent from outside any task has neither, and no plan
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE task = 'proj.fan' AND root_id IS NULL "
                            "AND parent_id IS NULL AND workflow IS NULL", schema=schema) == 1


def test_iterdeps_stops_at_a_job_that_has_not_finished(app, tasks):
    add, *_ = tasks
    pending = add.delay(1, 1)
    with pytest.raises(IncompleteStream):
        list(pending.iterdeps())
    assert [r.id for _, r in pending.iterdeps(intermediate=True)] == [pending.id]


def test_the_recursive_query_returns_the_whole_workflow_with_states(app, run_worker, tasks, raw_conn, schema):
    add, tsum, _, _ = tasks
    with run_worker(app, concurrency=3):
        result = chain(add.s(1, 1), chord([add.s(1), add.s(2)], tsum.s()), add.s(10)).apply_async()
        assert result.get(timeout=TIMEOUT) == 17
    header = result.parent.parent  # the body's (tsum's) parent is the header's GroupResult
    first = header.parent
    with app.connection() as conn:
        tree = app.store.workflow_tree(conn, first.id)
    assert [(row.task, row.state, row.depth) for row in tree] == [
        ("proj.add", "SUCCESS", 0), ("proj.add", "SUCCESS", 1), ("proj.add", "SUCCESS", 1),
        ("proj.tsum", "SUCCESS", 2), ("proj.add", "SUCCESS", 3)]
    assert {row.id for row in tree} == {first.id, *[r.id for r in header.results],
                                        result.parent.id, result.id}


def test_the_trigger_fires_only_for_workflow_rows(app, raw_conn, schema):
    trigger = raw_conn.execute("SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                               "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                               "AND t.tgname = 'workflow_step'", (schema,)).fetchone()[0]
    assert "AFTER INSERT" in trigger and "FOR EACH ROW" in trigger and "(new.workflow IS NOT NULL)" in trigger


def test_a_rescued_jobs_failure_moves_the_workflow_on(app, run_worker, tasks, raw_conn, schema, monkeypatch):
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "1")
    monkeypatch.setenv("SQLQ_WORKER_MAINTENANCE_INTERVAL", "0.3")
    add, _, _, fragile = tasks
    result = chain(fragile.s(1), add.s(1)).apply_async()
    claim_as_dead_worker(app, result.parent)  # a worker that dies with the first step (not acks_late)
    with run_worker(app):
        with pytest.raises(Exception, match="worker died"):
            result.get(timeout=TIMEOUT)
    assert result_row(raw_conn, schema, result.id)["exc_type"] == "sqlq.errors.WorkerLostError"


def test_revoking_a_chain_revokes_its_pending_steps(app, run_worker, tasks, raw_conn, schema):
    add, *_ = tasks
    result = chain(add.s(1, 1), add.s(1), add.s(1)).apply_async()
    assert result.revoke()  # the first step was waiting: REVOKED at once, the rest never enqueued
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.revoked", schema=schema) == 3
    states = dict(raw_conn.execute(f'SELECT id::text, state FROM "{schema}".results').fetchall())
    assert states == {result.parent.parent.id: "REVOKED", result.parent.id: "REVOKED", result.id: "REVOKED"}
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0


def test_a_revoked_step_not_yet_enqueued_is_recorded_revoked_when_its_turn_comes(app, run_worker, tasks,
                                                                                 raw_conn, schema):
    add, *_ = tasks
    result = chain(add.s(1, 1), add.s(1), add.s(1)).apply_async()
    AsyncResult(result.parent.id, app).revoke()  # only the middle step, known by id
    with run_worker(app):
        wait_for(lambda: result_row(raw_conn, schema, result.id), timeout=TIMEOUT)
    assert result_row(raw_conn, schema, result.parent.parent.id)["state"] == "SUCCESS"
    assert result_row(raw_conn, schema, result.parent.id)["state"] == "REVOKED"
    last = result_row(raw_conn, schema, result.id)
    assert last["state"] == "FAILURE" and last["exc_type"] == "sqlq.errors.TaskRevokedError"


def test_group_revoke_writes_every_member_id(app, tasks, raw_conn, schema):
    add, *_ = tasks
    g = group(add.s(i, i) for i in range(3)).apply_async()
    assert g.revoke() == 3
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.revoked WHERE id = ANY(%s::uuid[])",
                  [r.id for r in g], schema=schema) == 3


def test_chords_and_revoked_ids_expire_with_the_results(app, tasks, raw_conn, schema):
    add, tsum, *_ = tasks
    chord([add.s(1, 1)], tsum.s()).apply_async().revoke()
    raw_conn.execute(f"UPDATE \"{schema}\".chords SET created_at = now() - interval '2 days'")
    raw_conn.execute(f"UPDATE \"{schema}\".revoked SET revoked_at = now() - interval '2 days'")
    with app.connection() as conn:
        app.store.expire_results(conn, ttl=86400)
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.chords", schema=schema) == 0
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.revoked", schema=schema) == 0


def test_a_routed_publish_from_a_task_records_its_parent(app, run_worker, raw_conn, schema):
    from sqlq import Exchange, Queue
    from sqlq.routing.declarations import apply_routes

    apply_routes(app, [Queue("billing", Exchange("direct_ex"), routing_key="invoice")])
    echo = app.task(name="proj.echo")(lambda value=None: value)

    @app.task(name="proj.sender", bind=True)
    def sender(self):
        for n in (1, 2):  # one through PUBLISH_ONE (the libpq fast path), then PUBLISH
            echo.apply_async((n,), exchange="direct_ex", routing_key="invoice")
        echo.apply_many([((3,), {}), ((4,), {})], exchange="direct_ex", routing_key="invoice")
        return self.request.id

    with run_worker(app):
        parent = sender.delay()
        assert parent.get(timeout=TIMEOUT) == parent.id
    rows = raw_conn.execute(f'SELECT root_id::text, parent_id::text FROM "{schema}".jobs WHERE queue = %s',
                            ("billing",)).fetchall()
    assert rows == [(parent.id, parent.id)] * 4
