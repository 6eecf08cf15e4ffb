"""Routing: where a call goes, the exchanges and bindings that decide it, and what a publish did.

In AMQP a message whose routing key matches no binding is silently dropped. In sqlq routes are two
tables (``exchanges``, ``bindings``) and the match runs in SQL — ``<schema>.route_queues(exchange,
key)`` from migration 0002 — inside the very INSERT that writes the jobs, so routing costs no extra
round trip, happens in the caller's transaction, and a message that matches nothing is an error at
enqueue (``Unroutable``) or goes to the exchange's alternate queue; it is never dropped.

Three exchange types, as in AMQP:

* ``direct``: a binding matches when its key equals the routing key;
* ``fanout``: every bound queue gets a copy (binding keys are ignored and stored as ``''``);
* ``topic``: keys are dot-separated words; in a binding key ``*`` matches exactly one word and
  ``#`` zero or more (``media.#`` matches ``media``, ``media.video`` and ``media.video.hd``). Every
  other character, regex metacharacters included, matches itself. The empty key has no words.

A publish that reaches several queues writes one job per queue, each with its own id, all sharing
one ``group_id``; the caller gets a ``GroupResult`` whose ``.results`` reach each job. A publish
that reaches one queue returns a plain ``AsyncResult``, so Celery code calling ``.get()`` works.

The parts, each imported only when used (every ``delay()`` resolves a destination; few processes
declare routes or publish to an exchange):

* ``resolution``: ``apply_async`` options, task options, ``task_routes`` and defaults → a queue, or
  an exchange and a routing key (no SQL);
* ``declarations``: ``Exchange``/``Queue``/``binding``/``Broadcast``, the operations behind ``sqlq
  routes``, and a worker's own broadcast queues;
* ``published``: a PUBLISH statement's rows → results (``published.results``), or ``Unroutable``/``UnknownExchange``.
"""

from ..lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "Destination": ".resolution", "resolve": ".resolution",
    "Exchange": ".declarations", "Queue": ".declarations", "binding": ".declarations", "Route": ".declarations",
    "Broadcast": ".declarations",
    "apply_routes": ".declarations", "add_route": ".declarations", "remove_route": ".declarations",
    "list_routes": ".declarations", "route_queues": ".declarations",
})

__all__ = ["Broadcast", "Destination", "Exchange", "Queue", "Route", "add_route", "apply_routes", "binding", "list_routes",
           "remove_route", "resolve", "route_queues"]
