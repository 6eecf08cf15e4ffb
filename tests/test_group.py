"""Groups on a real database with real workers: every member written in one statement (one
transaction, one group_id), members of different tasks and options, results in member order,
failures, the checks reading all members in one statement, revoke, save/restore/forget, a group
inside the caller's transaction, a JSON round trip into a worker, and the fanout GroupResults of
routed publishes next to groups."""

from __future__ import annotations

import json
import uuid

import pytest

from sqlq import AsyncResult, GroupResult, group, signature
from sqlq.errors import TimeoutError as SqlqTimeoutError
from tests.apps.harness import job_row, result_row, scalar, wait_for


@pytest.fixture
def tasks(app):
    @app.task(name="proj.add")
    def add(x, y=0):
        return x + y

    @app.task(name="proj.boom")
    def boom(x):
        raise ValueError(f"bad {x}")

    @app.task(name="proj.mul")
    def mul(x, y):
        return x * y

    return add, boom, mul


def _jobs(raw_conn, schema, ids):
    """The members' jobs rows: id → (group_id, xmin, task, queue, priority, state, args)."""
    rows = raw_conn.execute(
        f'SELECT id::text, group_id::text, xmin::text, task, queue, priority, state, args '
        f'FROM "{schema}".jobs WHERE id = ANY(%s::uuid[])', (list(ids),)).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("n", [5, 200])  # ENQUEUE_MANY, and COPY from 64 members due now
def test_every_member_is_written_in_one_statement_sharing_one_group_id(app, raw_conn, schema, tasks, n):
    add, _, _ = tasks
    result = group(add.s(i, i) for i in range(n)).apply_async()
    assert isinstance(result, GroupResult) and len(result) == n
    rows = _jobs(raw_conn, schema, [r.id for r in result])
    assert len(rows) == n
    assert {r[0] for r in rows.values()} == {result.id}
    assert len({r[1] for r in rows.values()}) == 1  # one transaction wrote them all
    assert [rows[r.id][6] for r in result] == [[i, i] for i in range(n)]
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE group_id IS NULL", schema=schema) == 0


def test_members_of_different_tasks_and_options_and_send_time_arguments(app, raw_conn, schema, tasks):
    add, _, mul = tasks
    g = group(add.s(1).set(queue="low", priority=5), mul.s(3).set(countdown=60),
              signature("billing.charge", (7,), app=app, queue="billing"))
    result = g.delay(10)
    rows = _jobs(raw_conn, schema, [r.id for r in result])
    assert [rows[r.id][2:] for r in result] == [
        ("proj.add", "low", 5, "available", [10, 1]),
        ("proj.mul", "default", 0, "scheduled", [10, 3]),
        ("billing.charge", "billing", 0, "available", [10, 7]),
    ]
    assert len({rows[r.id][1] for r in result}) == 1 and {rows[r.id][0] for r in result} == {result.id}
    called = group(add.s(1), add.s(2))(5, queue="calls")
    assert [_jobs(raw_conn, schema, [r.id])[r.id][3:] for r in called] == [
        ("calls", 0, "available", [5, 1]), ("calls", 0, "available", [5, 2])]


def test_get_returns_the_values_in_member_order_and_the_checks_follow_the_run(app, run_worker, tasks):
    add, _, _ = tasks
    result = group(add.s(i, 100) for i in range(30)).apply_async()
    assert result.waiting() and not result.ready() and result.completed_count() == 0
    with run_worker(app):
        assert result.get(timeout=30) == [i + 100 for i in range(30)]
    assert result.ready() and result.successful() and not result.failed() and not result.waiting()
    assert result.completed_count() == 30 and result.join(timeout=1) == [i + 100 for i in range(30)]
    assert GroupResult(result.id, [AsyncResult(r.id, app) for r in result], app).get(timeout=1) == \
        [i + 100 for i in range(30)]


def test_a_failed_member_fails_the_group_and_raises_unless_propagate_is_false(app, run_worker, tasks):
    add, boom, _ = tasks
    result = group(add.s(1, 1), boom.s(2), add.s(3, 3)).delay()
    with run_worker(app):
        with pytest.raises(ValueError, match="bad 2"):
            result.get(timeout=30)
        values = result.join(timeout=30, propagate=False)
    assert values[0] == 2 and isinstance(values[1], ValueError) and values[2] == 6
    assert result.ready() and result.failed() and not result.successful() and result.completed_count() == 2


def test_get_times_out_saying_how_far_the_group_got(app, tasks):
    add, _, _ = tasks
    result = group(add.s(1), add.s(2)).delay()
    with pytest.raises(SqlqTimeoutError, match=rf"group {result.id} did not finish within 0.2 s \(0 of 2"):
        result.get(timeout=0.2)


def test_the_checks_read_every_member_in_one_statement(app, run_worker, tasks, monkeypatch):
    add, _, _ = tasks
    result = group(add.s(i) for i in range(100)).delay()
    with run_worker(app):
        wait_for(result.ready, message="the group to finish")

    def one_by_one(self):
        raise AssertionError("a GroupResult read a member by itself")

    monkeypatch.setattr(AsyncResult, "_row", one_by_one)  # only GROUP_STATES may read the members
    fresh = GroupResult(result.id, [AsyncResult(r.id, app) for r in result], app)
    assert fresh.ready() and fresh.completed_count() == 100 and fresh.get(timeout=5) == list(range(100))
    assert all(r._cache is not None for r in fresh)  # final rows are kept: later checks read nothing


def test_revoke_revokes_the_members_that_have_not_started(app, raw_conn, schema, tasks):
    add, _, _ = tasks
    result = group(add.s(i) for i in range(4)).delay()
    assert result.revoke() == 4
    assert result.ready() and not result.successful() and result.completed_count() == 0
    assert {result_row(raw_conn, schema, r.id)["state"] for r in result} == {"REVOKED"}
    assert {str(result_row(raw_conn, schema, r.id)["group_id"]) for r in result} == {result.id}
    assert result.revoke() == 0


def test_save_restore_and_forget(app, run_worker, raw_conn, schema, tasks):
    add, _, _ = tasks
    result = group(add.s(i, 1) for i in range(3)).delay()
    assert result.save() is result
    restored = GroupResult.restore(result.id, app=app)
    assert restored == result and [r.id for r in restored] == [r.id for r in result]
    with run_worker(app):
        assert restored.get(timeout=30) == [1, 2, 3]
    assert GroupResult.restore(str(uuid.uuid4()), app=app) is None
    assert GroupResult.restore("not-a-group-id", app=app) is None
    restored.forget()
    assert GroupResult.restore(result.id, app=app) is None
    assert all(result_row(raw_conn, schema, r.id) is None for r in result)
    assert [r.state for r in GroupResult(result.id, [AsyncResult(r.id, app) for r in result], app)] == \
        ["PENDING"] * 3


def test_saved_groups_expire_with_the_results(app, raw_conn, schema, tasks):
    add, _, _ = tasks
    old, new = group(add.s(1)).delay().save(), group(add.s(2)).delay().save()
    raw_conn.execute(f'UPDATE "{schema}".groups SET saved_at = now() - interval \'2 hours\' WHERE id = %s',
                     (old.id,))
    with app.connection() as conn:
        app.store.expire_results(conn, 3600.0)
    assert GroupResult.restore(old.id, app=app) is None
    assert GroupResult.restore(new.id, app=app) == new


def test_a_group_in_the_callers_transaction_is_written_only_if_it_commits(app, database_url, raw_conn, schema,
                                                                           tasks):
    import psycopg

    add, _, _ = tasks
    with psycopg.connect(database_url) as conn:
        kept = group(add.s(1), add.s(2)).apply_async(connection=conn)
        conn.commit()
        dropped = group(add.s(3), add.s(4)).apply_async(connection=conn)
        conn.rollback()
    assert all(job_row(raw_conn, schema, r.id) is not None for r in kept)
    assert all(job_row(raw_conn, schema, r.id) is None for r in dropped)


def test_a_group_travels_as_json_and_is_sent_from_a_worker(app, run_worker, tasks):
    add, _, _ = tasks

    @app.task(name="proj.fan")
    def fan(group_dict):
        assert type(group_dict) is dict  # as JSON carries it
        sent = signature(group_dict, app=app).delay(1000)
        sent.save()
        return sent.id

    g = group(add.s(1), add.s(2))
    assert json.loads(json.dumps(g))["subtask_type"] == "group"
    with run_worker(app):
        group_id = fan.delay(g).get(timeout=30)
        assert GroupResult.restore(group_id, app=app).get(timeout=30) == [1001, 1002]


def test_a_member_task_id_that_is_not_a_uuid_is_kept_on_its_handle(app, run_worker, tasks):
    add, _, _ = tasks
    result = group(add.s(1, 1).set(task_id="order-17"), add.s(2, 2)).delay()
    assert result.results[0].id == "order-17"
    with run_worker(app):
        assert result.get(timeout=30) == [2, 4]
    assert app.AsyncResult("order-17").get(timeout=1) == 2


def test_always_eager_groups_need_no_worker(app, tasks):
    add, _, _ = tasks
    app.conf.task_always_eager = True
    result = group(add.s(i, i) for i in range(3)).delay()
    assert type(result).__name__ == "EagerGroupResult" and result.get() == [0, 2, 4]


def test_a_member_routed_to_a_fanout_exchange_is_a_nested_group_result(app, run_worker, raw_conn, schema, tasks):
    from sqlq import Exchange, Queue
    from sqlq.errors import ConfigurationError
    from sqlq.routing import apply_routes

    add, _, _ = tasks
    apply_routes(app, [Queue("audit", Exchange("events", type="fanout")), Queue("mail", "events")])
    result = group(add.s(1, 1), add.s(2, 2).set(exchange="events", routing_key="any")).delay()
    plain, fanned = result.results
    assert isinstance(plain, AsyncResult) and isinstance(fanned, GroupResult) and len(fanned) == 2
    rows = _jobs(raw_conn, schema, [plain.id] + [r.id for r in fanned])
    assert {r[0] for r in rows.values()} == {result.id} and len({r[1] for r in rows.values()}) == 1
    assert sorted(r[3] for r in rows.values()) == ["audit", "default", "mail"]
    with run_worker(app, queues=["default", "audit", "mail"]):
        assert result.get(timeout=30) == [2, [4, 4]]
    assert result.ready() and result.successful() and result.completed_count() == 2
    with pytest.raises(ConfigurationError, match="has a nested group"):
        result.save()
