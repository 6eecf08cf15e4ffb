"""The SQL API: ``<schema>.enqueue(...)`` and ``<schema>.publish(...)`` from psql and a bare psycopg
connection (no sqlq code on the producing side), then a sqlq worker runs the jobs."""

from __future__ import annotations

import subprocess
import uuid

import psycopg
import pytest

from sqlq import Exchange, Queue
from sqlq.routing import apply_routes


@pytest.fixture
def routed(app):
    """Tasks a worker can run, and a topic and a fanout exchange."""
    app.task(name="tests.sqlapi.add")(lambda x, y: x + y)
    app.task(name="tests.sqlapi.greet")(lambda name, punctuation="!": f"hello {name}{punctuation}")
    media = Exchange("media", type="topic")
    apply_routes(app, [Queue("video", media, routing_key="media.video.#"), Queue("all_media", media, "media.#"),
                       Queue("audit", Exchange("events", type="fanout")), Queue("mail", "events")])
    return app


def psql(database_url: str, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", database_url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, timeout=30)


def uuids(text: str) -> list[str]:
    return [str(uuid.UUID(part)) for part in text.strip().strip("{}").split(",")]


def test_psql_enqueue_and_publish_then_a_worker_runs_them(routed, database_url, run_worker):
    s = routed.conf.schema
    one = psql(database_url, f"""SELECT "{s}".enqueue('tests.sqlapi.add', '[2, 3]')""")
    assert one.returncode == 0, one.stderr
    named = psql(database_url, f"""SELECT "{s}".enqueue('tests.sqlapi.greet', kwargs => '{{"name": "psql"}}',
                                                        queue => 'video', priority => 5)""")
    fanned = psql(database_url, f"""SELECT "{s}".publish('events', 'any.key', 'tests.sqlapi.add', '[20, 22]')""")
    topic = psql(database_url, f"""SELECT "{s}".publish('media', 'media.video.hd', 'tests.sqlapi.add', '[1, 1]')""")
    assert named.returncode == fanned.returncode == topic.returncode == 0, (named.stderr, fanned.stderr, topic.stderr)
    fan_ids, topic_ids = uuids(fanned.stdout), uuids(topic.stdout)
    assert len(fan_ids) == 2 and len(topic_ids) == 2
    with run_worker(routed, queues=["default", "video", "all_media", "audit", "mail"]):
        assert routed.AsyncResult(uuids(one.stdout)[0]).get(timeout=30) == 5
        assert routed.AsyncResult(uuids(named.stdout)[0]).get(timeout=30) == "hello psql!"
        assert [routed.AsyncResult(i).get(timeout=30) for i in fan_ids] == [42, 42]
        assert [routed.AsyncResult(i).get(timeout=30) for i in topic_ids] == [2, 2]


def test_psql_errors_say_what_and_how_to_fix(routed, database_url):
    s = routed.conf.schema
    unroutable = psql(database_url, f"""SELECT "{s}".publish('media', 'text.plain', 'tests.sqlapi.add')""")
    assert unroutable.returncode != 0
    assert "no binding of exchange 'media' matches routing key 'text.plain'" in unroutable.stderr
    assert "HINT" in unroutable.stderr and "alternate" in unroutable.stderr
    unknown = psql(database_url, f"""SELECT "{s}".publish('nope', 'k', 'tests.sqlapi.add')""")
    assert "unknown exchange 'nope'" in unknown.stderr
    bad_args = psql(database_url, f"""SELECT "{s}".enqueue('tests.sqlapi.add', '{{"x": 1}}')""")
    assert "args must be a JSON array" in bad_args.stderr
    bad_queue = psql(database_url, f"""SELECT "{s}".enqueue('tests.sqlapi.add', queue => 'a b')""")
    assert "invalid queue name 'a b'" in bad_queue.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{s}".jobs').fetchone()[0] == 0


def test_psql_rollback_means_the_job_never_existed(routed, database_url):
    s = routed.conf.schema
    done = psql(database_url, f"""BEGIN; SELECT "{s}".publish('events', '', 'tests.sqlapi.add', '[1, 2]');
                                  SELECT "{s}".enqueue('tests.sqlapi.add', '[1, 2]'); ROLLBACK;""")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{s}".jobs').fetchone()[0] == 0


def test_bare_psycopg_producer_wakes_workers_at_commit(routed, database_url):
    """The NOTIFY goes on the same channel Python uses (<schema>.jobs, payload = queue), at commit."""
    s = routed.conf.schema
    with psycopg.connect(database_url, autocommit=True) as listener, psycopg.connect(database_url) as producer:
        listener.execute(routed.store.listen_jobs)
        producer.execute(f'SELECT "{s}".publish(%s, %s, %s, %s::jsonb)', ["events", "", "tests.sqlapi.add", "[1, 2]"])
        job_id = producer.execute(f'SELECT "{s}".enqueue(%s, %s::jsonb, queue => %s)',
                                  ["tests.sqlapi.add", "[3, 4]", "video"]).fetchone()[0]
        assert list(listener.notifies(timeout=0.3)) == []  # nothing is visible before commit
        producer.commit()
        payloads = set()
        for note in listener.notifies(timeout=20, stop_after=3):
            assert note.channel == routed.store.jobs_channel
            payloads.add(note.payload)
    assert payloads == {"audit", "mail", "video"}
    assert routed.AsyncResult(str(job_id)).state == "PENDING"


def test_sql_errors_carry_sqlstates_and_a_savepoint_keeps_the_transaction(routed, database_url):
    s = routed.conf.schema
    with psycopg.connect(database_url) as conn:
        with pytest.raises(psycopg.Error) as unknown, conn.transaction():
            conn.execute(f"""SELECT "{s}".publish('nope', 'k', 'tests.sqlapi.add')""")
        assert unknown.value.sqlstate == "SQ404"
        with pytest.raises(psycopg.Error) as unroutable, conn.transaction():
            conn.execute(f"""SELECT "{s}".publish('media', 'zzz', 'tests.sqlapi.add')""")
        assert unroutable.value.sqlstate == "SQ422"
        with pytest.raises(psycopg.errors.InvalidParameterValue), conn.transaction():
            conn.execute(f"""SELECT "{s}".enqueue('not a task name')""")
        conn.execute(f"""SELECT "{s}".enqueue('tests.sqlapi.add', '[1, 1]')""")
        conn.commit()
        assert conn.execute(f'SELECT count(*) FROM "{s}".jobs').fetchone()[0] == 1


SHAPE = ("task, queue, priority, state, kwargs, payload, content_type, headers, attempt, retries, "
         "acks_late, worker_id, started_at, last_error, group_id IS NOT NULL, "
         "run_at - enqueued_at, expires_at - enqueued_at")


def shapes(app, where: str) -> list[tuple]:
    with app.connection() as conn:
        return conn.execute(f'SELECT {SHAPE} FROM "{app.conf.schema}".jobs WHERE {where} ORDER BY queue').fetchall()


def test_sql_rows_have_exactly_the_shape_python_writes(routed, database_url):
    s = routed.conf.schema
    task = routed.tasks["tests.sqlapi.greet"]
    task.apply_async(("py",), {"punctuation": "?"}, queue="shape_now", priority=4, expires=60)
    task.apply_async(("py",), {}, queue="shape_later", countdown=30)
    task.apply_async(("py",), {}, exchange="events", routing_key="x", priority=-2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"""SELECT "{s}".enqueue('tests.sqlapi.greet', '["sql"]', '{{"punctuation": "?"}}',
                                             'shape_now', 4, expires_in => 60)""")
        conn.execute(f"""SELECT "{s}".enqueue('tests.sqlapi.greet', '["sql"]', queue => 'shape_later',
                                             countdown => 30)""")
        conn.execute(f"""SELECT "{s}".publish('events', 'x', 'tests.sqlapi.greet', '["sql"]', priority => -2)""")
    for where in ("queue = 'shape_now'", "queue = 'shape_later'", "queue IN ('audit', 'mail')"):
        python_rows = shapes(routed, f"{where} AND args = '[\"py\"]'")
        sql_rows = shapes(routed, f"{where} AND args = '[\"sql\"]'")
        assert python_rows and python_rows == sql_rows
    later = shapes(routed, "queue = 'shape_later'")
    assert {r[3] for r in later} == {"scheduled"}
