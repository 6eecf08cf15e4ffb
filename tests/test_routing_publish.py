"""Publishing through exchanges from Python: direct, fanout, topic; errors; transactions; declarations."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.orm import Session

from sqlq import Exchange, GroupResult, Queue, binding
from sqlq.errors import ConfigurationError, InvalidNameError, RoutingError, UnknownExchange, Unroutable
from sqlq.result import AsyncResult
from sqlq.routing import add_route, apply_routes, list_routes, remove_route, route_queues


def jobs(app, *columns: str) -> list[tuple]:
    cols = ", ".join(columns) or "queue"
    with app.connection() as conn:
        return conn.execute(f'SELECT {cols} FROM "{app.conf.schema}".jobs ORDER BY seq, queue').fetchall()


@pytest.fixture
def media(app):
    """A topic exchange with an alternate-free setup, a fanout exchange and a direct exchange."""
    topic = Exchange("media", type="topic")
    apply_routes(app, [
        Queue("video", topic, routing_key="media.video.#"),
        Queue("audio", bindings=[binding(topic, "media.audio.*"), binding(topic, "*.podcast")]),
        Queue("audit", Exchange("events", type="fanout")),
        Queue("mail", "events"),
        Queue("billing", Exchange("direct_ex"), routing_key="invoice"),
        Queue("billing_copy", "direct_ex", routing_key="invoice"),
        Queue("refunds", "direct_ex", routing_key="refund"),
    ])
    return app.task(name="tests.routing.echo")(lambda value=None: value)


def test_direct_exchange_matches_the_exact_key(app, media):
    result = media.apply_async(("r1",), exchange="direct_ex", routing_key="refund")
    assert isinstance(result, AsyncResult)
    assert jobs(app, "id::text", "queue") == [(result.id, "refunds")]
    with pytest.raises(Unroutable):
        media.apply_async(("r2",), exchange="direct_ex", routing_key="refund.x")


def test_a_key_matching_several_bindings_gives_one_job_per_queue_sharing_a_group(app, media):
    result = media.apply_async(("inv",), exchange="direct_ex", routing_key="invoice")
    assert isinstance(result, GroupResult)
    assert result.queues == ["billing", "billing_copy"]
    rows = jobs(app, "id::text", "queue", "group_id::text", "args")
    assert [(r[0], r[1]) for r in rows] == [(r.id, q) for r, q in zip(result.results, result.queues, strict=True)]
    assert {r[2] for r in rows} == {result.id}
    assert len({r[0] for r in rows}) == 2
    assert all(r[3] == ["inv"] for r in rows)
    assert result.children == result.results and len(result) == 2


def test_fanout_delivers_to_every_bound_queue_whatever_the_key(app, media):
    result = media.apply_async(("hello",), exchange="events", routing_key="ignored")
    assert isinstance(result, GroupResult)
    assert sorted(q for (q,) in jobs(app, "queue")) == ["audit", "mail"]
    assert {g for (g,) in jobs(app, "group_id::text")} == {result.id}


def test_a_single_match_keeps_the_given_task_id_and_has_no_group(app, media):
    task_id = "0b9d3a52-1f7e-4c55-9a2e-3a4f8f2d1c11"
    result = media.apply_async(exchange="media", routing_key="media.video.hd", task_id=task_id)
    assert result.id == task_id
    assert jobs(app, "id::text", "queue", "group_id") == [(task_id, "video", None)]


def test_topic_wildcards(app, media):
    assert route_queues(app, "media", "media.video") == ["video"]
    assert route_queues(app, "media", "media.video.hd.x") == ["video"]
    assert route_queues(app, "media", "media.audio.mp3") == ["audio"]
    assert route_queues(app, "media", "weekly.podcast") == ["audio"]
    with pytest.raises(Unroutable):
        route_queues(app, "media", "media.audio")  # '*' needs exactly one word
    with pytest.raises(UnknownExchange):
        route_queues(app, "nope", "x")


def test_unroutable_names_exchange_and_key_and_how_to_fix_and_writes_nothing(app, media):
    with pytest.raises(Unroutable) as info:
        media.apply_async(("x",), exchange="media", routing_key="text.plain")
    message = str(info.value)
    assert "'media'" in message and "'text.plain'" in message and "tests.routing.echo" in message
    assert "sqlq routes add" in message and "alternate" in message
    assert (info.value.exchange, info.value.routing_key) == ("media", "text.plain")
    assert jobs(app) == []


def test_unknown_exchange_is_a_clear_error(app, media):
    with pytest.raises(UnknownExchange) as info:
        media.delay_many([1], exchange="nowhere", routing_key="a")
    assert "'nowhere' does not exist" in str(info.value) and "task_queues" in str(info.value)
    assert isinstance(info.value, RoutingError)
    assert jobs(app) == []


def test_alternate_queue_collects_unroutable_messages(app, media):
    add_route(app, "media", alternate_queue="unrouted")
    result = media.apply_async(("lost",), exchange="media", routing_key="text.plain")
    assert isinstance(result, AsyncResult)
    assert jobs(app, "id::text", "queue") == [(result.id, "unrouted")]
    media.apply_async(exchange="media", routing_key="media.video")  # matched keys still go to bindings
    assert [q for (q,) in jobs(app)] == ["unrouted", "video"]


def test_a_batch_is_all_or_nothing(app, media):
    specs = [media.build_job(("a",), {}, exchange="media", routing_key="media.video"),
             media.build_job(("b",), {}, queue="plain"),
             media.build_job(("c",), {}, exchange="media", routing_key="no.match.here")]
    with pytest.raises(Unroutable) as info:
        app.enqueue(specs)
    assert info.value.routing_key == "no.match.here"
    assert jobs(app) == []
    results = app.enqueue(specs[:2] + [media.build_job(("d",), {}, exchange="events", routing_key="")])
    assert [type(r) for r in results] == [AsyncResult, AsyncResult, GroupResult]
    assert [q for (q,) in jobs(app)] == ["video", "plain", "audit", "mail"]


def test_routed_delay_is_one_statement(app, media, database_url):
    """Routing is resolved inside the INSERT: delay() through a topic exchange is one round trip."""

    class Counting(psycopg.Connection):
        statements: list[str] = []

        def execute(self, query, params=None, **kwargs):
            self.statements.append(str(query))
            return super().execute(query, params, **kwargs)

    with Counting.connect(database_url, autocommit=True) as conn:
        Counting.statements = []
        result = media.apply_async(("x",), exchange="media", routing_key="media.video.4k", connection=conn)
        assert len(conn.statements) == 1 and "INSERT INTO" in conn.statements[0]
        assert "route_queues" in conn.statements[0]
    assert jobs(app, "id::text", "queue") == [(result.id, "video")]


def test_routed_delay_on_sqlqs_own_connection_takes_the_prepared_fast_path(app, media):
    """Without a caller's connection, a routed delay() runs PUBLISH_ONE prepared once per pooled
    connection (libpq's PQexecPrepared): the same rows, results and errors as through psycopg,
    including a queue whose name PostgreSQL quotes in an array (NULL)."""
    apply_routes(app, [Queue("NULL", Exchange("loud", type="fanout")), Queue("quiet", "loud")])
    group = media.apply_async(("g",), exchange="loud")
    assert isinstance(group, GroupResult) and sorted(group.queues) == ["NULL", "quiet"]
    one = media.apply_async(("v",), exchange="media", routing_key="media.video.4k", countdown=60)
    assert isinstance(one, AsyncResult)
    with pytest.raises(Unroutable):
        media.apply_async(("x",), exchange="media", routing_key="nothing.here")
    with pytest.raises(UnknownExchange):
        media.apply_async(("x",), exchange="no_such_exchange")
    assert sorted(jobs(app, "id::text", "queue", "state")) == sorted(
        [(r.id, q, "available") for r, q in zip(group.results, group.queues, strict=True)]
        + [(one.id, "video", "scheduled")])
    with app.connection() as conn:
        prepared = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
    assert (app.store._fast["PUBLISH_ONE"].name.decode(),) in prepared


def test_unroutable_leaves_the_callers_transaction_usable(app, media, database_url):
    with psycopg.connect(database_url) as conn:
        media.apply_async(("before",), queue="plain", connection=conn)
        with pytest.raises(Unroutable):
            media.apply_async(("bad",), exchange="media", routing_key="zzz", connection=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        media.apply_async(("after",), exchange="media", routing_key="media.video", connection=conn)
        conn.commit()
    assert jobs(app, "queue", "args") == [("plain", ["before"]), ("video", ["after"])]


def test_routed_publish_in_a_sqlalchemy_session_commits_and_rolls_back_with_it(app, media):
    with Session(app.engine) as session:
        result = media.apply_async(("s",), exchange="events", routing_key="", connection=session)
        with pytest.raises(Unroutable):
            media.apply_async(("bad",), exchange="media", routing_key="zzz", connection=session)
        session.rollback()
    assert jobs(app) == []
    with Session(app.engine) as session:
        result = media.apply_async(("s",), exchange="events", routing_key="", connection=session)
        session.commit()
    assert isinstance(result, GroupResult)
    assert sorted(q for (q,) in jobs(app)) == ["audit", "mail"]


async def test_async_publish(app, media):
    result = await media.aapply_async(("a",), exchange="media", routing_key="media.audio.ogg")
    assert jobs(app, "id::text", "queue") == [(result.id, "audio")]
    with pytest.raises(Unroutable):
        await media.aapply_async(("b",), exchange="media", routing_key="x")


# --- declarations ---------------------------------------------------------------------------------

def test_apply_is_idempotent_and_additive(app):
    ex = Exchange("media", type="topic")
    assert apply_routes(app, [Queue("video", ex, routing_key="media.video.#")]) == (1, 1)
    assert apply_routes(app, [Queue("video", ex, routing_key="media.video.#")]) == (1, 0)
    apply_routes(app, [Queue("audio", ex, routing_key="media.audio.#")])
    assert [(r.exchange, r.type, r.binding_key, r.queue) for r in list_routes(app)] == [
        ("media", "topic", "media.audio.#", "audio"), ("media", "topic", "media.video.#", "video")]


def test_an_exchange_cannot_silently_change_type(app):
    apply_routes(app, [Queue("video", Exchange("media", type="topic"), routing_key="media.#")])
    with pytest.raises(RoutingError) as info:
        apply_routes(app, [Queue("video", Exchange("media", type="direct")), Queue("other", Exchange("x"))])
    assert "'media' is topic in the database, declared direct" in str(info.value)
    assert [r.exchange for r in list_routes(app)] == ["media"]  # nothing else was written either


def test_config_errors_are_clear(app):
    with pytest.raises(ConfigurationError, match="use one of: direct, fanout, topic"):
        Exchange("media", type="headers")
    with pytest.raises(InvalidNameError):
        Exchange("bad name; DROP TABLE jobs")
    with pytest.raises(InvalidNameError):
        Queue("bad queue")
    with pytest.raises(ConfigurationError, match="declared twice"):
        apply_routes(app, [Queue("a", Exchange("m", "topic")), Queue("b", Exchange("m", "direct"))])
    with pytest.raises(ConfigurationError, match="not both"):
        Queue("a", Exchange("m"), bindings=[binding("m", "k")])
    with pytest.raises(InvalidNameError, match="255"):
        apply_routes(app, [Queue("a", Exchange("m"), routing_key="k" * 256)])


def test_fanout_bindings_ignore_keys_and_string_exchanges_take_the_declared_type(app):
    fan = Exchange("events", type="fanout")
    apply_routes(app, [Queue("a", fan, routing_key="x"), Queue("a", "events", routing_key="y"), Queue("b", "events")])
    assert [(r.type, r.binding_key, r.queue) for r in list_routes(app)] == [("fanout", "", "a"), ("fanout", "", "b")]


def test_add_and_remove_routes(app):
    add_route(app, "orders", "new_orders", routing_key="order.created", type="direct")
    add_route(app, "orders", "all_orders", routing_key="order.created")
    add_route(app, "orders", "all_orders", routing_key="order.paid")
    assert route_queues(app, "orders", "order.created") == ["all_orders", "new_orders"]
    assert remove_route(app, "orders", "all_orders", "order.created") == 1
    assert route_queues(app, "orders", "order.created") == ["new_orders"]
    with pytest.raises(RoutingError, match="no binding"):
        remove_route(app, "orders", "all_orders", "order.created")
    with pytest.raises(RoutingError, match="is direct in the database, declared topic"):
        add_route(app, "orders", "x", type="topic")
    assert remove_route(app, "orders") == 1
    assert list_routes(app) == []
