"""What a routed publish returned: the results it made, or the error that wrote nothing.

A publish (``App.enqueue`` or a bulk call with an exchange) is one ``PUBLISH`` statement that
reports, per job, whether its exchange exists and which queues its key reached; zero queues is
``Unroutable`` and a missing exchange ``UnknownExchange``, raised here without writing anything.
The messages say what to do, and ``route_queues`` (``sqlq routes match``) raises the same ones.
A broadcast that no worker consumes is ``Unroutable`` too, saying so: its copies would have no
worker to run them, and sqlq never drops a message in silence.
Imported on first routed publish only: a producer that never routes does not load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import RoutingError, UnknownExchange, Unroutable
from ..result import AsyncResult, GroupResult

if TYPE_CHECKING:
    from ..app import App
    from ..store import JobSpec, PublishRow


def results(app: App, specs: Sequence[JobSpec], rows: Sequence[PublishRow]) -> list[AsyncResult | GroupResult]:
    """Results for the PUBLISH statement's rows (one per spec), or the error that wrote nothing."""
    for spec, row in zip(specs, rows, strict=True):
        if not row.exchange_exists:
            raise _error(UnknownExchange, unknown_exchange_message(spec.exchange, spec.task), spec)
        if not row.queue_count:
            if getattr(spec.exchange, "broadcast", False):
                raise _error(Unroutable, no_broadcast_consumer_message(spec.exchange, spec.task), spec)
            raise _error(Unroutable, unroutable_message(spec.exchange, spec.routing_key, spec.task), spec)
    made: list[AsyncResult | GroupResult] = []
    for spec, row in zip(specs, rows, strict=True):
        ids = row.job_ids or []
        if len(ids) == 1:
            made.append(AsyncResult(ids[0], app, spec.task))
        else:
            made.append(GroupResult(row.group_id, [AsyncResult(i, app, spec.task) for i in ids], app,
                                    queues=list(row.queues or [])))
    return made


def _error(cls: type[RoutingError], message: str, spec: JobSpec) -> RoutingError:
    exc = cls(message)
    exc.exchange = spec.exchange  # type: ignore[attr-defined]
    exc.routing_key = spec.routing_key  # type: ignore[attr-defined]
    exc.task = spec.task  # type: ignore[attr-defined]
    return exc


def unknown_exchange_message(exchange: str | None, task: str | None) -> str:
    sending = f" (sending {task})" if task else ""
    return (f"exchange {exchange!r} does not exist{sending}; nothing was enqueued. Declare it: add "
            f"Queue(..., Exchange({exchange!r}, type=...)) to task_queues and run `sqlq routes apply` "
            f"(workers apply task_queues when they start), or `sqlq routes add {exchange} QUEUE --type TYPE`")


def unroutable_message(exchange: str | None, key: str | None, task: str | None) -> str:
    sending = f" (sending {task})" if task else ""
    return (f"unroutable: no binding of exchange {exchange!r} matches routing key {key!r}{sending}; "
            f"nothing was enqueued. Bind a queue that matches (`sqlq routes add {exchange} QUEUE --key KEY`), "
            f"use a key that matches one of the bindings `sqlq routes list` shows, or give the exchange "
            f"an alternate queue for unmatched messages (Exchange(..., alternate_queue=Q) or "
            f"`sqlq routes add {exchange} --alternate Q`)")


def no_broadcast_consumer_message(exchange: str | None, task: str | None) -> str:
    sending = f" (sending {task})" if task else ""
    return (f"unroutable: no worker consumes broadcast {exchange!r} now{sending}; nothing was enqueued. "
            f"A broadcast reaches the workers running at the time it is sent: start workers with "
            f"-Q {exchange} (its Broadcast in task_queues gives each its own copy), and send again")
