"""Chords on a real database with real workers: the counter row decremented by each member's
outcome in the transaction that records it, the body enqueued once by the member reaching zero
with every result in member order, Celery's failure policy (ChordError naming the member, the
body's errback runs, the body never runs), revoked members, an empty header, nested canvases (a
chain in the header, a group in a chain, a chord whose body is a chain), and a chord of 1,000
members consumed by 3 worker processes, two of them SIGKILLed, whose body runs exactly once."""

from __future__ import annotations

import pytest

from sqlq import chain, chord, group
from sqlq.errors import ChordError
from tests.apps.harness import WorkerProcess, create_runs_table, result_row, scalar, wait_for

TIMEOUT = 30


@pytest.fixture
def tasks(app):
    @app.task(name="proj.add")
    def add(x, y=0):
        return x + y

    @app.task(name="proj.tsum")
    def tsum(numbers):
        return sum(numbers)

    @app.task(name="proj.listing")
    def listing(values):
        return values

    @app.task(name="proj.boom")
    def boom(*args):
        raise ValueError(f"bad {list(args)}")

    @app.task(name="proj.on_chord_error")
    def on_chord_error(request, exc, traceback):
        return f"{request.id} {type(exc).__name__}: {exc}"

    return add, tsum, listing, boom, on_chord_error


def test_the_body_gets_every_result_in_member_order(app, run_worker, tasks, raw_conn, schema):
    add, tsum, listing, *_ = tasks
    with run_worker(app, concurrency=4):
        result = chord(add.s(i, i) for i in range(10))(listing.s())
        assert result.get(timeout=TIMEOUT) == [i + i for i in range(10)]
        assert result.parent.get(timeout=TIMEOUT) == [i + i for i in range(10)]  # the header's GroupResult
        assert (group(add.s(i, i) for i in range(5)) | tsum.s()).delay().get(timeout=TIMEOUT) == 20
        assert chord([add.s(1, 1), add.s(2, 2)], tsum.s()).delay().get(timeout=TIMEOUT) == 6
    row = raw_conn.execute(f'SELECT remaining, failed FROM "{schema}".chords WHERE id = %s',
                           (result.parent.id,)).fetchone()
    assert row == (0, None)
    body = result_row(raw_conn, schema, result.id)
    assert str(body["parent_id"]) == result.parent.id  # a chord's body hangs under its header


def test_a_failed_member_fails_the_chord_and_runs_the_bodys_errback(app, run_worker, tasks, raw_conn, schema):
    add, tsum, _, boom, on_chord_error = tasks
    body = tsum.s().on_error(on_chord_error.s())
    with run_worker(app, concurrency=2):
        result = chord([add.s(1, 1), boom.s(7), add.s(2, 2)], body).apply_async()
        with pytest.raises(ChordError, match=r"Dependency .* raised ValueError: bad \[7\]"):
            result.get(timeout=TIMEOUT)
        wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE task = 'sqlq.errback'",
                                schema=schema), timeout=TIMEOUT, message="the errback ran")
        errback = raw_conn.execute(f"""SELECT state, result FROM "{schema}".results
                                       WHERE task = 'sqlq.errback'""").fetchone()
    assert errback[0] == "SUCCESS" and errback[1].startswith(f"{result.id} ChordError: Dependency")
    failed_member = result.parent.results[1]
    assert failed_member.id in errback[1] or failed_member.id in result_row(raw_conn, schema, result.id)["exc_message"]
    # the body never ran: no job of it ever existed, its result is the ChordError
    assert result_row(raw_conn, schema, result.id)["started_at"] is None


def test_a_revoked_member_counts_as_failed_and_never_wedges_the_chord(app, run_worker, tasks, raw_conn, schema):
    add, tsum, *_ = tasks
    result = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
    result.parent.results[0].revoke()
    with run_worker(app):
        with pytest.raises(ChordError, match="TaskRevokedError"):
            result.get(timeout=TIMEOUT)
        wait_for(lambda: scalar(raw_conn, "SELECT remaining FROM {s}.chords", schema=schema) == 0,
                 timeout=TIMEOUT, message="the other member counted")
    assert result.parent.results[1].get(timeout=TIMEOUT) == 4


def test_an_empty_header_runs_the_body_at_once(app, run_worker, tasks):
    _, tsum, listing, *_ = tasks
    with run_worker(app):
        assert chord([], listing.s()).apply_async().get(timeout=TIMEOUT) == []
        assert chain(listing.si([1]), chord([], listing.s())).apply_async().get(timeout=TIMEOUT) == []


def test_nested_canvases(app, run_worker, tasks):
    add, tsum, listing, *_ = tasks
    with run_worker(app, concurrency=4):
        # a chain inside the header: its last step's result is the member's
        assert chord([chain(add.s(1, 1), add.s(10)), add.s(5, 5)], listing.s()).delay().get(timeout=TIMEOUT) \
            == [12, 10]
        # a group inside a chain: the previous result goes to each member, the group then to the next step
        assert chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s()).delay().get(timeout=TIMEOUT) == 7
        # a chord whose body is a chain
        assert chord([add.s(1, 1), add.s(2, 2)], chain(tsum.s(), add.s(100))).delay().get(timeout=TIMEOUT) == 106
        # a chord in the middle of a chain: the rest follows its body
        assert chain(add.s(1, 1), chord([add.s(1), add.s(2)], tsum.s()), add.s(1000)).delay() \
            .get(timeout=TIMEOUT) == 1007
        # a group with a chain among its members (no body): the database runs it
        got = group(chain(add.s(1, 1), add.s(1)), add.s(3, 3)).delay()
        assert got.get(timeout=TIMEOUT) == [3, 6]


def test_revoking_a_chord_revokes_its_pending_parts(app, run_worker, tasks, raw_conn, schema):
    add, tsum, *_ = tasks
    result = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
    result.revoke()
    with run_worker(app):
        wait_for(lambda: result_row(raw_conn, schema, result.id), timeout=TIMEOUT)
    states = dict(raw_conn.execute(f'SELECT id::text, state FROM "{schema}".results').fetchall())
    assert {states[r.id] for r in result.parent.results} == {"REVOKED"}
    assert states[result.id] in ("FAILURE", "REVOKED")
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.revoked", schema=schema) == 3


def test_a_chord_of_1000_members_with_two_of_three_workers_killed_runs_its_body_once(
        raw_conn, schema, tmp_path, monkeypatch):
    monkeypatch.setenv("SQLQ_WORKER_LOST_TIMEOUT", "2")
    monkeypatch.setenv("SQLQ_WORKER_HEARTBEAT_INTERVAL", "0.3")
    monkeypatch.setenv("SQLQ_WORKER_MAINTENANCE_INTERVAL", "0.5")
    from tests.apps import workflows

    workflows.app.close()
    workflows.app.migrate()
    create_runs_table(raw_conn, schema)
    result = chord(workflows.member.s(i) for i in range(1000))(workflows.body.s())
    workers = [WorkerProcess(tmp_path / f"w{n}.log", app_path="tests.apps.workflows:app", pool="threads",
                             concurrency=2) for n in range(3)]
    try:
        done = lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema)  # noqa: E731
        wait_for(lambda: done() >= 150, timeout=90, message="150 members done")
        workers[0].kill()
        wait_for(lambda: done() >= 400, timeout=90, message="400 members done")
        workers[1].kill()
        assert done() < 1000
        assert result.get(timeout=120) == [1000, True, sum(range(1000))]
    finally:
        for w in workers:
            w.stop()
        workflows.app.close()
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.runs WHERE job_id = %s", result.id, schema=schema) == 1
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE state = 'SUCCESS'", schema=schema) == 1001
