"""kombu's full declaration shape and Celery's task_routes forms, decided without a server:
(glob_or_regex, route) pairs, routes naming exchange_type, Queue(name, [binding, ...]), kombu's
Queue/Exchange keyword arguments (used, or one warning each naming them), the default exchange
applied to queues without one, and Broadcast (sqlq/routing/resolution.py, declarations.py)."""

from __future__ import annotations

import pickle
import re
import warnings

import pytest

from sqlq import App
from sqlq.config import Settings
from sqlq.errors import ConfigurationError, SqlqCompatibilityWarning
from sqlq.routing.declarations import Broadcast, Exchange, Queue, WorkerBroadcasts, binding, plan
from sqlq.routing.resolution import Destination, RoutedExchange, lookup, resolve, routes_by_name_only

_app = App("tests.unit.routing_kombu", database_url="postgresql://nobody@127.0.0.1:1/none")
plain = _app.task(name="feed.tasks.refresh")(lambda *a: None)
to_broadcast = _app.task(name="ops.tasks.reload", queue="reload")(lambda *a: None)
WORKER = "0b6f1c52-5f0e-4e8e-9a4b-1c1d2e3f4a5b"

MEDIA = re.compile(r"(video|image)\.tasks\..*")


def queue_of(routes, name: str) -> str | None:
    return resolve(Settings(task_routes=routes), name, (), {}).queue


# --- task_routes: Celery's items form -----------------------------------------------------------

def test_a_list_of_pattern_route_pairs_routes_in_list_order():
    routes = [("feed.tasks.*", {"queue": "feeds"}), (MEDIA, {"queue": "media"}), ("feed.tasks.refresh", "never")]
    assert queue_of(routes, "feed.tasks.refresh") == "feeds"  # the first pair that matches wins
    assert queue_of(routes, "video.tasks.compress") == "media"
    assert queue_of(routes, "image.tasks.resize") == "media"
    assert queue_of(routes, "audio.tasks.x") == "default"
    assert routes_by_name_only(routes)


def test_celerys_tuple_holding_a_list_of_pairs_is_one_map_exact_names_first():
    routes = ([("feed.tasks.*", "feeds"), ("feed.tasks.refresh", "exact"), (MEDIA, {"queue": "media"})],)
    assert queue_of(routes, "feed.tasks.refresh") == "exact"  # as Celery's MapRoute
    assert queue_of(routes, "feed.tasks.other") == "feeds"
    assert queue_of(routes, "video.tasks.x") == "media"
    assert routes_by_name_only(routes)


def test_a_list_mixing_dicts_router_functions_and_pairs_asks_each_in_order():
    def urgent(name, args, kwargs, options, task=None, **kw):
        return {"queue": "urgent"} if kwargs.get("urgent") else None

    routes = [urgent, ("feed.tasks.*", {"queue": "feeds", "priority": 2}), {"feed.tasks.refresh": "later"}]
    conf = Settings(task_routes=routes)
    assert resolve(conf, plain.name, (), {"urgent": True}) == Destination("urgent", None, None, None)
    assert resolve(conf, plain.name, (), {}) == Destination("feeds", None, None, 2)
    assert lookup(routes, "other.task", (), {}, {}) is None
    assert not routes_by_name_only(routes)  # a router function may route each call differently
    assert routes_by_name_only([{"a": "b"}, ("c.*", "d"), [("e", "f")]])


def test_a_bare_pattern_in_task_routes_says_how_to_map_it():
    with pytest.raises(ConfigurationError, match=r"is a pattern, not a router's dotted path.*\[\('feed\.tasks\.\*'"):
        queue_of(["feed.tasks.*"], plain.name)
    with pytest.raises(ConfigurationError, match=r"or \(glob_or_regex, route\) pairs; got \(1, 2, 3\)"):
        queue_of([(1, 2, 3)], plain.name)


# --- a route naming exchange_type ----------------------------------------------------------------

def test_a_route_with_exchange_type_gives_a_typed_exchange():
    conf = Settings(task_routes={plain.name: {"exchange": "video", "exchange_type": "topic",
                                              "routing_key": "video.compress"}})
    dest = resolve(conf, plain.name, (), {})
    assert dest == Destination(None, "video", "video.compress", None)
    assert isinstance(dest.exchange, RoutedExchange) and dest.exchange.type == "topic"
    assert not dest.exchange.broadcast
    # an Exchange object says its type the same way; a plain name keeps the stored type
    by_object = resolve(Settings(task_routes={"*": {"exchange": Exchange("video", type="fanout")}}), "t", (), {})
    assert isinstance(by_object.exchange, RoutedExchange) and by_object.exchange.type == "fanout"
    assert type(resolve(Settings(task_routes={"*": {"exchange": "video"}}), "t", (), {}).exchange) is str
    assert pickle.loads(pickle.dumps(dest.exchange)).type == "topic"


@pytest.mark.parametrize(("route", "says"), [
    ({"exchange": "v", "exchange_type": "headers"}, "sqlq has no headers exchange"),
    ({"exchange": "v", "exchange_type": "topc"}, "use one of: direct, fanout, topic"),
    ({"queue": "q", "exchange_type": "topic"}, "gives exchange_type without an exchange"),
    ({"exchange": Exchange("v", type="direct"), "exchange_type": "topic"}, "give one type"),
])
def test_a_bad_exchange_type_says_what_to_write(route, says):
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        resolve(Settings(task_routes={"*": route}), "t", (), {})


# --- Queue: positional bindings, kombu's keyword arguments --------------------------------------

def test_queue_takes_a_list_of_bindings_in_the_exchanges_place():
    media = Exchange("media", type="topic")
    q = Queue("media", [binding(media, routing_key="media.video"), binding(media, routing_key="media.image")])
    assert q.exchange is None and len(q.bindings) == 2
    assert plan([q]).bindings == (("media", "media.video", "media"), ("media", "media.image", "media"))
    with pytest.raises(ConfigurationError, match="not both"):
        Queue("m", media, bindings=[binding(media, "k")])
    with pytest.raises(ConfigurationError, match="bindings must be binding"):
        Queue("m", [("media", "k")])


def test_kombus_nameless_default_exchange_means_no_exchange():
    assert Queue("q", Exchange("")).exchange is None and Queue("q", "").exchange is None
    assert plan([Queue("q", Exchange(""), routing_key="q")]) == plan([])


def test_max_priority_is_accepted_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = Queue("p", queue_arguments={"x-max-priority": 10}, durable=True, auto_delete=False, exclusive=False)
        assert q.max_priority == 10
        assert Queue("p", max_priority=5).max_priority == 5
        Exchange("e", type="direct", durable=True, delivery_mode="persistent")


@pytest.mark.parametrize(("make", "names"), [
    (lambda: Queue("q", durable=False), "durable=False"),
    (lambda: Queue("q", exclusive=True), "exclusive=True"),
    (lambda: Queue("q", auto_delete=True), "auto_delete=True"),
    (lambda: Queue("q", no_ack=True), "acks_late=False"),
    (lambda: Queue("q", message_ttl=60), "expires="),
    (lambda: Queue("q", expires=60), "expires=60"),
    (lambda: Queue("q", max_length=10), "max_length=10"),
    (lambda: Queue("q", max_length_bytes=10), "max_length_bytes=10"),
    (lambda: Queue("q", consumer_arguments={"x-priority": 1}), "consumer_arguments"),
    (lambda: Queue("q", binding_arguments={"x-match": "all"}), "binding_arguments"),
    (lambda: Queue("q", alias="other"), "alias='other'"),
    (lambda: Queue("q", on_declared=print), "on_declared"),
    (lambda: Queue("q", queue_arguments={"x-queue-type": "quorum"}), "'x-queue-type'"),
    (lambda: Queue("q", queue_arguments={"x-dead-letter-exchange": "dlx"}), "FAILURE result"),
    (lambda: Queue("q", queue_arguments={"x-custom": 1}), "'x-custom'"),
    (lambda: Exchange("e", durable=False), "durable=False"),
    (lambda: Exchange("e", auto_delete=True), "auto_delete=True"),
    (lambda: Exchange("e", delivery_mode=1), "always persistent"),
    (lambda: Exchange("e", arguments={"alternate-exchange": "x"}), "alternate_queue="),
    (lambda: binding(Exchange("e"), "k", arguments={"x-match": "any"}), "binding arguments"),
])
def test_each_meaningless_kombu_argument_warns_once_naming_it(make, names):
    with pytest.warns(SqlqCompatibilityWarning, match="has no meaning in sqlq") as caught:
        make()
    assert len(caught) == 1 and names in str(caught[0].message)


def test_no_declare_and_passive_declare_nothing_of_their_own():
    ex = Exchange("stored", type="topic", passive=True)
    assert plan([Queue("skip", Exchange("x"), no_declare=True)]) == plan([])
    assert plan([Queue("q", ex, routing_key="a.#")]).exchanges == (("stored", None, None),)  # type not imposed
    assert plan([Queue("q", ex, routing_key="a.#")]).bindings == (("stored", "a.#", "q"),)


# --- task_default_exchange for queues declared without one ---------------------------------------

def test_queues_without_an_exchange_bind_to_the_default_exchange_as_kombu_does():
    conf = Settings(task_default_exchange="main", task_default_exchange_type="topic")
    declared = plan([Queue("plain"), Queue("keyed", routing_key="k.#"), Queue("own", Exchange("x"))], conf)
    assert declared.exchanges == (("main", "topic", None), ("x", "direct", None))
    assert declared.bindings == (("main", "plain", "plain"), ("main", "k.#", "keyed"), ("x", "own", "own"))
    conf.task_default_routing_key = "everything"
    assert plan(["plain"], conf).bindings == (("main", "everything", "plain"),)
    assert plan(["plain"], Settings()).bindings == ()  # no default exchange: direct delivery by name


def test_the_default_exchanges_type_must_agree_with_its_declaration():
    conf = Settings(task_default_exchange="main", task_default_exchange_type="fanout")
    assert plan([Queue("a"), Queue("b")], conf).bindings == (("main", "", "a"), ("main", "", "b"))
    with pytest.raises(ConfigurationError, match="task_default_exchange_type"):
        plan([Queue("c", Exchange("main", type="direct"))], conf)


# --- Broadcast ------------------------------------------------------------------------------------

def test_broadcast_declares_a_fanout_exchange_and_no_shared_queue():
    declared = plan([Broadcast("reload"), Broadcast("stats", queue="stats_all")])
    assert declared.exchanges == (("reload", "fanout", None), ("stats", "fanout", None))
    assert declared.bindings == (("stats", "", "stats_all"),)  # kombu's shared queue: one for all


def test_a_worker_consuming_a_broadcast_consumes_its_own_queue():
    declared = [Queue("video"), Broadcast("reload"), Broadcast("stats", queue="stats_all"),
                Broadcast("cfg", queue="cfg", unique=True, alias="config")]
    mine = WorkerBroadcasts(declared, ["video", "reload", "stats", "config"], WORKER)
    assert mine.queues == ["video", f"bcast.reload.{WORKER}", "stats_all", f"bcast.cfg.{WORKER}"]
    assert mine.bindings == [("reload", f"bcast.reload.{WORKER}"), ("stats", "stats_all"),
                             ("cfg", f"bcast.cfg.{WORKER}")]
    assert WorkerBroadcasts(None, ["video"], WORKER).queues == ["video"]


def test_a_call_to_a_broadcast_name_is_published_to_its_fanout_exchange():
    conf = Settings(task_queues=[Broadcast("reload"), Queue("video")])
    for dest in (resolve(conf, to_broadcast.name, (), {}, task=to_broadcast),   # the task's queue
                 resolve(conf, plain.name, (), {}, queue="reload"),             # apply_async(queue=)
                 resolve(conf, plain.name, (), {}, queue=Broadcast("reload")),
                 resolve(Settings(task_queues=conf.task_queues, task_routes={"*": {"queue": "reload"}}),
                         plain.name, (), {})):
        assert dest.queue is None and dest.exchange == "reload"
        assert isinstance(dest.exchange, RoutedExchange) and dest.exchange.broadcast
        assert dest.exchange.type == "fanout"
    assert resolve(conf, plain.name, (), {}, queue="video") == Destination("video", None, None, None)


@pytest.mark.parametrize(("make", "says"), [
    (lambda: Broadcast("b" * 160), "at most 157 characters"),
    (lambda: Broadcast("b", exchange=Exchange("b", type="topic")), "must be a fanout exchange"),
    (lambda: Broadcast("b", routing_key="k"), "binds to its fanout exchange only"),
    (lambda: Broadcast("bad name"), "invalid broadcast name"),
])
def test_bad_broadcasts_say_why(make, says):
    with pytest.raises(Exception, match=re.escape(says)):
        make()
