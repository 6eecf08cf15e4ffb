"""Exchanges, queues and bindings as declarations (``Exchange``, ``Queue``, ``binding``), and the
operations that write, edit and read them in the database (``apply_routes``, ``sqlq routes``).

Declarations are kombu-shaped and, like AMQP declares, additive and idempotent: applying them adds
what is missing and never deletes a binding. Removing is explicit (``remove_route``, ``sqlq routes
remove``). How the exchange types match is in the package's docstring (``sqlq.routing``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from ..errors import ConfigurationError, RoutingError, UnknownExchange, Unroutable
from ..names import validate_exchange, validate_queue, validate_routing_key
from .published import unknown_exchange_message, unroutable_message

if TYPE_CHECKING:
    from ..app import App

EXCHANGE_TYPES = ("direct", "fanout", "topic")


# --- declarations -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exchange:
    """``Exchange('media', type='topic', alternate_queue='unrouted')``.

    ``alternate_queue`` collects messages no binding matches (AMQP's alternate exchange, simplified
    to a queue); without one such a publish raises ``Unroutable``.
    """

    name: str
    type: str = "direct"
    alternate_queue: str | None = None

    def __post_init__(self) -> None:
        validate_exchange(self.name)
        if self.type not in EXCHANGE_TYPES:
            raise ConfigurationError(
                f"exchange {self.name!r} has type {self.type!r}; use one of: {', '.join(EXCHANGE_TYPES)}"
            )
        if self.alternate_queue is not None:
            validate_queue(self.alternate_queue, "alternate queue")


@dataclass(frozen=True)
class binding:  # noqa: N801 - kombu's name, so Celery configs carry over
    """One extra binding of a ``Queue``: ``Queue('v', bindings=[binding(media, 'video.#')])``."""

    exchange: Exchange | str
    routing_key: str | None = None


@dataclass(frozen=True, init=False)
class Queue:
    """``Queue('video', Exchange('media', type='topic'), routing_key='media.video.#')``.

    Binds the queue to ``exchange`` with ``routing_key`` (default: the queue's name; ignored for
    fanout), or to each of ``bindings``. A ``Queue`` without an exchange binds nothing: jobs reach
    it only by name (``queue='video'``). An exchange given by name takes its type from an
    ``Exchange`` of that name elsewhere in the same declarations, else from the database, else
    ``direct``.
    """

    name: str
    exchange: Exchange | str | None
    routing_key: str | None
    bindings: tuple[binding, ...]

    def __init__(self, name: str, exchange: Exchange | str | None = None, routing_key: str | None = None,
                 bindings: Iterable[binding] | None = None):
        bindings = tuple(bindings or ())
        if exchange is not None and bindings:
            raise ConfigurationError(f"queue {name!r}: give exchange= and routing_key=, or bindings=, not both")
        for b in bindings:
            if not isinstance(b, binding):
                raise ConfigurationError(f"queue {name!r}: bindings must be binding(exchange, routing_key), got {b!r}")
        object.__setattr__(self, "name", validate_queue(name))
        object.__setattr__(self, "exchange", exchange)
        object.__setattr__(self, "routing_key", routing_key)
        object.__setattr__(self, "bindings", bindings)

    def binding_pairs(self) -> list[tuple[Exchange | str, str | None]]:
        if self.exchange is not None:
            return [(self.exchange, self.routing_key)]
        return [(b.exchange, b.routing_key) for b in self.bindings]


@dataclass(frozen=True)
class Route:
    """One row of ``list_routes``: an exchange and one of its bindings (None when it has none)."""

    exchange: str
    type: str
    alternate_queue: str | None
    binding_key: str | None
    queue: str | None


@dataclass(frozen=True)
class Plan:
    """Declarations resolved to rows. ``type`` None: keep the stored type (``direct`` if new)."""

    exchanges: tuple[tuple[str, str | None, str | None], ...]  # (name, type, alternate_queue)
    bindings: tuple[tuple[str, str, str], ...]  # (exchange, binding_key, queue)


def plan(queues: Iterable[Queue | str] | None) -> Plan:
    """Resolve ``task_queues`` to rows, refusing an exchange declared twice with different settings."""
    if queues is None:
        return Plan((), ())
    if isinstance(queues, Queue | str) or not isinstance(queues, Iterable):
        raise ConfigurationError(f"task_queues must be a list of Queue objects, got {queues!r}")
    queues = [Queue(q) if isinstance(q, str) else q for q in queues]
    exchanges: dict[str, Exchange] = {}
    for q in queues:
        if not isinstance(q, Queue):
            raise ConfigurationError(f"task_queues entries must be Queue objects or names, got {q!r}")
        for ex, _ in q.binding_pairs():
            if isinstance(ex, Exchange):
                if exchanges.setdefault(ex.name, ex) != ex:
                    raise ConfigurationError(
                        f"exchange {ex.name!r} is declared twice with different settings: "
                        f"{exchanges[ex.name]} and {ex}; declare it once and reuse the object"
                    )
            elif not isinstance(ex, str):
                raise ConfigurationError(f"queue {q.name!r}: exchange must be an Exchange or a name, got {ex!r}")
    rows: dict[str, tuple[str, str | None, str | None]] = {
        name: (name, ex.type, ex.alternate_queue) for name, ex in exchanges.items()
    }
    bindings: list[tuple[str, str, str]] = []
    for q in cast("list[Queue]", queues):  # (each checked above)
        for ex, key in q.binding_pairs():
            name = validate_exchange(ex.name if isinstance(ex, Exchange) else ex)
            rows.setdefault(name, (name, None, None))
            kind = rows[name][1]
            bindings.append((name, binding_key(kind, key, q.name), q.name))
    return Plan(tuple(rows.values()), tuple(dict.fromkeys(bindings)))


def binding_key(exchange_type: str | None, key: str | None, queue: str) -> str:
    """The stored key: ``''`` for fanout (ignored), else the key given, else the queue's name."""
    if exchange_type == "fanout":
        return ""
    return validate_routing_key(queue if key is None else key, "binding key")


# --- the database -------------------------------------------------------------------------------

def apply_routes(app: App, queues: Iterable[Queue | str] | None = None) -> tuple[int, int]:
    """Declare ``queues`` (default: ``app.conf.task_queues``); returns (exchanges, new bindings).

    Idempotent and additive, so every worker can run it at start: nothing is removed, and an
    exchange that exists with another type is an error rather than a silent change of routing.
    """
    declared = plan(app.conf.task_queues if queues is None else queues)
    if not declared.exchanges:
        return 0, 0
    return declare(app, declared)


def declare(app: App, declared: Plan) -> tuple[int, int]:
    """Write a plan in one statement; refuses (writing nothing) if an exchange's type would change."""
    with app.connection() as conn:
        row = app.store.declare_routes(conn, declared.exchanges, declared.bindings)
    if row.conflicts:
        raise RoutingError(
            "exchange type conflict, nothing was changed: " + "; ".join(row.conflicts)
            + ". An exchange's type cannot change in place: remove it first (sqlq routes remove "
              "EXCHANGE, which also drops its bindings) or declare it with its current type"
        )
    return row.exchanges, row.bindings


def add_route(app: App, exchange: str, queue: str | None = None, *, routing_key: str | None = None,
              type: str | None = None, alternate_queue: str | None = None) -> tuple[int, int]:
    """Declare ``exchange`` (``type`` None: keep the stored type, ``direct`` if new), bind ``queue``."""
    if type is not None:
        Exchange(exchange, type)  # validates the type with the usual message
    validate_exchange(exchange)
    if alternate_queue is not None:
        validate_queue(alternate_queue, "alternate queue")
    exchanges = ((exchange, type, alternate_queue),)
    if queue is None:
        if routing_key is not None:
            raise ConfigurationError("a routing key needs a queue to bind: sqlq routes add EXCHANGE QUEUE --key KEY")
        return declare(app, Plan(exchanges, ()))
    validate_queue(queue)
    if type is None:
        type = current_type(app, exchange)
    bindings = ((exchange, binding_key(type, routing_key, queue), queue),)
    return declare(app, Plan(exchanges, bindings))


def current_type(app: App, exchange: str) -> str | None:
    with app.connection() as conn:
        return app.store.exchange_type(conn, exchange)


def remove_route(app: App, exchange: str, queue: str | None = None, routing_key: str | None = None) -> int:
    """Unbind ``queue`` (only the ``routing_key`` binding when given); without a queue, delete the
    exchange and all its bindings. Returns how many rows went; raises when nothing matched."""
    validate_exchange(exchange)
    with app.connection() as conn:
        if queue is None:
            if routing_key is not None:
                raise ConfigurationError("--key needs a queue: sqlq routes remove EXCHANGE QUEUE --key KEY")
            removed = app.store.delete_exchange(conn, exchange)
            what = f"exchange {exchange!r}"
        else:
            removed = app.store.unbind(conn, exchange, validate_queue(queue), routing_key)
            what = f"binding of queue {queue!r} to exchange {exchange!r}" + (
                f" with key {routing_key!r}" if routing_key is not None else "")
    if not removed:
        raise RoutingError(f"no {what} to remove; `sqlq routes list` shows what exists")
    return removed


def list_routes(app: App) -> list[Route]:
    with app.connection() as conn:
        return [Route(*row) for row in app.store.list_routes(conn)]


def route_queues(app: App, exchange: str, routing_key: str) -> list[str]:
    """Which queues a publish would reach now (raises like a publish would)."""
    validate_exchange(exchange)
    validate_routing_key(routing_key)
    with app.connection() as conn:
        queues = app.store.route_queues(conn, exchange, routing_key)
    if queues is None:
        raise UnknownExchange(unknown_exchange_message(exchange, None))
    if not queues:
        raise Unroutable(unroutable_message(exchange, routing_key, None))
    return queues
