"""A job row no worker can run (``attempt`` or ``retries`` negative or at the
integer limit, written by hand or by another tool) is set aside as FAILURE InvalidJobError naming
the column and its value, and the queue goes on.

Before the fix a row with ``attempt = 2147483647`` made CLAIM fail with an integer overflow: every
worker of that queue died at its first claim. Such rows also made RESCUE's arithmetic overflow,
which stopped every rescue of dead workers' jobs.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from sqlq.errors import InvalidJobError
from tests.apps.harness import create_runs_table, result_row, runs_of, scalar, wait_for

TIMEOUT = 60
INT_MAX = 2147483647


def _insert_row(conn: psycopg.Connection, schema: str, *, task: str = "tests.apps.basic.add", args: str = "[1, 2]",
                attempt: int = 0, retries: int = 0, state: str = "available", worker_id: str | None = None,
                queue: str = "default") -> str:
    """A job row as another tool might write it."""
    return conn.execute(sql.SQL(
        "INSERT INTO {}.jobs (id, task, queue, state, args, kwargs, attempt, retries, worker_id) "
        "VALUES (gen_random_uuid(), %s, %s, %s, %s::jsonb, '{{}}', %s, %s, %s) RETURNING id::text"
    ).format(sql.Identifier(schema)), (task, queue, state, args, attempt, retries, worker_id)).fetchone()[0]


def test_a_row_whose_attempt_cannot_be_counted_is_set_aside_and_the_queue_goes_on(basic_app, run_worker, raw_conn,
                                                                                   schema):
    """attempt = 2147483647 at the head of the queue: the worker records it as FAILURE
    InvalidJobError naming the column and value, and runs the 20 jobs behind it."""
    from tests.apps import basic

    bad = _insert_row(raw_conn, schema, attempt=INT_MAX)
    normal = {basic.add.delay(i, 1).id: i + 1 for i in range(20)}
    with run_worker(basic_app, pool="threads") as worker:
        wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema) == 21, TIMEOUT,
                 message="every result")
        assert not worker._stopped.is_set()
    row = result_row(raw_conn, schema, bad)
    assert (row["state"], row["exc_type"]) == ("FAILURE", "sqlq.errors.InvalidJobError")
    assert "attempt = 2147483647" in row["exc_message"] and "written by hand" in row["exc_message"]
    assert row["attempts"] == INT_MAX
    for job_id, value in normal.items():
        assert result_row(raw_conn, schema, job_id)["result"] == value


def test_claim_quarantines_the_queues_impossible_rows_and_claims_again(app, raw_conn, schema):
    """Store.claim on a queue whose head row overflows: that row and every other impossible row of
    the queue leave as FAILURE (each message names its columns), rows of other queues and running
    rows are untouched, and the claim returns the good jobs."""
    worker_id = str(uuid.uuid4())
    with app.connection() as conn:
        app.store.register_worker(conn, id=worker_id, hostname="test", pid=1, queues=["default"], concurrency=1,
                                  pool="threads")
    overflow = _insert_row(raw_conn, schema, attempt=INT_MAX, retries=-3)
    negative = _insert_row(raw_conn, schema, attempt=-1)
    elsewhere = _insert_row(raw_conn, schema, attempt=INT_MAX, queue="other")
    good = [_insert_row(raw_conn, schema) for _ in range(3)]
    with app.connection() as conn:
        jobs = app.store.claim(conn, worker_id, "default", 10)
    assert [j.id for j in jobs] == good
    overflow_row = result_row(raw_conn, schema, overflow)
    assert overflow_row["exc_type"] == "sqlq.errors.InvalidJobError"
    assert "attempt = 2147483647, retries = -3" in overflow_row["exc_message"]
    assert "attempt = -1" in result_row(raw_conn, schema, negative)["exc_message"]
    assert result_row(raw_conn, schema, elsewhere) is None
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE id = %s", elsewhere, schema=schema) == 1


def test_a_claim_that_still_fails_raises_a_clear_error(app, raw_conn, schema):
    """If CLAIM keeps failing for its data after the quarantine (here: a trigger that refuses every
    claimed row, standing in for a value sqlq does not foresee), Store.claim raises InvalidJobError
    naming the queue and where to look, not a raw database error, and the row is left as it was."""
    worker_id = str(uuid.uuid4())
    with app.connection() as conn:
        app.store.register_worker(conn, id=worker_id, hostname="test", pid=1, queues=["default"], concurrency=1,
                                  pool="threads")
    job = _insert_row(raw_conn, schema)
    ident = sql.Identifier(schema)
    raw_conn.execute(sql.SQL("CREATE FUNCTION {}.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                             "$$BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '22023'; END$$").format(ident))
    raw_conn.execute(sql.SQL("CREATE TRIGGER refuse BEFORE UPDATE ON {} FOR EACH ROW "
                             "EXECUTE FUNCTION {}.refuse()").format(sql.Identifier(schema, "jobs"), ident))
    with app.connection() as conn:
        try:
            app.store.claim(conn, worker_id, "default", 10)
        except InvalidJobError as exc:
            message = str(exc)
        else:
            raise AssertionError("the claim did not fail")
    assert "claiming from queue 'default' fails" in message and "refused" in message
    assert f"{schema}.jobs" in message
    assert scalar(raw_conn, "SELECT state FROM {s}.jobs WHERE id = %s", job, schema=schema) == "available"


def test_rows_with_impossible_counters_are_failed_without_running(basic_app, run_worker, raw_conn, schema):
    """Negative attempt or retries, or retries at the limit (CLAIM can take these, RETRY could not
    count on): the job never runs and ends FAILURE InvalidJobError naming the column and value."""
    create_runs_table(raw_conn, schema)
    rows = {_insert_row(raw_conn, schema, task="tests.apps.basic.recorded", args="[]", attempt=-5): "attempt = -5",
            _insert_row(raw_conn, schema, task="tests.apps.basic.recorded", args="[]", retries=-1): "retries = -1",
            _insert_row(raw_conn, schema, task="tests.apps.basic.recorded", args="[]", retries=INT_MAX):
                f"retries = {INT_MAX}"}
    with run_worker(basic_app, pool="threads"):
        wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema) == 3, TIMEOUT,
                 message="every result")
    for job_id, text in rows.items():
        row = result_row(raw_conn, schema, job_id)
        assert (row["state"], row["exc_type"]) == ("FAILURE", "sqlq.errors.InvalidJobError")
        assert text in row["exc_message"]
        assert runs_of(raw_conn, schema, job_id) == 0


def test_retrying_up_to_the_counters_limit_ends_in_failure_not_a_wedge(basic_app, run_worker, raw_conn, schema):
    """A job at retries = 2147483646 that retries once more reaches the limit: it ends FAILURE
    InvalidJobError, and a job queued after it succeeds."""
    from tests.apps import basic

    job = _insert_row(raw_conn, schema, task="tests.apps.basic.always_retries", args="[]", retries=INT_MAX - 1)
    after = basic.add.delay(2, 2)
    with run_worker(basic_app, pool="threads"):
        row = wait_for(lambda: result_row(raw_conn, schema, job), TIMEOUT, message="the result")
        assert after.get(timeout=TIMEOUT) == 4
    assert (row["state"], row["exc_type"]) == ("FAILURE", "sqlq.errors.InvalidJobError")
    assert f"retries = {INT_MAX}" in row["exc_message"]


def test_rescue_and_lost_handle_rows_near_the_integer_limits(app, raw_conn, schema):
    """RESCUE (jobs of vanished workers) and LOST compute attempt - retries; on rows written with
    attempt = 2147483647 and a negative retries that overflowed int and failed the statement, so
    no dead worker's job was ever rescued again. Now the others are handed back and the odd row
    ends FAILURE WorkerLostError."""
    gone_worker = str(uuid.uuid4())
    odd = _insert_row(raw_conn, schema, state="running", attempt=INT_MAX, retries=-1, worker_id=gone_worker)
    normal = _insert_row(raw_conn, schema, state="running", attempt=1, worker_id=gone_worker)
    with app.connection() as conn:
        requeued, failed = app.store.rescue(conn, 30.0, 3)
    assert (requeued, failed) == (1, 1)
    assert result_row(raw_conn, schema, odd)["exc_type"] == "sqlq.errors.WorkerLostError"
    assert scalar(raw_conn, "SELECT state FROM {s}.jobs WHERE id = %s", normal, schema=schema) == "available"

    me = str(uuid.uuid4())
    odd = _insert_row(raw_conn, schema, state="running", attempt=INT_MAX, retries=-1, worker_id=me)
    with app.connection() as conn:
        assert app.store.lost(conn, me, [(odd, INT_MAX)], 3) == (0, 1)
    assert result_row(raw_conn, schema, odd)["state"] == "FAILURE"
