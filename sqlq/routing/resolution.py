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

``task_routes`` accepts what Celery's ``routes.prepare`` accepts: a dict (task name or glob such as
``'feed.tasks.*'``, or a compiled regex, mapped to a route dict or a queue name), a list of
``(glob_or_regex, route)`` pairs (Celery's items form, as one entry of the list or as the whole
list), a router function ``(name, args, kwargs, options, task=None, **kw) -> dict | str | None``, a
dotted path to one, or a list of any of these. The first entry that answers wins, in list order;
inside one dict or one list of pairs an exact name wins over the patterns, which are tried in the
order given (Celery's ``MapRoute``). A route dict may give ``queue``, ``exchange``,
``exchange_type``, ``routing_key``, ``priority``.

Two destinations carry more than a name, for the store to act on before the first publish
(``RoutedExchange``): an exchange whose route says its type (``exchange_type``, or an ``Exchange``
object), which the store declares with that type, or refuses when it exists with another; and a
``Broadcast`` queue (a name ``task_queues`` declares with ``Broadcast``), which is published to its
fanout exchange, so that each worker consuming it gets a copy.
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

ROUTE_KEYS = frozenset({"queue", "exchange", "exchange_type", "routing_key", "priority"})
#: The exchange types sqlq routes by (AMQP's headers exchange has no equivalent here).
EXCHANGE_TYPES = ("direct", "fanout", "topic")


class RoutedExchange(str):
    """An exchange name that remembers what its route said about it: the ``type`` the route
    declared, and whether it is a ``Broadcast``'s fanout exchange.

    A ``str``, so it travels in ``JobSpec.exchange`` (and every statement parameter) as the name
    it is; the store reads the extra attributes before the publish (``Routes.publish``): it declares
    the exchange with that type once per process (an error if it exists with another type), and
    before a broadcast drops the per-worker queues of workers that are gone."""

    type: str
    broadcast: bool

    def __new__(cls, name: str, type: str, broadcast: bool = False) -> RoutedExchange:  # noqa: A002 - kombu's word
        made = super().__new__(cls, validate_exchange(name))
        made.type = check_exchange_type(type, name)
        made.broadcast = broadcast
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        return RoutedExchange, (str(self), self.type, self.broadcast)


def check_exchange_type(kind: Any, exchange: str) -> str:
    if kind not in EXCHANGE_TYPES:
        raise ConfigurationError(
            f"exchange {exchange!r} has type {kind!r}; use one of: {', '.join(EXCHANGE_TYPES)}"
            + (" (sqlq has no headers exchange: route by a routing key instead)" if kind == "headers" else "")
        )
    return cast(str, kind)


#: Every name and alias a ``Broadcast`` was made with in this process (``Broadcast.__init__`` adds
#: them): the plain ``delay()`` reads ``task_queues`` only for a queue named here.
BROADCAST_NAMES: set[str] = set()


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
        # this runs on every call; task_queues is searched only for a name a Broadcast was made with).
        name = task.queue if task is not None and task.queue is not None else conf.default_queue
        if BROADCAST_NAMES and name in BROADCAST_NAMES:  # (a name some Broadcast was made with)
            found = broadcast_named(conf.task_queues, name)
            if found is not None:
                return _routed(RoutedExchange(found, "fanout", True), None, task_name, conf, priority)
        return _direct(name, priority)
    explicit = {"queue": queue, "exchange": exchange, "routing_key": routing_key, "priority": priority}
    levels: list[Mapping[str, Any]] = [explicit]
    if task is not None and task.queue is not None:
        levels.append({"queue": task.queue})
    if conf.task_routes:
        options = {k: _name(v) if k in ("queue", "exchange") else v for k, v in explicit.items() if v is not None}
        route = lookup(conf.task_routes, task_name, args or (), kwargs or {}, options, task)
        if route:
            levels.append(route)
    key = _first(levels, "routing_key")
    prio = _first(levels, "priority")
    for level in levels:
        if level.get("exchange") is not None:
            return _routed(_exchange(level["exchange"], level.get("exchange_type")), key, task_name, conf, prio)
        if level.get("queue") is not None:
            bcast = _broadcast(conf, level["queue"])
            if bcast is not None:
                return _routed(bcast, key, task_name, conf, prio)
            return Destination(validate_queue(cast(str, _name(level["queue"]))), None, None, prio)
    if conf.task_default_exchange:
        return _routed(cast(str, _name(conf.task_default_exchange)), key, task_name, conf, prio)  # (set: not None)
    return Destination(validate_queue(conf.default_queue), None, None, prio)


@lru_cache(maxsize=256)
def _direct(queue: str, priority: int | None) -> Destination:
    return Destination(validate_queue(queue), None, None, priority)


def _routed(exchange: str, key: str | None, task_name: str, conf: Settings, prio: int | None) -> Destination:
    key = key if key is not None else (conf.task_default_routing_key or task_name)
    return Destination(None, validate_exchange(exchange), validate_routing_key(key), prio)


def _first(levels: list[Mapping[str, Any]], key: str) -> Any:
    return next((level[key] for level in levels if level.get(key) is not None), None)


def _name(value: Any) -> str | None:
    """Queues and exchanges may be given as names or as ``Queue``/``Exchange`` objects."""
    if value is None or isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    raise ConfigurationError(f"expected a queue or exchange name, got {value!r}")


def _exchange(value: Any, kind: Any) -> str:
    """The exchange a level names: a typed ``RoutedExchange`` when the route gives ``exchange_type``
    or an ``Exchange`` object (whose type it is), else the plain name (its type is the stored one)."""
    name = cast(str, _name(value))
    own = None if isinstance(value, str) else getattr(value, "type", None)
    if own is not None and kind is not None and own != kind:
        raise ConfigurationError(
            f"route names Exchange({name!r}, type={own!r}) with exchange_type={kind!r}; give one type"
        )
    kind = kind if kind is not None else own
    if kind is None:
        return name
    if isinstance(value, RoutedExchange) and value.type == kind:
        return value
    return RoutedExchange(name, kind)


def _broadcast(conf: Settings, queue: Any) -> RoutedExchange | None:
    """The fanout exchange of the ``Broadcast`` that ``queue`` is (an object, or a name that
    ``task_queues`` declares with ``Broadcast``), else None: an ordinary queue."""
    if hasattr(queue, "broadcast_exchange"):
        return RoutedExchange(queue.broadcast_exchange, "fanout", True)
    declared = conf.task_queues
    if not declared or not isinstance(queue, str):
        return None
    found = broadcast_named(declared, queue)
    return None if found is None else RoutedExchange(found, "fanout", True)


def broadcast_named(declared: Any, name: str) -> str | None:
    """The fanout exchange of the ``Broadcast`` in ``task_queues`` called ``name`` (its name or its
    alias, as kombu's ``Queues`` looks them up), else None. A scan: lists of queues are short, and
    it runs only for apps that declare ``task_queues``."""
    if not isinstance(declared, list | tuple):
        return None
    for q in declared:
        exchange = getattr(q, "broadcast_exchange", None)
        if exchange is not None and name in (q.name, q.alias, exchange):
            return cast(str, exchange)
    return None


# --- task_routes --------------------------------------------------------------------------------

def lookup(routes: Any, name: str, args: Sequence[Any], kwargs: dict[str, Any], options: dict[str, Any],
           task: Task | None = None) -> dict[str, Any] | None:
    """The first non-empty answer of the routers in ``routes``, as a checked route dict."""
    for router in _routers(routes):
        if isinstance(router, Mapping):
            answer = _map_route(router, name)
        elif isinstance(router, _Pairs):
            answer = router.route(name)
        elif hasattr(router, "route_for_task"):  # pre-4.0 Celery router class
            answer = router.route_for_task(name, args, kwargs)
        else:
            answer = router(name, args, kwargs, options, task=task)
        if answer is not None:
            return _as_route(answer, router)
    return None


def routes_by_name_only(routes: Any) -> bool:
    """Whether ``task_routes`` decides by task name alone (dicts and pairs only, no router
    functions), so a batch of calls to one task with the same options goes to the same place."""
    items = list(routes) if isinstance(routes, list | tuple) else [routes] if routes else []
    return all(isinstance(item, Mapping) or _is_pair(item) or _are_pairs(item) for item in items)


class _Pairs:
    """Celery's ``MapRoute`` over ``(glob_or_regex, route)`` pairs: an exact name first, then the
    patterns in the order given."""

    __slots__ = ("exact", "patterns")

    def __init__(self, pairs: Sequence[Any]):
        self.exact: dict[str, Any] = {}
        self.patterns: list[tuple[Any, Any]] = []
        for pattern, route in pairs:
            if isinstance(pattern, str) and "*" not in pattern:
                self.exact.setdefault(pattern, route)
            else:
                self.patterns.append((pattern, route))

    def route(self, name: str) -> Any:
        if name in self.exact:
            return self.exact[name]
        for pattern, route in self.patterns:
            if _matches(pattern, name):
                return route
        return None

    def __repr__(self) -> str:
        return f"<task_routes pairs {list(self.exact.items()) + self.patterns!r}>"


def _is_pair(item: Any) -> bool:
    """``('feed.tasks.*', {'queue': 'feeds'})`` or ``(re.compile(...), 'media')``."""
    return (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str | re.Pattern)
            and not isinstance(item[1], tuple | list))


def _are_pairs(item: Any) -> bool:
    return isinstance(item, tuple | list) and bool(item) and all(_is_pair(pair) for pair in item)


def _routers(routes: Any) -> list[Any]:
    items = list(routes) if isinstance(routes, list | tuple) else [routes]
    routers = []
    for item in items:
        if isinstance(item, str):
            item = _import_router(item)
        elif _is_pair(item):
            item = _Pairs((item,))
        elif _are_pairs(item):
            item = _Pairs(item)
        if not (isinstance(item, Mapping | _Pairs) or callable(item) or hasattr(item, "route_for_task")):
            raise ConfigurationError(
                f"task_routes entries must be dicts, router functions or dotted paths to them, or "
                f"(glob_or_regex, route) pairs; got {item!r}"
            )
        routers.append(item)
    return routers


@lru_cache(maxsize=64)
def _import_router(path: str) -> Any:  # whatever the path names; _routers checks it
    if "*" in path:
        raise ConfigurationError(
            f"task_routes entry {path!r} is a pattern, not a router's dotted path; map it to a route: "
            f"task_routes = {{{path!r}: {{'queue': ...}}}} or [({path!r}, {{'queue': ...}})]"
        )
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
        if _matches(pattern, name):
            return route
    return None


def _matches(pattern: Any, name: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.match(name) is not None
    return isinstance(pattern, str) and "*" in pattern and fnmatch.fnmatchcase(name, pattern)


def _as_route(answer: Any, router: Any) -> dict[str, Any] | None:
    if isinstance(answer, str) or hasattr(answer, "bindings"):  # a queue name or a Queue
        return {"queue": answer}
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
        if route.get(key) is not None:
            _name(route[key])  # (a name or a Queue/Exchange object: checked now, resolved by resolve)
    if route.get("exchange_type") is not None and route.get("exchange") is None:
        raise ConfigurationError(
            f"route {dict(answer)!r} gives exchange_type without an exchange; add 'exchange': NAME"
        )
    return route or None
