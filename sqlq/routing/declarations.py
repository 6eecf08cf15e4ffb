"""Exchanges, queues and bindings as declarations (``Exchange``, ``Queue``, ``binding``,
``Broadcast``), and the operations that write, edit and read them in the database
(``apply_routes``, ``sqlq routes``, a worker's broadcast queues).

Declarations are kombu-shaped and, like AMQP declares, additive and idempotent: applying them adds
what is missing and never deletes a binding. Removing is explicit (``remove_route``, ``sqlq routes
remove``). How the exchange types match is in the package's docstring (``sqlq.routing``).

kombu's other arguments are decided one by one, never dropped in silence: those with a meaning
here are used (``Queue('q', [binding(...), ...])``, ``no_declare``, ``max_priority`` /
``x-max-priority``: sqlq priorities always work, so it is accepted as it is), and each of the others
gives one warning naming it and why it has no meaning in sqlq (``COMPATIBILITY_WARNING``).

A ``Broadcast('name')`` is a fanout exchange ``name`` whose queue is per worker: a worker told to
consume ``name`` (``-Q name``) consumes its own queue ``bcast.<name>.<worker id>`` instead, bound to
the exchange once it has registered (``WorkerBroadcasts``), so each such worker gets its own copy of
each message. A per-worker queue lives as long as its worker's row: once the worker is gone (it
stopped, or its jobs were rescued) the next broadcast publish or worker start drops the binding,
and the copies that waited there become REVOKED results saying why; a live worker whose binding
was dropped while it was presumed dead (it registers again) is bound again by the same statement
(``BROADCAST_PRUNE``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigurationError, RoutingError, SqlqCompatibilityWarning, UnknownExchange, Unroutable
from ..names import validate_exchange, validate_queue, validate_routing_key
from .published import unknown_exchange_message, unroutable_message
from .resolution import BROADCAST_NAMES, EXCHANGE_TYPES, check_exchange_type

if TYPE_CHECKING:
    import psycopg

    from ..app import App
    from ..config import Settings

__all__ = ["EXCHANGE_TYPES", "Broadcast", "Exchange", "Queue", "WorkerBroadcasts", "binding"]

#: The category of the warnings for kombu arguments that have no meaning in sqlq (the one every
#: Celery compatibility warning has, so `warnings.filterwarnings` can address them together).
COMPATIBILITY_WARNING: type[Warning] = SqlqCompatibilityWarning

#: A per-worker broadcast queue is ``bcast.<name>.<worker id>``: this much longer than ``name``.
_BROADCAST_EXTRA = len("bcast..") + 36


def _no_meaning(what: str, why: str) -> None:
    warnings.warn(f"{what} has no meaning in sqlq and is not used: {why}", COMPATIBILITY_WARNING, stacklevel=4)


# --- declarations -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exchange:
    """``Exchange('media', type='topic', alternate_queue='unrouted')``.

    ``alternate_queue`` collects messages no binding matches (AMQP's alternate exchange, simplified
    to a queue); without one such a publish raises ``Unroutable``. ``Exchange('')`` is kombu's
    nameless default exchange: a ``Queue`` given it binds as if given no exchange.

    kombu's other arguments: ``durable`` (every exchange is a row: always durable), ``auto_delete``
    (an exchange stays until removed), ``delivery_mode`` (every job is a committed row: always
    persistent) and ``arguments`` warn when they ask for something else; ``passive=True`` and
    ``no_declare=True`` declare nothing about the exchange itself (bindings to it still are, and
    keep its stored type).
    """

    name: str
    type: str = "direct"
    alternate_queue: str | None = None
    durable: bool = field(default=True, compare=False, repr=False)
    auto_delete: bool = field(default=False, compare=False, repr=False)
    delivery_mode: Any = field(default=None, compare=False, repr=False)
    arguments: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    passive: bool = field(default=False, compare=False, repr=False)
    no_declare: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.name != "":
            validate_exchange(self.name)
        check_exchange_type(self.type, self.name)
        if self.alternate_queue is not None:
            validate_queue(self.alternate_queue, "alternate queue")
        what = f"Exchange({self.name!r})"
        if not self.durable:
            _no_meaning(f"{what}: durable=False", "exchanges and jobs are rows in PostgreSQL, always durable")
        if self.auto_delete:
            _no_meaning(f"{what}: auto_delete=True", "an exchange stays until `sqlq routes remove` removes it")
        if self.delivery_mode not in (None, 2, "persistent"):
            _no_meaning(f"{what}: delivery_mode={self.delivery_mode!r}",
                        "every job is a committed row, so delivery is always persistent")
        for key in self.arguments or {}:
            _no_meaning(f"{what}: argument {key!r}",
                        "exchange arguments are RabbitMQ's; for unmatched messages use alternate_queue=")

    @property
    def declared(self) -> bool:
        """Whether declaring asserts this exchange's type (not passive, not no_declare)."""
        return not (self.passive or self.no_declare)


@dataclass(frozen=True)
class binding:  # noqa: N801 - kombu's name, so Celery configs carry over
    """One extra binding of a ``Queue``: ``Queue('v', [binding(media, 'video.#')])``.

    ``arguments`` / ``unbind_arguments`` are for AMQP's headers exchange, which sqlq has not: given,
    they warn."""

    exchange: Exchange | str
    routing_key: str | None = None
    arguments: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    unbind_arguments: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.arguments or self.unbind_arguments:
            _no_meaning("binding arguments", "they match message headers (a headers exchange); sqlq "
                                            "routes by routing key: direct, fanout or topic")


#: kombu's ``queue_arguments`` (RabbitMQ's x-arguments) that sqlq cannot honour, and why.
QUEUE_ARGUMENTS_WHY = {
    "x-message-ttl": "give the task or the call expires= instead (an expired job becomes EXPIRED)",
    "x-expires": "a queue is a name on job rows; it never expires",
    "x-max-length": "a queue has no length cap: sqlq never drops or refuses a job for a full queue",
    "x-max-length-bytes": "a queue has no size cap: sqlq never drops or refuses a job for a full queue",
    "x-overflow": "a queue has no length cap, so nothing overflows",
    "x-dead-letter-exchange": "a job that fails for good is kept as a FAILURE result, not re-routed",
    "x-dead-letter-routing-key": "a job that fails for good is kept as a FAILURE result, not re-routed",
    "x-queue-type": "every queue is rows of one table: there are no classic, quorum or stream queues",
    "x-queue-mode": "jobs are rows on disk whatever the mode",
    "x-single-active-consumer": "every worker told to consume a queue claims from it (SKIP LOCKED)",
}
#: Accepted as they are: sqlq's priorities (-32768..32767, higher first) always work.
_PRIORITY_ARGUMENTS = frozenset({"x-max-priority"})


@dataclass(frozen=True, init=False)
class Queue:
    """``Queue('video', Exchange('media', type='topic'), routing_key='media.video.#')``.

    Binds the queue to ``exchange`` with ``routing_key`` (default: the queue's name; ignored for
    fanout), or to each of ``bindings``, which may also come second, in the exchange's place, as
    kombu allows: ``Queue('media', [binding(media, 'media.video'), binding(media, 'media.image')])``.
    A ``Queue`` without an exchange binds to ``task_default_exchange`` when that is set (as kombu's
    ``Queues`` does), else nothing: jobs reach it only by name (``queue='video'``). An exchange given
    by name takes its type from an ``Exchange`` of that name elsewhere in the same declarations, else
    ``task_default_exchange_type`` for the default exchange, else the database, else ``direct``.

    kombu's keyword arguments: ``no_declare=True`` declares nothing for this queue;
    ``max_priority`` and ``queue_arguments={'x-max-priority': n}`` are accepted (priorities always
    work); ``durable=False``, ``exclusive``, ``auto_delete``, ``no_ack``, ``expires``,
    ``message_ttl``, ``max_length``, ``max_length_bytes``, ``binding_arguments``,
    ``consumer_arguments``, ``alias``, ``on_declared`` and the other ``queue_arguments`` warn, once
    each, naming the argument and why it has no meaning here.
    """

    name: str
    exchange: Exchange | str | None
    routing_key: str | None
    bindings: tuple[binding, ...]
    no_declare: bool
    max_priority: int | None
    alias: str | None

    def __init__(self, name: str, exchange: Exchange | str | Iterable[binding] | None = None,
                 routing_key: str | None = None, bindings: Iterable[binding] | None = None, *,
                 queue_arguments: Mapping[str, Any] | None = None, durable: bool = True,
                 exclusive: bool = False, auto_delete: bool = False, no_ack: bool | None = None,
                 no_declare: bool = False, max_priority: int | None = None, expires: float | None = None,
                 message_ttl: float | None = None, max_length: int | None = None,
                 max_length_bytes: int | None = None, binding_arguments: Mapping[str, Any] | None = None,
                 consumer_arguments: Mapping[str, Any] | None = None, alias: str | None = None,
                 on_declared: Any = None):
        given = tuple(bindings or ())
        if isinstance(exchange, list | tuple | set | frozenset):  # kombu: Queue(name, [binding, ...])
            given, exchange = (*exchange, *given), None
        if isinstance(exchange, Exchange) and exchange.name == "" or exchange == "":
            exchange = None  # kombu's nameless default exchange
        if exchange is not None and given:
            raise ConfigurationError(f"queue {name!r}: give exchange= and routing_key=, or bindings=, not both")
        for b in given:
            if not isinstance(b, binding):
                raise ConfigurationError(f"queue {name!r}: bindings must be binding(exchange, routing_key), got {b!r}")
        object.__setattr__(self, "name", validate_queue(name))
        object.__setattr__(self, "exchange", exchange)
        object.__setattr__(self, "routing_key", routing_key or None)  # kombu's '' means "not given"
        object.__setattr__(self, "bindings", given)
        object.__setattr__(self, "no_declare", bool(no_declare))
        object.__setattr__(self, "alias", alias)
        arguments = dict(queue_arguments or {})
        if max_priority is None and isinstance(arguments.get("x-max-priority"), int):
            max_priority = arguments["x-max-priority"]
        object.__setattr__(self, "max_priority", max_priority)
        self._warn_meaningless(arguments, durable=durable, exclusive=exclusive, auto_delete=auto_delete,
                               no_ack=no_ack, expires=expires, message_ttl=message_ttl, max_length=max_length,
                               max_length_bytes=max_length_bytes, binding_arguments=binding_arguments,
                               consumer_arguments=consumer_arguments, on_declared=on_declared)

    def _warn_meaningless(self, arguments: dict[str, Any], **given: Any) -> None:
        what = f"{type(self).__name__}({self.name!r})"
        for key in arguments:
            if key not in _PRIORITY_ARGUMENTS:
                _no_meaning(f"{what}: queue argument {key!r}",
                            QUEUE_ARGUMENTS_WHY.get(key, "it is a RabbitMQ queue argument with no equivalent here"))
        reasons = {
            "durable": (given["durable"] is False, "jobs are rows in PostgreSQL: every queue is durable"),
            "exclusive": (given["exclusive"], "every worker told to consume a queue may claim from it"),
            "auto_delete": (given["auto_delete"] and not isinstance(self, Broadcast),
                            "a queue is a name on job rows: waiting jobs stay until run, revoked or purged"),
            "no_ack": (given["no_ack"], "acknowledgement is per task: acks_late=False runs a job at most once"),
            "expires": (given["expires"] is not None, "a queue is a name on job rows; it never expires"),
            "message_ttl": (given["message_ttl"] is not None, QUEUE_ARGUMENTS_WHY["x-message-ttl"]),
            "max_length": (given["max_length"] is not None, QUEUE_ARGUMENTS_WHY["x-max-length"]),
            "max_length_bytes": (given["max_length_bytes"] is not None, QUEUE_ARGUMENTS_WHY["x-max-length-bytes"]),
            "binding_arguments": (bool(given["binding_arguments"]),
                                  "they match message headers (a headers exchange); sqlq routes by routing key"),
            "consumer_arguments": (bool(given["consumer_arguments"]),
                                   "consumer priorities have no equivalent: every worker claims in priority order"),
            "on_declared": (given["on_declared"] is not None,
                            "declaring is one statement that reports no per-queue message counts"),
            "alias": (self.alias is not None and not isinstance(self, Broadcast),
                      "route and consume by the queue's name"),
        }
        for name, (set_, why) in reasons.items():
            if set_:
                _no_meaning(f"{what}: {name}={given.get(name, self.alias)!r}", why)

    def binding_pairs(self) -> list[tuple[Exchange | str, str | None]]:
        if self.exchange is not None:
            return [(self.exchange, self.routing_key)]
        return [(b.exchange, b.routing_key) for b in self.bindings]


@dataclass(frozen=True, init=False)
class Broadcast(Queue):
    """kombu's ``Broadcast('name')``: a fanout exchange ``name`` of which every worker consuming
    ``name`` (``-Q name``) gets its own copy of each message, through a queue of its own,
    ``bcast.<name>.<worker id>`` (``<queue>`` instead of ``<name>`` when ``queue=`` is given).

    ``queue='q'`` without ``unique=True`` is kombu's shared queue: one queue ``q`` bound to the
    exchange, which the workers share like any queue (each message runs once). A task routed to
    ``name`` (``queue='name'``, ``task_routes``, ``@app.task(queue='name')``) is published to the
    exchange. The per-worker queues are removed with their workers (kombu's ``auto_delete``, which is
    therefore accepted); see the module's docstring for what happens to their waiting copies.
    """

    broadcast_exchange: str
    queue: str | None
    unique: bool

    def __init__(self, name: str, queue: str | None = None, unique: bool = False, auto_delete: bool = True,
                 exchange: Exchange | str | None = None, alias: str | None = None, **kwargs: Any):
        validate_queue(name, "broadcast")
        if exchange is None:
            exchange = Exchange(name, type="fanout")
        elif isinstance(exchange, str):
            exchange = Exchange(exchange, type="fanout")
        if not isinstance(exchange, Exchange) or exchange.type != "fanout":
            raise ConfigurationError(f"Broadcast({name!r}): its exchange must be a fanout exchange, got {exchange!r}")
        base = queue or name
        if len(base) + _BROADCAST_EXTRA > 200:
            raise ConfigurationError(
                f"Broadcast({name!r}): name at most {200 - _BROADCAST_EXTRA} characters (each worker's "
                f"queue is bcast.<name>.<worker id>, and queue names have at most 200)"
            )
        if kwargs.get("routing_key") or kwargs.get("bindings"):
            raise ConfigurationError(f"Broadcast({name!r}) binds to its fanout exchange only; drop routing_key/bindings")
        if queue is not None:
            validate_queue(queue)
        super().__init__(name, exchange, None, None, auto_delete=auto_delete, alias=alias, **kwargs)
        BROADCAST_NAMES.update(n for n in (name, alias, exchange.name) if n)
        object.__setattr__(self, "broadcast_exchange", exchange.name)
        object.__setattr__(self, "queue", queue)
        object.__setattr__(self, "unique", bool(unique))

    @property
    def shared(self) -> bool:
        """kombu's ``Broadcast('x', queue='q')``: one queue for every consumer."""
        return self.queue is not None and not self.unique

    def worker_queue(self, worker_id: str) -> str:
        """The queue a worker consumes this broadcast through."""
        if self.shared:
            return cast(str, self.queue)
        return validate_queue(f"bcast.{self.queue or self.name}.{worker_id}")


class WorkerBroadcasts:
    """What a worker's ``-Q`` list means once ``Broadcast`` names in it are replaced by the
    worker's own queues (``queues``), and the bindings those queues need (``bind``).

    Made in ``Worker.__init__`` (no SQL), bound in the worker's start-up after it registered: the
    workers row lists the per-worker queues, and ``BROADCAST_PRUNE`` (run by every broadcast
    publish) drops exactly the per-worker bindings no workers row lists, so binding before
    registering could lose the binding to a concurrent publish."""

    def __init__(self, declared: Any, queues: Sequence[str], worker_id: str):
        self.bindings: list[tuple[str, str]] = []  # (fanout exchange, queue)
        self.queues: list[str] = []
        found = {q.name: q for q in declared or () if isinstance(q, Broadcast)}
        found.update({q.alias: q for q in found.copy().values() if q.alias})
        for name in queues:
            bcast = found.get(name)
            if bcast is None:
                self.queues.append(name)
                continue
            own = bcast.worker_queue(worker_id)
            self.queues.append(own)
            self.bindings.append((bcast.broadcast_exchange, own))
        self.queues = list(dict.fromkeys(self.queues))

    def bind(self, app: App, conn: psycopg.Connection) -> None:
        """Bind the per-worker queues (declaring their fanout exchanges), after dropping those of
        workers that are gone. Nothing to bind: no statement."""
        if not self.bindings:
            return
        app.store.prune_broadcasts(conn, [e for e, _ in self.bindings])
        exchanges = tuple((exchange, "fanout", None) for exchange in dict.fromkeys(e for e, _ in self.bindings))
        declare(app, Plan(exchanges, tuple((e, "", q) for e, q in self.bindings)), conn=conn)


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


def plan(queues: Iterable[Queue | str] | None, conf: Settings | None = None) -> Plan:
    """Resolve ``task_queues`` to rows, refusing an exchange declared twice with different settings.

    ``conf`` gives the defaults for queues declared without an exchange (kombu's ``Queues``): with
    ``task_default_exchange`` set, such a queue binds to it, with its own routing key, else
    ``task_default_routing_key``, else its name; and the default exchange is declared with
    ``task_default_exchange_type``. Without it they bind nothing (direct delivery by name)."""
    if queues is None:
        return Plan((), ())
    if isinstance(queues, Queue | str) or not isinstance(queues, Iterable):
        raise ConfigurationError(f"task_queues must be a list of Queue objects, got {queues!r}")
    queues = [Queue(q) if isinstance(q, str) else q for q in queues]
    default = _default_exchange(conf)
    default_key = conf.task_default_routing_key if conf is not None else None
    exchanges: dict[str, Exchange] = {}
    for q in queues:
        if not isinstance(q, Queue):
            raise ConfigurationError(f"task_queues entries must be Queue objects or names, got {q!r}")
        declared = [(q.exchange, None)] if isinstance(q, Broadcast) and not q.no_declare else []
        for ex, _ in declared + _pairs(q, default, default_key):
            if isinstance(ex, Exchange):
                if exchanges.setdefault(ex.name, ex) != ex:
                    raise ConfigurationError(
                        f"exchange {ex.name!r} is declared twice with different settings: "
                        f"{exchanges[ex.name]} and {ex}; declare it once and reuse the object"
                    )
            elif not isinstance(ex, str):
                raise ConfigurationError(f"queue {q.name!r}: exchange must be an Exchange or a name, got {ex!r}")
    if default is not None and exchanges.setdefault(default.name, default) != default:
        raise ConfigurationError(
            f"task_default_exchange {default.name!r} has type {default.type!r} "
            f"(task_default_exchange_type), but task_queues declares {exchanges[default.name]}; "
            f"make them agree"
        )
    rows: dict[str, tuple[str, str | None, str | None]] = {
        name: (name, ex.type if ex.declared else None, ex.alternate_queue) for name, ex in exchanges.items()
    }
    bindings: list[tuple[str, str, str]] = []
    for q in cast("list[Queue]", queues):  # (each checked above)
        for ex, key in _pairs(q, default, default_key):
            name = validate_exchange(ex.name if isinstance(ex, Exchange) else ex)
            rows.setdefault(name, (name, None, None))
            kind = rows[name][1]
            if kind is None and isinstance(ex, Exchange):
                kind = ex.type  # (not declared: the key is still read by the type the object says)
            queue = q.queue if isinstance(q, Broadcast) and q.shared else q.name
            bindings.append((name, binding_key(kind, key, cast(str, queue)), cast(str, queue)))
    return Plan(tuple(rows.values()), tuple(dict.fromkeys(bindings)))


def _default_exchange(conf: Settings | None) -> Exchange | None:
    if conf is None or not conf.task_default_exchange:
        return None
    name = conf.task_default_exchange
    if isinstance(name, Exchange):
        return name
    return Exchange(cast(str, name), type=conf.task_default_exchange_type or "direct")


def _pairs(q: Queue, default: Exchange | None, default_key: str | None) -> list[tuple[Exchange | str, str | None]]:
    """The (exchange, binding key) pairs a queue of ``task_queues`` declares: its own; the default
    exchange's for one without any, keyed by its routing key, else ``task_default_routing_key``, else
    (``binding_key``) its name (kombu's ``Queues._add``); for a ``Broadcast``, its fanout
    exchange's when its queue is shared, else none here (each worker binds its own queue)."""
    if q.no_declare:
        return []
    if isinstance(q, Broadcast):
        return [(q.broadcast_exchange, None)] if q.shared else []
    pairs = q.binding_pairs()
    if not pairs and default is not None:
        return [(default, q.routing_key or default_key)]
    return pairs


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
    declared = plan(app.conf.task_queues if queues is None else queues, app.conf)
    if not declared.exchanges:
        return 0, 0
    return declare(app, declared)


def declare(app: App, declared: Plan, conn: psycopg.Connection | None = None) -> tuple[int, int]:
    """Write a plan in one statement (on ``conn``, else a pooled connection); refuses (writing
    nothing) if an exchange's type would change."""
    if conn is None:
        with app.connection() as own:
            row = app.store.declare_routes(own, declared.exchanges, declared.bindings)
    else:
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
