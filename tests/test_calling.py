"""``delay`` / ``apply_async`` and their options, bulk enqueue, the async API."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest

from sqlq import App, AsyncResult
from sqlq.errors import ConfigurationError, InvalidNameError, SerializationError

TIMEOUT = 60


@pytest.fixture
def add(app: App):
    @app.task
    def add(x, y=0):
        return x + y

    return add


def _row(conn: psycopg.Connection, schema: str, job_id: str) -> dict:
    """The job row plus its times measured against the database clock."""
    cur = conn.execute(
        f"""SELECT *, extract(epoch FROM run_at - enqueued_at)::float8 AS run_after,
                   extract(epoch FROM expires_at - enqueued_at)::float8 AS expires_after
            FROM "{schema}".jobs WHERE id = %s""", (job_id,))
    names = [d.name for d in cur.description]
    row = cur.fetchone()
    assert row is not None, f"job {job_id} is not in the jobs table"
    return dict(zip(names, row, strict=True))


def _count(conn: psycopg.Connection, schema: str) -> int:
    return conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()[0]


def _db_now(conn: psycopg.Connection) -> dt.datetime:
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def test_delay_returns_a_result_with_a_uuid_id(app: App, add, raw_conn):
    result = add.delay(2, y=3)
    assert isinstance(result, AsyncResult) and isinstance(result.id, str)
    assert str(uuid.UUID(result.id)) == result.id
    row = _row(raw_conn, app.conf.schema, result.id)
    assert (row["task"], row["queue"], row["state"], row["args"], row["kwargs"]) == (
        add.name, "default", "available", [2], {"y": 3})
    assert row["run_after"] == 0 and row["expires_at"] is None


def test_apply_async_returns_a_result(app: App, add, raw_conn):
    result = add.apply_async((1,), {"y": 4})
    assert isinstance(result, AsyncResult) and uuid.UUID(result.id)
    assert result.task_name == add.name
    assert _row(raw_conn, app.conf.schema, result.id)["kwargs"] == {"y": 4}


def test_delay_and_get_through_a_worker(app: App, add, run_worker):
    result = add.delay(2, 3)
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) == 5


def test_countdown_uses_the_database_clock(app: App, add, raw_conn):
    before = _db_now(raw_conn)
    row = _row(raw_conn, app.conf.schema, add.apply_async((1,), countdown=60).id)
    after = _db_now(raw_conn)
    assert row["state"] == "scheduled"
    assert before <= row["enqueued_at"] <= after
    assert row["run_after"] == 60


def test_eta_aware_naive_and_past(app: App, add, raw_conn):
    schema = app.conf.schema
    eta = dt.datetime(2100, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    row = _row(raw_conn, schema, add.apply_async((1,), eta=eta).id)
    assert row["run_at"] == eta and row["state"] == "scheduled"
    naive = dt.datetime(2100, 1, 2, 3, 4, 5)
    assert _row(raw_conn, schema, add.apply_async((1,), eta=naive).id)["run_at"] == naive.replace(tzinfo=dt.UTC)
    past = _row(raw_conn, schema, add.apply_async((1,), eta=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).id)
    assert past["state"] == "available"


def test_countdown_and_eta_together_are_refused(app: App, add, raw_conn):
    with pytest.raises(ConfigurationError, match="either countdown= or eta="):
        add.apply_async((1,), countdown=5, eta=dt.datetime.now(dt.UTC))
    assert _count(raw_conn, app.conf.schema) == 0


def test_expires_in_seconds_and_as_datetime(app: App, add, raw_conn):
    schema = app.conf.schema
    assert _row(raw_conn, schema, add.apply_async((1,), expires=30).id)["expires_after"] == 30
    assert _row(raw_conn, schema, add.apply_async((1,), expires=2.5).id)["expires_after"] == 2.5
    when = dt.datetime(2100, 6, 1, 12, 0, tzinfo=dt.UTC)
    assert _row(raw_conn, schema, add.apply_async((1,), expires=when).id)["expires_at"] == when


def test_queue_option(app: App, add, raw_conn):
    assert _row(raw_conn, app.conf.schema, add.apply_async((1,), queue="video.high").id)["queue"] == "video.high"
    with pytest.raises(InvalidNameError, match="invalid queue name"):
        add.apply_async((1,), queue="has space")
    assert _count(raw_conn, app.conf.schema) == 1


def test_priority_higher_first_then_fifo(app: App, add, raw_conn):
    ids = {p: [add.apply_async((p,), priority=p).id for _ in range(2)] for p in (0, 5, -3, 9)}
    worker_id = str(uuid.uuid4())
    app.store.register_worker(raw_conn, id=worker_id, hostname="test", pid=0, queues=["default"],
                              concurrency=1, pool="solo")
    claimed = app.store.claim(raw_conn, worker_id, "default", 100)
    assert [j.id for j in claimed] == ids[9] + ids[5] + ids[0] + ids[-3]


def test_priority_order_seen_by_a_worker(app: App, run_worker):
    order = []

    @app.task
    def note(p):
        order.append(p)

    results = [note.apply_async((p,), priority=p) for p in (1, 3, 2)]
    with run_worker(app, pool="solo", prefetch_multiplier=1):
        for r in results:
            r.get(timeout=TIMEOUT)
    assert order == [3, 2, 1]


def test_priority_out_of_range(app: App, add, raw_conn):
    for priority in (40000, -40000, 1.5, "high"):
        with pytest.raises(ConfigurationError, match=f"from -32768 to 32767, got {priority!r}"):
            add.apply_async((1,), priority=priority)
    assert _count(raw_conn, app.conf.schema) == 0


def test_task_id_option(app: App, add, raw_conn):
    chosen = str(uuid.uuid4())
    assert add.apply_async((1,), task_id=chosen).id == chosen
    as_uuid = uuid.uuid4()
    assert add.apply_async((1,), task_id=as_uuid).id == str(as_uuid)
    assert _count(raw_conn, app.conf.schema) == 2
    # any string is a task id, as in Celery (tests/test_task_ids.py); anything else is refused
    with pytest.raises(ConfigurationError, match="task_id must be a string, got int 17"):
        add.apply_async((1,), task_id=17)
    assert _count(raw_conn, app.conf.schema) == 2


def test_headers_reach_the_task(app: App, raw_conn, run_worker):
    @app.task(bind=True)
    def headers(self):
        return self.request.headers

    result = headers.apply_async(headers={"trace": "abc", "n": 1})
    assert _row(raw_conn, app.conf.schema, result.id)["headers"] == {"trace": "abc", "n": 1}
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) == {"trace": "abc", "n": 1}
    with pytest.raises(SerializationError, match="headers must be JSON-serializable"):
        headers.apply_async(headers={"bad": object()})


def test_serializer_option(app: App, add, raw_conn):
    row = _row(raw_conn, app.conf.schema, add.apply_async((1,), serializer="msgpack").id)
    assert row["content_type"] == "application/x-msgpack" and row["args"] is None and row["payload"]
    with pytest.raises(SerializationError, match="unknown serializer 'xml'"):
        add.apply_async((1,), serializer="xml")


def test_unknown_option_is_refused(app: App, add, raw_conn):
    with pytest.raises(ConfigurationError, match="unknown option.*contdown"):
        add.apply_async((1,), contdown=5)
    assert _count(raw_conn, app.conf.schema) == 0


def test_args_and_kwargs_must_be_sequence_and_mapping(app: App, add):
    with pytest.raises(SerializationError, match="args must be a list or tuple, not int"):
        add.apply_async(5)
    with pytest.raises(SerializationError, match="kwargs must be a dict, not list"):
        add.apply_async((), [("y", 1)])


# --- bulk ---------------------------------------------------------------------------------------

def test_delay_many_is_one_statement(app: App, add, raw_conn):
    results = add.delay_many([(i, i) for i in range(50)] + [7])
    assert len(results) == 51 and len({r.id for r in results}) == 51
    rows = raw_conn.execute(f'SELECT id::text, args, enqueued_at FROM "{app.conf.schema}".jobs').fetchall()
    args_by_id = {r[0]: r[1] for r in rows}
    assert [args_by_id[r.id] for r in results] == [[i, i] for i in range(50)] + [[7]]
    assert len({r[2] for r in rows}) == 1  # one statement_timestamp(): one INSERT


def test_apply_many_with_options(app: App, add, raw_conn):
    results = add.apply_many([((1,), {"y": 2}), ((3,), {})], queue="bulk", priority=4, countdown=30)
    rows = [_row(raw_conn, app.conf.schema, r.id) for r in results]
    assert [(r["args"], r["kwargs"]) for r in rows] == [([1], {"y": 2}), ([3], {})]
    assert {(r["queue"], r["priority"], r["state"], r["run_after"]) for r in rows} == {("bulk", 4, "scheduled", 30)}


def test_delay_many_with_a_bad_item_inserts_nothing(app: App, add, raw_conn):
    with pytest.raises(SerializationError, match="positional argument 0 \\(object\\)"):
        add.delay_many([(1, 2), (object(),), (3, 4)])
    assert _count(raw_conn, app.conf.schema) == 0


def test_bulk_results_through_a_worker(app: App, add, run_worker):
    results = add.delay_many([(i, 1) for i in range(10)])
    with run_worker(app):
        assert [r.get(timeout=TIMEOUT) for r in results] == [i + 1 for i in range(10)]


# --- async API ----------------------------------------------------------------------------------

async def test_adelay_and_aget(app: App, add, raw_conn, run_worker):
    result = await add.adelay(20, y=22)
    assert isinstance(result, AsyncResult) and uuid.UUID(result.id)
    assert _row(raw_conn, app.conf.schema, result.id)["args"] == [20]
    with run_worker(app):
        assert await result.aget(timeout=TIMEOUT) == 42


async def test_aapply_async_options_and_adelay_many(app: App, add, raw_conn):
    one = await add.aapply_async((1,), countdown=45, queue="later", priority=2)
    row = _row(raw_conn, app.conf.schema, one.id)
    assert (row["state"], row["run_after"], row["queue"], row["priority"]) == ("scheduled", 45, "later", 2)
    many = await add.adelay_many([(1, 2), (3, 4), 5])
    assert [_row(raw_conn, app.conf.schema, r.id)["args"] for r in many] == [[1, 2], [3, 4], [5]]
