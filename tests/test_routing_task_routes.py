"""``task_routes`` and the routing options: where a call goes, with Celery's precedence."""

from __future__ import annotations

import re

import pytest

from sqlq import Exchange, GroupResult, Queue
from sqlq.errors import ConfigurationError, InvalidNameError, UnknownExchange
from sqlq.routing import apply_routes


def placed(app) -> list[tuple]:
    with app.connection() as conn:
        return conn.execute(f'SELECT queue, priority FROM "{app.conf.schema}".jobs ORDER BY seq, queue').fetchall()


@pytest.fixture
def tasks(app):
    make = app.task
    return {
        "import_feed": make(name="feed.tasks.import_feed")(lambda *a: None),
        "refresh": make(name="feed.tasks.refresh")(lambda *a, **k: None),  # (called with urgent=True)
        "resize": make(name="media.tasks.resize")(lambda *a: None),
        "pinned": make(name="media.tasks.pinned", queue="pinned", priority=3)(lambda *a: None),
    }


def test_dict_routes_by_exact_name_and_glob(app, tasks):
    app.conf.task_routes = {"feed.tasks.import_feed": {"queue": "imports"}, "feed.tasks.*": "feeds",
                            re.compile(r"media\..*"): {"queue": "media", "priority": 4}}
    tasks["import_feed"].delay()
    tasks["refresh"].delay()
    tasks["resize"].delay()
    assert placed(app) == [("imports", 0), ("feeds", 0), ("media", 4)]


def test_list_of_routers_first_answer_wins_and_functions_see_the_call(app, tasks):
    seen = []

    def by_argument(name, args, kwargs, options, task=None, **kw):
        seen.append((name, tuple(args), kwargs, options, task))
        return {"queue": "urgent", "priority": 9} if kwargs.get("urgent") else None

    app.conf.task_routes = [by_argument, {"feed.tasks.*": {"queue": "feeds"}}]
    tasks["refresh"].apply_async((1,), {"urgent": True})
    tasks["refresh"].apply_async((2,), {})
    assert placed(app) == [("urgent", 9), ("feeds", 0)]
    assert seen[0][:3] == ("feed.tasks.refresh", (1,), {"urgent": True})
    assert seen[0][4] is tasks["refresh"]


def test_router_by_dotted_path(app):
    app.conf.task_routes = ("tests.apps.routed.route_by_size",)
    task = app.task(name="tests.routed.echo")(lambda v: v)
    task.delay("big")
    task.delay("small")
    assert placed(app) == [("bulk", 5), ("default", 0)]


def test_route_to_an_exchange(app, tasks):
    ex = Exchange("feeds_x", type="topic")
    apply_routes(app, [Queue("feed_imports", ex, routing_key="feed.#.import_feed"),
                       Queue("feed_all", ex, routing_key="feed.#")])
    app.conf.task_routes = {"feed.tasks.*": {"exchange": "feeds_x"}}  # key defaults to the task name
    result = tasks["import_feed"].delay()
    assert isinstance(result, GroupResult)
    tasks["refresh"].delay()
    first, second, third = placed(app)
    assert sorted([first, second]) == [("feed_all", 0), ("feed_imports", 0)]
    assert third == ("feed_all", 0)


def test_precedence_explicit_then_task_then_route_then_default(app, tasks):
    apply_routes(app, [Queue("via_exchange", Exchange("x"), routing_key="k")])
    app.conf.task_routes = {"*": {"exchange": "x", "routing_key": "k", "priority": 2}}
    tasks["resize"].delay()                                   # the route
    tasks["resize"].apply_async(queue="explicit")             # apply_async's queue beats the route's exchange
    tasks["resize"].apply_async(priority=7)                   # explicit priority beats the route's
    tasks["pinned"].delay()                                   # the task's own queue and priority
    tasks["pinned"].apply_async(queue="explicit2", priority=1)
    assert placed(app) == [("via_exchange", 2), ("explicit", 2), ("via_exchange", 7), ("pinned", 3),
                           ("explicit2", 1)]


def test_explicit_routing_key_overrides_the_routes_key(app, tasks):
    ex = Exchange("x", type="direct")
    apply_routes(app, [Queue("a", ex, routing_key="a"), Queue("b", ex, routing_key="b")])
    app.conf.task_routes = {"*": {"exchange": "x", "routing_key": "a"}}
    tasks["resize"].apply_async(routing_key="b")
    assert placed(app) == [("b", 0)]


def test_default_exchange_and_routing_key(app, tasks):
    apply_routes(app, [Queue("everything", Exchange("main", type="topic"), routing_key="#"),
                       Queue("feeds", "main", routing_key="feed.#")])
    app.conf.task_default_exchange = "main"
    tasks["resize"].delay()                       # key = the task name
    app.conf.task_default_routing_key = "feed.default"
    tasks["resize"].delay()
    tasks["resize"].apply_async(queue="direct_q")  # a queue still means direct delivery
    assert placed(app) == [("everything", 0), ("everything", 0), ("feeds", 0), ("direct_q", 0)]


def test_default_exchange_must_exist(app, tasks):
    app.conf.task_default_exchange = "missing"
    with pytest.raises(UnknownExchange, match="'missing' does not exist"):
        tasks["resize"].delay()


def test_bad_routes_and_names_fail_before_anything_is_written(app, tasks):
    app.conf.task_routes = {"*": {"queue": "q", "delivery_mode": 2}}
    with pytest.raises(ConfigurationError, match="unsupported key"):
        tasks["resize"].delay()
    app.conf.task_routes = {"*": 42}
    with pytest.raises(ConfigurationError, match="return a dict"):
        tasks["resize"].delay()
    app.conf.task_routes = ["no.such.module.router"]
    with pytest.raises(ConfigurationError, match="cannot import router"):
        tasks["resize"].delay()
    app.conf.task_routes = None
    with pytest.raises(InvalidNameError):
        tasks["resize"].apply_async(queue="bad queue")
    with pytest.raises(InvalidNameError):
        tasks["resize"].apply_async(exchange="x'); DROP TABLE jobs; --", routing_key="k")
    with pytest.raises(InvalidNameError):
        tasks["resize"].apply_async(exchange="x", routing_key="nul\x00byte")
    assert placed(app) == []
