"""kombu's full declaration shape on a real PostgreSQL: Celery's items form of task_routes, routes
naming exchange_type (declared with that type, refused when it exists with another), positional
bindings, task_default_exchange for queues declared without one, and Broadcast with real workers
(each gets its own copy; a gone worker's queue is unbound and its waiting copies revoked)."""

from __future__ import annotations

import contextlib
import re

import psycopg
import pytest

from sqlq import Exchange, GroupResult, Queue, binding
from sqlq.errors import RoutingError, SqlqCompatibilityWarning, UnknownExchange, Unroutable
from sqlq.result import AsyncResult
from sqlq.routing import Broadcast, apply_routes, list_routes
from tests.apps.harness import result_row as harness_result_row
from tests.apps.harness import wait_for


def jobs(app) -> list[tuple]:
    with app.connection() as conn:
        return conn.execute(f'SELECT queue, priority FROM "{app.conf.schema}".jobs ORDER BY seq, queue').fetchall()


def exchange_types(app) -> dict[str, str]:
    return {r.exchange: r.type for r in list_routes(app)}


def bound(app, exchange: str) -> set[str]:
    return {r.queue for r in list_routes(app) if r.exchange == exchange and r.queue is not None}


def test_task_routes_items_form_and_mixed_lists_place_the_jobs(app):
    make = app.task
    feed = make(name="feed.tasks.import_feed")(lambda: None)
    video = make(name="video.tasks.compress")(lambda: None)
    other = make(name="other.tasks.x")(lambda: None)
    app.conf.task_routes = ([("feed.tasks.*", {"queue": "feeds"}),
                             (re.compile(r"(video|image)\.tasks\..*"), {"queue": "media", "priority": 3})],)
    feed.delay(), video.delay(), other.delay()
    app.conf.task_routes = [lambda name, *a, **kw: "first" if name.startswith("other.") else None,
                            ("video.tasks.*", "videos"), {"feed.tasks.*": "feeds2"}]
    feed.delay(), video.delay(), other.delay()
    assert jobs(app) == [("feeds", 0), ("media", 3), ("default", 0), ("feeds2", 0), ("videos", 0), ("first", 0)]
    # a bulk enqueue routes by name once for the batch, with the items form too
    app.conf.task_routes = [("video.tasks.*", "bulk")]
    video.delay_many([() for _ in range(3)])
    assert jobs(app)[-3:] == [("bulk", 0)] * 3


def test_a_route_with_exchange_type_declares_the_exchange_with_that_type(app):
    compress = app.task(name="video.tasks.compress")(lambda: None)
    app.conf.task_routes = {"video.tasks.*": {"exchange": "video", "exchange_type": "topic",
                                              "routing_key": "video.compress"}}
    with pytest.raises(Unroutable):  # declared by this first publish; no queue is bound yet
        compress.delay()
    assert exchange_types(app) == {"video": "topic"}
    apply_routes(app, [Queue("videos", "video", routing_key="video.#")])  # by name: the stored type
    assert isinstance(compress.delay(), AsyncResult)
    assert jobs(app) == [("videos", 0)]


def test_a_route_with_exchange_type_is_declared_on_a_sqlalchemy_connection_too(app):
    """A publish in the caller's SQLAlchemy transaction declares the typed exchange in that same
    transaction, as sqlq's own connections do (and so rolls back with it)."""
    compress = app.task(name="video.tasks.compress")(lambda: None)
    app.conf.task_routes = {"video.tasks.*": {"exchange": "video", "exchange_type": "topic",
                                              "routing_key": "video.compress"}}
    with app.engine.connect() as conn:
        with pytest.raises(Unroutable):
            compress.apply_async(connection=conn)
        conn.rollback()
    assert exchange_types(app) == {}  # rolled back with the caller's transaction
    with app.engine.begin() as conn:
        with pytest.raises(Unroutable):
            compress.apply_async(connection=conn)
    assert exchange_types(app) == {"video": "topic"}  # (the refusal wrote no job; the declaration committed)


def test_a_route_whose_exchange_type_differs_from_the_stored_one_writes_nothing(app):
    compress = app.task(name="video.tasks.compress")(lambda: None)
    apply_routes(app, [Queue("videos", Exchange("video", type="direct"), routing_key="video.compress")])
    app.conf.task_routes = {"video.tasks.*": {"exchange": "video", "exchange_type": "topic",
                                              "routing_key": "video.compress"}}
    with pytest.raises(RoutingError, match=r"nothing was enqueued: 'video' is direct in the database, declared topic"):
        compress.delay()
    # in the caller's transaction too, which the refusal leaves usable
    with app.connection() as conn, conn.transaction():
        with pytest.raises(RoutingError, match="exchange type conflict"):
            compress.apply_async(connection=conn)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert jobs(app) == [] and exchange_types(app) == {"video": "direct"}


def test_positional_bindings_and_queue_arguments(app):
    media = Exchange("media_x", type="direct")
    with pytest.warns(SqlqCompatibilityWarning, match="'x-message-ttl' has no meaning in sqlq"):
        queues = [Queue("media", [binding(media, routing_key="media.video"), binding(media, routing_key="media.image")],
                        queue_arguments={"x-max-priority": 10, "x-message-ttl": 1000})]
    assert apply_routes(app, queues) == (1, 2)
    task = app.task(name="tests.kombu.t")(lambda: None)
    task.apply_async(exchange="media_x", routing_key="media.image", priority=200)  # priorities always work
    assert jobs(app) == [("media", 200)]


def test_queues_without_an_exchange_bind_to_the_default_exchange(app):
    app.conf.update(task_default_exchange="main", task_default_exchange_type="topic")
    app.conf.task_queues = [Queue("plain"), Queue("feeds", routing_key="feed.#")]
    app.apply_routes()
    assert exchange_types(app) == {"main": "topic"} and bound(app, "main") == {"plain", "feeds"}
    task = app.task(name="feed.tasks.refresh")(lambda: None)
    task.delay()                                  # the default exchange, keyed by the task's name
    task.apply_async(routing_key="plain")
    task.apply_async(queue="direct")              # a queue is still direct delivery
    assert jobs(app) == [("feeds", 0), ("plain", 0), ("direct", 0)]


def test_a_default_exchange_type_that_disagrees_with_the_database_is_refused(app):
    apply_routes(app, [Queue("q", Exchange("main", type="direct"))])
    app.conf.update(task_default_exchange="main", task_default_exchange_type="fanout", task_queues=[Queue("plain")])
    with pytest.raises(RoutingError, match="'main' is direct in the database, declared fanout"):
        app.apply_routes()


# --- Broadcast ------------------------------------------------------------------------------------

def result_row(app, job_id: str) -> dict:
    with app.connection() as conn:
        row = harness_result_row(conn, app.conf.schema, job_id)
    assert row is not None
    return row


def worker_ids(app, result: GroupResult) -> list[str]:
    with app.connection() as conn:
        return sorted(r[0] for r in conn.execute(
            f'SELECT worker_id::text FROM "{app.conf.schema}".results WHERE group_id = %s', (result.id,)))


def test_broadcast_gives_every_worker_its_own_copy_and_forgets_gone_workers(app, run_worker):
    app.conf.task_queues = [Broadcast("reload"), Queue("default")]
    reload_config = app.task(name="ops.tasks.reload")(lambda n: n)
    routed = app.task(name="ops.tasks.routed", queue="reload")(lambda n: n * 10)
    with contextlib.ExitStack() as stack:
        threads = [run_worker(app, queues=["reload", "default"], concurrency=1) for _ in range(3)]
        workers = [stack.enter_context(t) for t in threads]
        wait_for(lambda: len(bound(app, "reload")) == 3, message="three workers bound to the broadcast")
        assert exchange_types(app)["reload"] == "fanout"
        assert bound(app, "reload") == {f"bcast.reload.{w.id}" for w in workers}

        first = reload_config.apply_async((1,), queue="reload")
        assert isinstance(first, GroupResult) and first.get(timeout=30) == [1, 1, 1]
        assert worker_ids(app, first) == sorted(w.id for w in workers)  # each ran it once
        second = routed.delay(2)  # the task's own queue is the broadcast
        assert second.get(timeout=30) == [20, 20, 20] and worker_ids(app, second) == sorted(w.id for w in workers)
        assert reload_config.delay(3).get(timeout=30) == 3  # -Q default is still an ordinary queue

        # A worker stops: a copy left in its queue is revoked, and the next broadcast skips it
        gone, stays = threads[0], workers[1:]
        gone_queue = f"bcast.reload.{gone.worker.id}"
        gone.stop()
        stranded = reload_config.apply_async((4,), queue=gone_queue)  # (direct to its queue, as if just sent)
        third = reload_config.apply_async((5,), queue="reload")
        assert third.get(timeout=30) == [5, 5] and worker_ids(app, third) == sorted(w.id for w in stays)
        assert stranded.state == "REVOKED"
        assert gone_queue not in bound(app, "reload")
        assert result_row(app, stranded.id)["exc_message"].startswith(f"broadcast copy for {gone_queue}, whose worker")

    with pytest.raises(Unroutable, match="no worker consumes broadcast 'reload'"):
        reload_config.apply_async((6,), queue="reload")
    assert bound(app, "reload") == set()


def test_a_broadcast_whose_worker_died_is_pruned_at_the_next_worker_start(app, run_worker, database_url):
    app.conf.task_queues = [Broadcast("reload")]
    task = app.task(name="ops.tasks.reload")(lambda n: n)
    dead = "bcast.reload.00000000-0000-4000-8000-000000000000"  # a worker whose row RESCUE deleted
    with psycopg.connect(database_url, autocommit=True) as conn:
        schema = app.conf.schema
        conn.execute(f'INSERT INTO "{schema}".exchanges (name, type) VALUES (%s, %s)', ("reload", "fanout"))
        conn.execute(f'INSERT INTO "{schema}".bindings (exchange, binding_key, queue) VALUES (%s, %s, %s)',
                     ("reload", "", dead))
    left = task.apply_async((1,), queue=dead)  # a copy it never ran
    assert left.state == "PENDING"
    with run_worker(app, queues=["reload"]) as worker:
        wait_for(lambda: bound(app, "reload") == {f"bcast.reload.{worker.id}"}, message="dead binding pruned")
        wait_for(lambda: left.state == "REVOKED", message="the dead queue's copy revoked")
        assert task.apply_async((2,), queue="reload").get(timeout=30) == 2


def test_a_broadcast_on_an_exchange_of_another_type_is_refused(app):
    apply_routes(app, [Queue("q", Exchange("reload", type="direct"))])
    app.conf.task_queues = [Broadcast("reload")]
    task = app.task(name="ops.tasks.reload")(lambda: None)
    with pytest.raises(RoutingError, match="'reload' is direct in the database, declared fanout"):
        task.apply_async(queue="reload")
    with pytest.raises(UnknownExchange):
        task.apply_async(exchange="nowhere")


async def test_the_async_api_declares_typed_exchanges_and_prunes_before_a_broadcast(app):
    compress = app.task(name="video.tasks.compress")(lambda: None)
    app.conf.task_routes = {"video.tasks.*": {"exchange": "video", "exchange_type": "topic"}}
    with pytest.raises(Unroutable):
        await compress.adelay()
    assert exchange_types(app) == {"video": "topic"}
    apply_routes(app, [Queue("videos", "video", routing_key="video.#")])
    assert isinstance(await compress.adelay(), AsyncResult)
    app.conf.task_routes = {"video.tasks.*": {"exchange": "video", "exchange_type": "fanout"}}
    with pytest.raises(RoutingError, match="'video' is topic in the database, declared fanout"):
        await compress.adelay()
    app.conf.update(task_routes=None, task_queues=[Broadcast("reload")])
    with pytest.raises(Unroutable, match="no worker consumes broadcast 'reload'"):
        await compress.aapply_async(queue="reload")
    assert jobs(app) == [("videos", 0)]


def test_a_live_worker_that_lost_its_broadcast_binding_gets_it_back_at_the_next_broadcast(app, run_worker):
    app.conf.task_queues = [Broadcast("reload")]
    task = app.task(name="ops.tasks.reload")(lambda n: n)
    with run_worker(app, queues=["reload"]) as worker:
        wait_for(lambda: bound(app, "reload") == {f"bcast.reload.{worker.id}"}, message="the worker bound")
        with app.connection() as conn:  # as BROADCAST_PRUNE does while RESCUE holds it dead, before it registers again
            conn.execute(f'DELETE FROM "{app.conf.schema}".bindings WHERE exchange = %s', ("reload",))
        assert task.apply_async((7,), queue="reload").get(timeout=30) == 7
        assert bound(app, "reload") == {f"bcast.reload.{worker.id}"}
