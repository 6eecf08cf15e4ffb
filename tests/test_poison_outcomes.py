"""One poison outcome never blocks the others, and no job ends a worker.

A poison job's outcome is one PostgreSQL cannot take as it is (NaN in a JSON result, a NUL or a lone
surrogate in a result or an exception's text), or its running fails outside the task body (arguments
that do not decode, ``str(exc)`` raising, a signal receiver raising a BaseException). Before the
fix such a job wedged the finisher (the whole FINISH batch was retried every 0.5 s forever) or ended
the solo worker / the prefork child. Each test runs real workers on the real database.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from sqlq.store import Outcome, RetryRequest
from sqlq.worker.recording import Recorder
from tests.apps.harness import result_row, scalar, wait_for

TIMEOUT = 90

#: task of tests/apps/basic.py -> (exc_type recorded, text its exc_message must contain)
POISON_TASKS = {
    "returns_nan": ("sqlq.errors.SerializationError", "[1]['ratio'] is NaN, which JSON cannot carry"),
    "returns_nul": ("sqlq.errors.SerializationError", "contains a NUL character (\\x00)"),
    "returns_surrogate": ("sqlq.errors.SerializationError", "the value contains a lone surrogate (\\udc80)"),
    "raises_nul": ("ValueError", "message with a NUL \\x00 inside"),
    "raises_surrogate": ("ValueError", "message with a lone surrogate \\udc80"),
    "raises_unprintable": ("tests.apps.basic.UnprintableError", "str() raised RuntimeError"),
    "troubled_prerun": ("tests.apps.basic.ReceiverExit", "task_prerun receiver gave up"),
    "troubled_postrun": ("tests.apps.basic.ReceiverExit", "task_postrun receiver gave up"),
}

#: hand-written rows of tests.apps.basic.add whose arguments do not decode -> text of the FAILURE
BAD_ARGUMENTS = {
    "bad tagged decimal": ('[{"__type__": "decimal", "__value__": "not a number"}, 1]', "InvalidOperation"),
    "bad tagged uuid": ('[{"__type__": "uuid", "__value__": 5}, 1]', "AttributeError"),
    "3000-deep nesting": ("[" + "[" * 3000 + "]" * 3000 + ", 1]", "RecursionError"),
}


def _outcome(conn: psycopg.Connection, schema: str, job_id: str) -> dict:
    """The result row without its arguments (one of them is too deep for Python's JSON decoder)."""
    query = sql.SQL("SELECT task, state, result, exc_type, exc_message, attempts, retries, "
                    "traceback IS NOT NULL AS has_traceback FROM {}.results "
                    "WHERE id = %s").format(sql.Identifier(schema))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (job_id,)).fetchone()


def _insert_row(conn: psycopg.Connection, schema: str, args: str) -> str:
    """A job row as another tool might write it."""
    return conn.execute(sql.SQL(
        "INSERT INTO {}.jobs (id, task, queue, state, args, kwargs) "
        "VALUES (gen_random_uuid(), 'tests.apps.basic.add', 'default', 'available', %s::jsonb, '{{}}') "
        "RETURNING id::text").format(sql.Identifier(schema)), (args,)).fetchone()[0]


@pytest.mark.parametrize("pool", ["threads", "solo", "prefork"])
def test_poison_jobs_end_as_failure_and_the_jobs_after_them_succeed(basic_app, run_worker, raw_conn, schema, pool):
    """Every kind of poison job ends FAILURE saying what was wrong, with a traceback (for arguments
    that do not decode: the decoder's), run once (no child died for it), and the 20 ordinary jobs
    queued behind them all end SUCCESS, in each pool; the worker is still running afterwards."""
    from tests.apps import basic

    poison = {basic_app.tasks[f"tests.apps.basic.{name}"].delay().id: expected
              for name, expected in POISON_TASKS.items()}
    for args, text in BAD_ARGUMENTS.values():
        poison[_insert_row(raw_conn, schema, args)] = ("sqlq.errors.SerializationError", text)
    retried = basic.retries_with_nul.delay().id
    normal = {basic.add.delay(i, 1).id: i + 1 for i in range(20)}

    wt = run_worker(basic_app, pool=pool, concurrency=2)
    with wt:
        everything = [*poison, retried, *normal]
        wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE id = ANY(%s::uuid[])",
                                everything, schema=schema) == len(everything),
                 TIMEOUT, interval=0.1, message="every job's result")
        assert wt.thread.is_alive(), "the worker exited"
    wrong = {}
    for job_id, (exc_type, text) in poison.items():
        row = _outcome(raw_conn, schema, job_id)
        if ((row["state"], row["exc_type"], row["attempts"], row["has_traceback"]) != ("FAILURE", exc_type, 1, True)
                or text not in row["exc_message"]):
            wrong[row["task"]] = (row["state"], row["exc_type"], row["attempts"], row["exc_message"])
    assert not wrong, wrong
    for job_id, value in normal.items():
        row = result_row(raw_conn, schema, job_id)
        assert (row["state"], row["result"]) == ("SUCCESS", value)
    row = _outcome(raw_conn, schema, retried)
    assert (row["state"], row["result"], row["retries"]) == ("SUCCESS", "retried", 1)


def test_nul_in_an_exception_is_recorded_as_a_visible_escape(basic_app, run_worker, raw_conn, schema):
    """The message and the traceback keep the rest of their text; the NUL reads as ``\\x00``."""
    from tests.apps import basic

    job = basic.raises_nul.delay()
    with run_worker(basic_app, pool="threads"):
        row = wait_for(lambda: result_row(raw_conn, schema, job.id), TIMEOUT, message="the result")
    assert row["exc_message"] == "message with a NUL \\x00 inside"
    assert "ValueError: message with a NUL \\x00 inside" in row["traceback"]
    with pytest.raises(ValueError, match=r"NUL \\x00 inside"):
        job.get(timeout=TIMEOUT)


# --- the finisher's split, on hand-made outcomes ---------------------------------------------------

@pytest.fixture
def claimed(app):
    """Ten jobs claimed by a registered worker: (worker id, claimed jobs)."""
    @app.task(name="poison.noop")
    def noop():
        return None

    for _ in range(10):
        noop.delay()
    worker_id = str(uuid.uuid4())
    with app.connection() as conn:
        app.store.register_worker(conn, id=worker_id, hostname="test", pid=1, queues=["default"],
                                  concurrency=1, pool="threads")
        jobs = app.store.claim(conn, worker_id, "default", 10)
    assert len(jobs) == 10
    return worker_id, jobs


def test_a_batch_records_its_good_outcomes_and_fails_only_the_unwritable_ones(app, claimed, raw_conn, schema):
    """FINISH of a batch with outcomes PostgreSQL refuses (NaN as a result, a raw NUL in a message,
    a lone surrogate in a traceback) records the seven others as they are and each bad one as
    FAILURE SerializationError saying which field holds what."""
    worker_id, jobs = claimed
    outcomes = [Outcome(id=j.id, attempt=j.attempt, state="SUCCESS", result=str(i),
                        result_content_type="application/json") for i, j in enumerate(jobs)]
    nan, nul, surrogate = jobs[2], jobs[5], jobs[9]
    outcomes[2] = Outcome(id=nan.id, attempt=nan.attempt, state="SUCCESS", result="[1, NaN]",
                          result_content_type="application/json")
    outcomes[5] = Outcome(id=nul.id, attempt=nul.attempt, state="FAILURE", exc_type="ValueError",
                          exc_message="raw \x00 NUL")
    outcomes[9] = Outcome(id=surrogate.id, attempt=surrogate.attempt, state="FAILURE", exc_type="ValueError",
                          exc_message="fine", traceback="Traceback: \udc80")
    with app.connection() as conn:
        Recorder(app.store, conn, worker_id).finish(outcomes)
    expected = {nan.id: "result contains NaN, which JSON cannot carry",
                nul.id: "exc_message contains a NUL character (\\x00)",
                surrogate.id: "traceback contains a lone surrogate (\\udc80)"}
    for i, job in enumerate(jobs):
        row = result_row(raw_conn, schema, job.id)
        if job.id in expected:
            assert (row["state"], row["exc_type"]) == ("FAILURE", "sqlq.errors.SerializationError")
            assert row["exc_message"].startswith(expected[job.id]), row["exc_message"]
        else:
            assert (row["state"], row["result"]) == ("SUCCESS", i)
    assert result_row(raw_conn, schema, nul.id)["exc_message"].find("raw \\x00 NUL") > 0
    assert result_row(raw_conn, schema, surrogate.id)["traceback"] == "Traceback: \\udc80"
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0


def test_a_retry_that_cannot_be_scheduled_becomes_failure_and_the_others_are_scheduled(app, claimed, raw_conn,
                                                                                      schema):
    """RETRY of a batch where one delay overflows PostgreSQL's interval: the other retries go back
    to the queue, the bad one is recorded as FAILURE saying the retry could not be scheduled."""
    worker_id, jobs = claimed
    requests = [RetryRequest(id=j.id, attempt=j.attempt, delay=3600.0, error="ValueError: again") for j in jobs]
    bad = jobs[4]
    requests[4] = RetryRequest(id=bad.id, attempt=bad.attempt, delay=float("inf"), error="ValueError: forever")
    with app.connection() as conn:
        Recorder(app.store, conn, worker_id).retry(requests)
    row = result_row(raw_conn, schema, bad.id)
    assert (row["state"], row["exc_type"]) == ("FAILURE", "sqlq.errors.SerializationError")
    assert "the retry could not be scheduled" in row["exc_message"] and "ValueError: forever" in row["exc_message"]
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE state = 'scheduled' AND retries = 1",
                  schema=schema) == 9


def test_a_connection_error_propagates_and_converts_nothing(app, claimed, raw_conn, schema):
    """A lost connection says nothing about the data: the error reaches the caller as it is (the
    finisher keeps the batch) and no outcome is turned into a FAILURE."""
    worker_id, jobs = claimed
    outcomes = [Outcome(id=j.id, attempt=j.attempt, state="SUCCESS", result="1") for j in jobs]
    conn = psycopg.connect(app.database_url, autocommit=True)
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        Recorder(app.store, conn, worker_id).finish(outcomes)
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema) == 0
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE state = 'running'", schema=schema) == 10


def test_a_database_that_refuses_every_outcome_keeps_the_batch(app, claimed, raw_conn, schema):
    """When even a plain FAILURE cannot be written (here: the results table is gone), the fault is
    not in the outcomes: the error propagates, and every job is still running, none recorded."""
    worker_id, jobs = claimed
    raw_conn.execute(sql.SQL("ALTER TABLE {}.results RENAME TO results_away").format(sql.Identifier(schema)))
    outcomes = [Outcome(id=j.id, attempt=j.attempt, state="SUCCESS", result="1") for j in jobs]
    with app.connection() as conn, pytest.raises(psycopg.errors.UndefinedTable):
        Recorder(app.store, conn, worker_id).finish(outcomes)
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE state = 'running'", schema=schema) == 10
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results_away", schema=schema) == 0
