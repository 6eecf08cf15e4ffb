"""Where a call goes: Celery's ``task_routes`` plus the routing options of ``apply_async``.

The answer is a ``Destination``: either a queue (the job is inserted there directly, like AMQP's
default exchange) or an exchange and a routing key (the bindings decide the queues, in SQL, in the
same INSERT statement; see ``sqlq.routing``). Nothing here touches the database.

Precedence, as in Celery (whose ``lpmerge`` lets non-None ``apply_async`` options win over a
router's answer):

1. ``apply_async(queue=, exchange=, routing_key=, priority=)``;
2. the task's own options (``@app.task(queue=..., priority=...)``);
3. ``task_routes``: the first router (in order) that returns something;
4. ``task_default_exchange`` (with ``task_default_routing_key``) when set, else ``default_queue``.

The destination is taken whole from the first level that names a queue or an exchange; if that level
names both, the exchange routes (as in Celery). ``routing_key`` and ``priority`` are taken from the
first level that gives them. A routed call without a routing key uses ``task_default_routing_key``,
else the task's name — handy with topic exchanges (``'proj.tasks.*'``).

``task_routes`` accepts what Celery accepts: a dict (task name or glob such as ``'feed.tasks.*'``,
or a compiled regex, mapped to a route dict or a queue name), a router function
``(name, args, kwargs, options, task=None, **kw) -> dict | str | None``, a dotted path to one, or a
list of any of these. A route dict may give ``queue``, ``exchange``, ``routing_key``, ``priority``.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigurationError
from ..names import validate_exchange, validate_queue, validate_routing_key

if TYPE_CHECKING:
    from ..config import Settings
    from ..task import Task

ROUTE_KEYS = frozenset({"queue", "exchange", "routing_key", "priority"})


@dataclass(frozen=True, slots=True)
class Destination:
    """A queue (direct delivery) or an exchange with a routing key (routed in SQL)."""

    queue: str | None
    exchange: str | None
    routing_key: str | None
    priority: int | None


def resolve(conf: Settings, task_name: str, args: Sequence[Any] | None, kwargs: dict[str, Any] | None, *,
            task: Task | None = None, queue: Any = None, exchange: Any = None, routing_key: str | None = None,
            priority: int | None = None) -> Destination:
    """Apply the precedence above to one call; validates every name it returns."""
    if queue is None and exchange is None and routing_key is None \
            and not conf.task_routes and not conf.task_default_exchange:
        # The plain delay(): nothing routes, so the task's queue or the default queue (and cheaply:
        # this runs on every call).
        return _direct(task.queue if task is not None and task.queue is not None else conf.default_queue,
                       priority)
    explicit = {"queue": _name(queue), "exchange": _name(exchange), "routing_key": routing_key,
                "priority": priority}
    levels: list[dict[str, Any]] = [explicit]
    if task is not None and task.queue is not None:
        levels.append({"queue": task.queue})
    if conf.task_routes:
        options = {k: v for k, v in explicit.items() if v is not None}
        route = lookup(conf.task_routes, task_name, args or (), kwargs or {}, options, task)
        if route:
            levels.append(route)
    key = _first(levels, "routing_key")
    prio = _first(levels, "priority")
    for level in levels:
        if level.get("exchange") is not None:
            return _routed(level["exchange"], key, task_name, conf, prio)
        if level.get("queue") is not None:
            return Destination(validate_queue(level["queue"]), None, None, prio)
    if conf.task_default_exchange:
        return _routed(cast(str, _name(conf.task_default_exchange)), key, task_name, conf, prio)  # (set: not None)
    return Destination(validate_queue(conf.default_queue), None, None, prio)


@lru_cache(maxsize=256)
def _direct(queue: str, priority: int | None) -> Destination:
    return Destination(validate_queue(queue), None, None, priority)


def _routed(exchange: str, key: str | None, task_name: str, conf: Settings, prio: int | None) -> Destination:
    key = key if key is not None else (conf.task_default_routing_key or task_name)
    return Destination(None, validate_exchange(exchange), validate_routing_key(key), prio)


def _first(levels: list[dict[str, Any]], key: str) -> Any:
    return next((level[key] for level in levels if level.get(key) is not None), None)


def _name(value: Any) -> str | None:
    """Queues and exchanges may be given as names or as ``Queue``/``Exchange`` objects."""
    if value is None or isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    raise ConfigurationError(f"expected a queue or exchange name, got {value!r}")


# --- task_routes --------------------------------------------------------------------------------

def lookup(routes: Any, name: str, args: Sequence[Any], kwargs: dict[str, Any], options: dict[str, Any],
           task: Task | None = None) -> dict[str, Any] | None:
    """The first non-empty answer of the routers in ``routes``, as a checked route dict."""
    for router in _routers(routes):
        if isinstance(router, Mapping):
            answer = _map_route(router, name)
        elif hasattr(router, "route_for_task"):  # pre-4.0 Celery router class
            answer = router.route_for_task(name, args, kwargs)
        else:
            answer = router(name, args, kwargs, options, task=task)
        if answer is not None:
            return _as_route(answer, router)
    return None


def routes_by_name_only(routes: Any) -> bool:
    """Whether ``task_routes`` decides by task name alone (dicts only, no router functions), so a
    batch of calls to one task with the same options goes to the same place."""
    items = list(routes) if isinstance(routes, list | tuple) else [routes] if routes else []
    return all(isinstance(item, Mapping) for item in items)


def _routers(routes: Any) -> list[Any]:
    items = list(routes) if isinstance(routes, list | tuple) else [routes]
    routers = []
    for item in items:
        if isinstance(item, str):
            item = _import_router(item)
        if not (isinstance(item, Mapping) or callable(item) or hasattr(item, "route_for_task")):
            raise ConfigurationError(
                f"task_routes entries must be dicts, router functions or dotted paths to them; got {item!r}"
            )
        routers.append(item)
    return routers


@lru_cache(maxsize=64)
def _import_router(path: str) -> Any:  # whatever the path names; _routers checks it
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"cannot import router {path!r} from task_routes: {exc}") from None


def _map_route(routes: Mapping[str, Any], name: str) -> Any:
    """Celery's MapRoute: an exact name first, then regexes and ``*`` globs in the order given."""
    if name in routes:
        return routes[name]
    for pattern, route in routes.items():
        if isinstance(pattern, re.Pattern):
            if pattern.match(name):
                return route
        elif isinstance(pattern, str) and "*" in pattern and fnmatch.fnmatchcase(name, pattern):
            return route
    return None


def _as_route(answer: Any, router: Any) -> dict[str, Any] | None:
    if isinstance(answer, str) or hasattr(answer, "bindings"):  # a queue name or a Queue
        return {"queue": _name(answer)}
    if not isinstance(answer, Mapping):
        raise ConfigurationError(f"router {router!r} returned {answer!r}; return a dict, a queue name or None")
    unknown = set(answer) - ROUTE_KEYS
    if unknown:
        raise ConfigurationError(
            f"route {dict(answer)!r} has unsupported key(s) {', '.join(sorted(unknown))}; "
            f"a route may give {', '.join(sorted(ROUTE_KEYS))}"
        )
    route = dict(answer)
    for key in ("queue", "exchange"):
        route[key] = _name(route.get(key))
    return route or None
