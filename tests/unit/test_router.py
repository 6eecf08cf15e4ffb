"""Where a call goes, decided without a server (sqlq/routing/resolution.py): apply_async options beat the task's
own options, which beat task_routes (first router with an answer), which beat the default exchange
or queue; routing key and priority come from the first level that gives them."""

from __future__ import annotations

import re

import pytest

from sqlq import App
from sqlq.config import Settings
from sqlq.errors import ConfigurationError, InvalidNameError
from sqlq.routing.resolution import Destination, lookup, resolve, routes_by_name_only

_app = App("tests.unit.router", database_url="postgresql://nobody@127.0.0.1:1/none")
plain = _app.task(name="feed.tasks.refresh")(lambda *a: None)
pinned = _app.task(name="media.tasks.pinned", queue="pinned")(lambda *a: None)


def test_a_plain_call_goes_to_the_default_queue_or_the_tasks_own():
    conf = Settings()
    assert resolve(conf, plain.name, (), {}, task=plain) == Destination("default", None, None, None)
    assert resolve(conf, pinned.name, (), {}, task=pinned, priority=4) == Destination("pinned", None, None, 4)
    assert resolve(Settings(default_queue="work"), plain.name, (), {}) == Destination("work", None, None, None)


def test_precedence_explicit_then_task_then_routes_then_default():
    conf = Settings(task_routes={"media.tasks.*": {"queue": "media", "priority": 2, "routing_key": "k"}})
    # the task's own queue beats task_routes; the route still gives the priority
    assert resolve(conf, pinned.name, (), {}, task=pinned) == Destination("pinned", None, None, 2)
    # apply_async(queue=) beats the task's queue
    assert resolve(conf, pinned.name, (), {}, task=pinned, queue="now").queue == "now"
    # an explicit exchange routes, with the route's key when none is given
    assert resolve(conf, pinned.name, (), {}, task=pinned, exchange="ex") == Destination(None, "ex", "k", 2)


def test_a_routed_call_without_a_key_uses_the_default_key_else_the_task_name():
    assert resolve(Settings(task_default_exchange="events"), plain.name, (), {}) == \
        Destination(None, "events", "feed.tasks.refresh", None)
    conf = Settings(task_default_exchange="events", task_default_routing_key="all")
    assert resolve(conf, plain.name, (), {}) == Destination(None, "events", "all", None)
    assert resolve(conf, plain.name, (), {}, routing_key="one.two") == Destination(None, "events", "one.two", None)


def test_a_level_naming_queue_and_exchange_routes_by_the_exchange():
    conf = Settings(task_routes={plain.name: {"queue": "q", "exchange": "x"}})
    assert resolve(conf, plain.name, (), {}) == Destination(None, "x", plain.name, None)


def test_map_routes_exact_name_first_then_patterns_in_order():
    routes = {"feed.tasks.*": "globbed", re.compile(r"feed\..*"): "regex", "feed.tasks.refresh": "exact"}
    assert lookup(routes, "feed.tasks.refresh", (), {}, {}) == {"queue": "exact"}
    assert lookup(routes, "feed.tasks.other", (), {}, {}) == {"queue": "globbed"}
    assert lookup(routes, "feed.x", (), {}, {}) == {"queue": "regex"}
    assert lookup(routes, "media.x", (), {}, {}) is None


def test_router_functions_see_the_call_and_the_first_answer_wins():
    seen = []

    def by_argument(name, args, kwargs, options, task=None, **kw):
        seen.append((name, args, kwargs, options, task))
        return "urgent" if kwargs.get("urgent") else None

    routes = [by_argument, {"feed.*": {"queue": "feeds"}}]
    assert lookup(routes, plain.name, (1,), {"urgent": True}, {"priority": 1}, plain)["queue"] == "urgent"
    assert lookup(routes, plain.name, (2,), {}, {}, plain)["queue"] == "feeds"
    assert seen[0] == (plain.name, (1,), {"urgent": True}, {"priority": 1}, plain)
    assert not routes_by_name_only(routes) and routes_by_name_only({"a": "b"}) and routes_by_name_only(None)


@pytest.mark.parametrize(("routes", "says"), [
    (42, "task_routes entries must be dicts, router functions or dotted paths"),
    ("no.such.module.router", "cannot import router 'no.such.module.router'"),
    (lambda *a, **k: 3, "return a dict, a queue name or None"),
    ({"t": {"queue": "q", "exchnage": "x"}}, "unsupported key(s) exchnage"),
])
def test_bad_routes_say_what_to_write(routes, says):
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        resolve(Settings(task_routes=routes), "t", (), {})


def test_every_name_a_route_returns_is_validated():
    with pytest.raises(InvalidNameError, match="invalid queue name"):
        resolve(Settings(task_routes={"t": "bad queue"}), "t", (), {})
    with pytest.raises(InvalidNameError, match="invalid exchange name"):
        resolve(Settings(), "t", (), {}, exchange="-x")
    with pytest.raises(InvalidNameError, match="routing key"):
        resolve(Settings(), "t", (), {}, exchange="x", routing_key="a\x00b")
    with pytest.raises(ConfigurationError, match="expected a queue or exchange name"):
        resolve(Settings(), "t", (), {}, queue=3)
