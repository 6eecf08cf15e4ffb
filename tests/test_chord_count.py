"""How a chord counts, on a real database: its members' successes are counted once per chord at
the end of the statement that records them (the row trigger lists them in a transaction-local
setting, the statement trigger workflow_chord_count reads it), failures at once. A chord whose
members all finish in one FINISH statement runs its body once with every result in order; a
failure in the same statement fails the body once and the body never runs; the setting is empty
after every statement; two sqlq schemas in one statement count their own chords apart."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from sqlq import App, AsyncResult, chord
from sqlq.errors import InvalidNameError
from sqlq.store.records import Outcome
from tests.apps.harness import result_row, scalar

TIMEOUT = 30
workflows_migration = importlib.import_module("migrations.versions.0007_workflows")


@pytest.fixture
def tasks(app: App) -> tuple[Any, Any]:
    @app.task(name="proj.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(name="proj.listing")
    def listing(values: list[int]) -> list[int]:
        return values

    return add, listing


def claim_all(app: App, conn: psycopg.Connection, n: int) -> tuple[str, list[Any]]:
    """Every waiting job, claimed by one worker (registered here, never run)."""
    worker = str(uuid.uuid4())
    app.store.register_worker(conn, id=worker, hostname="batch@host", pid=1, queues=["default"],
                              concurrency=1, pool="threads")
    claimed = app.store.claim(conn, worker, "default", n + 10)
    assert len(claimed) == n
    return worker, claimed


def test_a_chord_whose_members_all_finish_in_one_statement_runs_its_body_once(app, run_worker, tasks, raw_conn,
                                                                              schema):
    add, listing = tasks
    n = 300
    result = chord(add.s(i, i) for i in range(n))(listing.s())
    setting = workflows_migration.chord_parts_setting(schema)
    with app.connection() as conn:
        worker, claimed = claim_all(app, conn, n)
        values = {str(job.id): json.dumps(json.loads(job.args)[0] * 2) for job in claimed}
        with conn.transaction():
            recorded = app.store.finish(conn, worker, [Outcome(id=str(job.id), attempt=job.attempt, state="SUCCESS",
                                                               result=values[str(job.id)],
                                                               result_content_type="application/json")
                                                       for job in claimed])
            # every entry was counted by the statement's end: nothing is left for a later statement
            assert conn.execute("SELECT coalesce(current_setting(%s, true), '')", (setting,)).fetchone()[0] == ""
    assert recorded == n
    assert raw_conn.execute(f'SELECT remaining, failed FROM "{schema}".chords WHERE id = %s',
                            (result.parent.id,)).fetchone() == (0, None)
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE id = %s", result.id, schema=schema) == 1
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) == [i + i for i in range(n)]
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE task = 'proj.listing'", schema=schema) == 1


def test_a_failure_in_the_same_statement_fails_the_body_once(app, tasks, raw_conn, schema):
    add, listing = tasks
    n = 40
    result = chord(add.s(i) for i in range(n))(listing.s())
    members = [r.id for r in result.parent.results]
    failing = {members[7], members[31]}
    with app.connection() as conn:
        worker, claimed = claim_all(app, conn, n)
        outcomes = [Outcome(id=str(job.id), attempt=job.attempt, state="FAILURE", exc_type="ValueError",
                            exc_message=f"bad {job.id}", traceback="Traceback")
                    if str(job.id) in failing else
                    Outcome(id=str(job.id), attempt=job.attempt, state="SUCCESS", result="1",
                            result_content_type="application/json")
                    for job in claimed]
        assert app.store.finish(conn, worker, outcomes) == n
    remaining, failed = raw_conn.execute(f'SELECT remaining, failed FROM "{schema}".chords WHERE id = %s',
                                         (result.parent.id,)).fetchone()
    assert remaining == 0 and failed.startswith("Dependency ") and "raised ValueError" in failed
    body = result_row(raw_conn, schema, result.id)
    assert body["state"] == "FAILURE" and body["exc_type"] == "sqlq.errors.ChordError"
    assert body["exc_message"] == failed  # the first failure's, recorded once
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0  # the body never enqueued


@pytest.fixture
def other_app(app: App, schema: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """A second sqlq schema in the same database, its name differing from a lower-case one only
    in case (the setting names must differ all the same). SQLQ_SCHEMA (which the schema fixture
    sets, and which wins over code) names it while the app reads it, which it does once."""
    name = f"T_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("SQLQ_SCHEMA", name)
    application = App("tests-other", database_url=database_url, schema=name)
    application.migrate()
    assert application.conf.schema == name and app.conf.schema == schema
    monkeypatch.setenv("SQLQ_SCHEMA", schema)
    yield application
    application.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_each_schema_has_its_own_setting_whatever_the_case_of_its_name(raw_conn):
    names = ["ab", "Ab", "aB", "a_b", "a__b", "A_b", "sqlq", "t_0123abcd"]
    settings = [workflows_migration.chord_parts_setting(n) for n in names]
    assert len(set(settings)) == len(names)
    for setting in settings:  # each a name PostgreSQL takes for a custom setting
        assert raw_conn.execute("SELECT set_config(%s, 'x', false), current_setting(%s)",
                                (setting, setting)).fetchone() == ("x", "x")
    with pytest.raises(InvalidNameError):
        workflows_migration.chord_parts_setting('a"; DROP')


def test_two_schemas_in_one_statement_count_their_own_chords(app, other_app, raw_conn, schema):
    chords = {}
    for application in (app, other_app):
        @application.task(name="proj.add")
        def add(x: int) -> int:
            return x

        @application.task(name="proj.listing")
        def listing(values: list[int]) -> list[int]:
            return values

        chords[application.conf.schema] = chord((add.s(i) for i in range(5)), app=application)(listing.s())
    # One statement moves both schemas' members into results (each as SUCCESS with its argument),
    # the second schema's rows inserted as the first schema's come (a LATERAL join on them), so
    # every row trigger of both runs before either statement trigger: what would mix the schemas'
    # entries if they shared a setting.
    first, second = schema, other_app.conf.schema
    pairs = list(zip([r.id for r in chords[first].parent.results], [r.id for r in chords[second].parent.results],
                     strict=True))
    columns = ("id, task, queue, priority, state, args, kwargs, content_type, result, result_content_type, "
               "enqueued_at, group_id, root_id, parent_id, workflow")
    moved = raw_conn.execute(
        f"""WITH a AS (
                INSERT INTO "{first}".results ({columns})
                SELECT id, task, queue, priority, 'SUCCESS', args, kwargs, content_type, args->0, 'application/json',
                       enqueued_at, group_id, root_id, parent_id, workflow
                FROM "{first}".jobs WHERE task = 'proj.add'
                RETURNING id
            ), b AS (
                INSERT INTO "{second}".results ({columns})
                SELECT j.id, j.task, j.queue, j.priority, 'SUCCESS', j.args, j.kwargs, j.content_type, j.args->0,
                       'application/json', j.enqueued_at, j.group_id, j.root_id, j.parent_id, j.workflow
                FROM a CROSS JOIN LATERAL (
                    SELECT * FROM "{second}".jobs AS j
                    WHERE j.id = (SELECT m.b FROM unnest(%s::uuid[], %s::uuid[]) AS m(a, b) WHERE m.a = a.id)) AS j
                RETURNING id
            )
            SELECT count(*) FROM b""",  # (b pulls a's rows one by one: reading a here would run a first)
        ([a for a, _ in pairs], [b for _, b in pairs])).fetchone()[0]
    assert moved == 5
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=first) == 5
    for s, result in chords.items():
        assert raw_conn.execute(f'SELECT remaining, failed FROM "{s}".chords WHERE id = %s',
                                (result.parent.id,)).fetchone() == (0, None)
        body = raw_conn.execute(f'SELECT args FROM "{s}".jobs WHERE id = %s', (result.id,)).fetchall()
        assert body == [([[0, 1, 2, 3, 4]],)]


def test_a_nested_statement_between_members_counts_each_member_once(app, run_worker, tasks, raw_conn, schema):
    """A job in the middle of the batch whose callback was revoked: starting the callback inserts
    its REVOKED result (a nested statement, whose statement trigger counts the members listed so
    far); the members after it are counted by the FINISH statement's own statement trigger."""
    add, listing = tasks
    first = chord((add.s(i) for i in range(10)), app=app)(listing.s())
    callback_id = str(uuid.uuid4())
    callback = add.si(100).set(task_id=callback_id)
    linked = add.apply_async((1,), link=callback)
    second = chord((add.s(i) for i in range(10, 20)), app=app)(listing.s())
    AsyncResult(callback_id, app).revoke()
    with app.connection() as conn:
        worker, claimed = claim_all(app, conn, 21)
        assert app.store.finish(conn, worker, [Outcome(id=str(job.id), attempt=job.attempt, state="SUCCESS",
                                                       result=json.dumps(json.loads(job.args)[0]),
                                                       result_content_type="application/json")
                                               for job in claimed]) == 21
    assert result_row(raw_conn, schema, callback_id)["state"] == "REVOKED"
    assert result_row(raw_conn, schema, linked.id)["state"] == "SUCCESS"
    for result in (first, second):
        assert raw_conn.execute(f'SELECT remaining, failed FROM "{schema}".chords WHERE id = %s',
                                (result.parent.id,)).fetchone() == (0, None)
        assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE id = %s", result.id, schema=schema) == 1
    with run_worker(app):
        assert first.get(timeout=TIMEOUT) == list(range(10))
        assert second.get(timeout=TIMEOUT) == list(range(10, 20))
