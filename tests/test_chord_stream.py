"""A chord whose header is one task's calls due now (``chord(add.s(i) for i in ...)``), written as a
group is: its rows streamed by COPY, each member's arguments encoded as its row goes, every row
pointing to its chord by the same plan text. On a real database: the rows, the chord's counter and
saved member order, the body's ordered results; a member that cannot be encoded writes nothing
(sqlq's connection) or raises before anything is sent (the caller's, whose transaction goes on);
the caller's transaction decides; on SQLAlchemy the plan goes as JSON and runs the same."""

from __future__ import annotations

import psycopg
import pytest

from sqlq import chord
from sqlq.errors import SerializationError
from tests.apps.harness import scalar

TIMEOUT = 30


@pytest.fixture
def tasks(app):
    @app.task(name="proj.add")
    def add(x, y=0):
        return x + y

    @app.task(name="proj.listing")
    def listing(values):
        return values

    return add, listing


def _written(raw_conn, schema, group_id):
    """(member jobs, chords rows, groups rows) the chord ``group_id`` has."""
    return tuple(scalar(raw_conn, f"SELECT count(*) FROM {{s}}.{table} WHERE {column} = %s", group_id, schema=schema)
                 for table, column in (("jobs", "group_id"), ("chords", "id"), ("groups", "id")))


def test_the_header_is_streamed_with_its_chord_and_the_body_gets_every_result_in_order(
        app, run_worker, tasks, raw_conn, schema):
    add, listing = tasks
    result = chord((add.s(i, i) for i in range(300)), listing.s()).apply_async()
    header = result.parent
    ids = [r.id for r in header.results]
    rows = raw_conn.execute(f'SELECT id::text, group_id::text, root_id::text, parent_id, workflow, args, state '
                            f'FROM "{schema}".jobs WHERE group_id = %s', (header.id,)).fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert {(r[1], r[2], r[3], r[4]["chord"], r[6]) for r in rows} == {(header.id, ids[0], None, header.id, "available")}
    assert sorted(r[5][0] for r in rows) == list(range(300))
    assert raw_conn.execute(f'SELECT remaining, failed FROM "{schema}".chords WHERE id = %s',
                            (header.id,)).fetchone() == (300, None)
    assert raw_conn.execute(f'SELECT results FROM "{schema}".groups WHERE id = %s', (header.id,)).fetchone()[0] == ids
    with run_worker(app, concurrency=4):
        assert result.get(timeout=TIMEOUT) == [i + i for i in range(300)]
    assert scalar(raw_conn, "SELECT remaining FROM {s}.chords WHERE id = %s", header.id, schema=schema) == 0


def test_a_member_that_cannot_be_encoded_writes_nothing(app, tasks, raw_conn, schema):
    add, listing = tasks
    members = [add.s(i) for i in range(200)] + [add.s(object())]
    with pytest.raises(SerializationError, match="object"):
        chord(members, listing.s(), task_id="3b1f0c1e-8f43-4c43-9d1e-6f7f2a1b9c00").apply_async()
    assert _written(raw_conn, schema, "3b1f0c1e-8f43-4c43-9d1e-6f7f2a1b9c00") == (0, 0, 0)
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0


def test_in_the_callers_transaction_it_is_written_only_if_that_commits(app, tasks, raw_conn, schema,
                                                                       database_url):
    add, listing = tasks
    with psycopg.connect(database_url) as conn:
        kept = chord((add.s(i) for i in range(100)), listing.s()).apply_async(connection=conn)
        conn.commit()
        dropped = chord((add.s(i) for i in range(100)), listing.s()).apply_async(connection=conn)
        conn.rollback()
        bad = [add.s(i) for i in range(100)] + [add.s(object())]
        with pytest.raises(SerializationError, match="object"):
            chord(bad, listing.s(), task_id="5c2e7a9b-1d3f-4e6a-8b0c-2f4d6e8a0b1c").apply_async(connection=conn)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the caller's transaction goes on
        conn.commit()
    assert _written(raw_conn, schema, kept.parent.id) == (100, 1, 1)
    assert _written(raw_conn, schema, dropped.parent.id) == (0, 0, 0)
    assert _written(raw_conn, schema, "5c2e7a9b-1d3f-4e6a-8b0c-2f4d6e8a0b1c") == (0, 0, 0)


def test_on_a_sqlalchemy_connection_the_plan_goes_as_json_and_runs_the_same(app, run_worker, tasks, raw_conn,
                                                                           schema, database_url):
    import sqlalchemy as sa

    add, listing = tasks
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            result = chord((add.s(i, 1) for i in range(100)), listing.s()).apply_async(connection=conn)
    finally:
        engine.dispose()
    header = result.parent
    assert _written(raw_conn, schema, header.id) == (100, 1, 1)
    firsts = raw_conn.execute(f'SELECT DISTINCT root_id::text, workflow FROM "{schema}".jobs WHERE group_id = %s',
                              (header.id,)).fetchall()
    assert firsts == [(header.results[0].id, {"chord": header.id})]
    with run_worker(app, concurrency=4):
        assert result.get(timeout=TIMEOUT) == [i + 1 for i in range(100)]


def test_a_router_function_routes_each_member(app, tasks, raw_conn, schema):
    add, listing = tasks

    def by_parity(name, args, kwargs, options, task=None, **kw):
        if name == "proj.listing":
            return None
        return {"queue": "even" if args[0] % 2 == 0 else "odd"}

    app.conf.task_routes = [by_parity]
    result = chord((add.s(i) for i in range(100)), listing.s()).apply_async()
    counts = dict(raw_conn.execute(f'SELECT queue, count(*) FROM "{schema}".jobs WHERE group_id = %s GROUP BY queue',
                                   (result.parent.id,)).fetchall())
    assert counts == {"even": 50, "odd": 50}


def test_sent_from_a_running_task_the_members_hang_under_it(app, run_worker, tasks, raw_conn, schema):
    add, listing = tasks

    @app.task(name="proj.fan_out")
    def fan_out(n):
        return chord((add.s(i) for i in range(n)), listing.s()).apply_async().id

    with run_worker(app, concurrency=4):
        sender = fan_out.delay(100)
        body = app.AsyncResult(sender.get(timeout=TIMEOUT))
        assert body.get(timeout=TIMEOUT) == list(range(100))
    members = raw_conn.execute(f'SELECT DISTINCT parent_id::text, root_id::text FROM "{schema}".results '
                               f"WHERE task = 'proj.add'").fetchall()
    assert members == [(sender.id, sender.id)]
    assert scalar(raw_conn, "SELECT root_id::text FROM {s}.results WHERE id = %s", body.id, schema=schema) == sender.id
