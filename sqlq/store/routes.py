"""Exchanges and bindings, and publishing jobs through them (routes.sql; sqlq/routing/ turns
what comes back into results or errors).

A routed publish is one ``INSERT … SELECT`` over the bindings that match: zero queues means
unroutable, said by the publish's rows, so the caller raises without its transaction aborted.

An exchange name that is not a plain ``str`` is a ``RoutedExchange`` (sqlq/routing/resolution.py):
its route said the exchange's type, or it is a ``Broadcast``'s fanout exchange. Before such a
publish the exchange is declared with that type (``DECLARE_ROUTES`` without bindings: once per
process on sqlq's own connections, each time on a caller's, whose transaction may roll it back),
and a broadcast first drops the queues of workers that are gone and binds again those of live
workers that lost theirs (``BROADCAST_PRUNE``). A plain name
costs one ``type() is str`` test per job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg

from ..errors import RoutingError
from . import fast
from .base import StoreBase
from .records import DeclaredRoutes, JobSpec, PrunedBroadcasts, PublishRow, RouteRow


class Routes(StoreBase):
    @staticmethod
    def routed(jobs: Sequence[JobSpec]) -> bool:
        """Whether this batch needs PUBLISH (some job goes through an exchange)."""
        return any(j.exchange is not None for j in jobs)

    @staticmethod
    def publish_params(jobs: Sequence[JobSpec]) -> dict[str, list[Any]]:
        """PUBLISH's and PUBLISH_REWRITE's parameters: the batch's, with exchanges and routing keys."""
        params = JobSpec.batch_params(jobs)
        params["exchanges"] = [j.exchange for j in jobs]
        params["routing_keys"] = [j.routing_key for j in jobs]
        return params

    @staticmethod
    def published_jobs(rows: Sequence[PublishRow]) -> tuple[list[str], list[str]]:
        """The job ids and queues in PUBLISH's rows."""
        return ([i for row in rows for i in row.job_ids or ()],
                sorted({q for row in rows for q in row.queues or ()}))

    def publish_statement(self, jobs: Sequence[JobSpec]) -> tuple[str, dict[str, Any]]:
        """PUBLISH_ONE for one job (scalar parameters: a reusable plan), PUBLISH for a batch."""
        if len(jobs) == 1:
            return self.sql["PUBLISH_ONE"], jobs[0].params()
        return self.sql["PUBLISH"], self.publish_params(jobs)

    def publish(self, conn: psycopg.Connection, jobs: Sequence[JobSpec], *,
                own: bool = False) -> list[PublishRow]:
        """One row per job, in order. ``own``:
        ``conn`` is one of sqlq's pooled autocommit connections (the libpq fast path for one job)."""
        self.prepare_routed(conn, jobs, own=own)
        if own and len(jobs) == 1:
            res = fast.execute(conn, self._fast["PUBLISH_ONE"], jobs[0].params())
            if res is not None:
                return [_publish_row(res)]
        statement, params = self.publish_statement(jobs)
        return [PublishRow(*r) for r in conn.execute(statement, params, prepare=True).fetchall()]

    async def apublish(self, conn: psycopg.AsyncConnection, jobs: Sequence[JobSpec]) -> list[PublishRow]:
        await self.aprepare_routed(conn, jobs)
        statement, params = self.publish_statement(jobs)
        cur = await conn.execute(statement, params, prepare=True)
        return [PublishRow(*r) for r in await cur.fetchall()]

    async def aprepare_routed(self, conn: psycopg.AsyncConnection, jobs: Sequence[JobSpec]) -> None:
        """``prepare_routed`` for an async connection (never one of sqlq's own sync pool's)."""
        typed = self._typed_exchanges(jobs, False)
        if typed:
            broadcasts = [name for name, _, broadcast in typed if broadcast]
            if broadcasts:
                await conn.execute(self.sql["BROADCAST_PRUNE"], {"exchanges": broadcasts})
            cur = await conn.execute(self.sql["DECLARE_ROUTES"], self._declare_params(
                [(name, kind, None) for name, kind, _ in typed], []))
            self._check_typed(DeclaredRoutes(*cast("tuple[Any, ...]", await cur.fetchone())))

    def prepare_routed(self, conn: psycopg.Connection, jobs: Sequence[JobSpec], *, own: bool = False) -> None:
        """What a publish of ``jobs`` needs first: their typed exchanges declared (or a type conflict
        raised, nothing written) and, for a broadcast, the per-worker queues pruned. ``publish``
        runs it; a write that runs PUBLISH by other means (a SQLAlchemy connection) calls it on the
        same connection first."""
        typed = self._typed_exchanges(jobs, own)
        if typed:
            self._declare_typed(conn, typed, own)

    def _typed_exchanges(self, jobs: Sequence[JobSpec], own: bool) -> list[tuple[str, str, bool]]:
        """(name, type, broadcast) of the jobs' ``RoutedExchange``s still to declare: on sqlq's own
        connection those declared once are remembered (a broadcast is pruned at every publish)."""
        found: dict[str, tuple[str, str, bool]] = {}
        for job in jobs:
            exchange = job.exchange
            if exchange is None or type(exchange) is str:
                continue
            kind, broadcast = getattr(exchange, "type", None), bool(getattr(exchange, "broadcast", False))
            if kind is None or (own and not broadcast and (exchange, kind) in self._declared_types()):
                continue
            found.setdefault(exchange, (str(exchange), kind, broadcast))
        return list(found.values())

    def _declared_types(self) -> set[tuple[str, str]]:
        declared: set[tuple[str, str]] = self.__dict__.setdefault("_exchange_types_declared", set())
        return declared

    def _declare_typed(self, conn: psycopg.Connection, typed: list[tuple[str, str, bool]], own: bool) -> None:
        broadcasts = [name for name, _, broadcast in typed if broadcast]
        if broadcasts:
            self.prune_broadcasts(conn, broadcasts)
        self._check_typed(self.declare_routes(conn, [(name, kind, None) for name, kind, _ in typed], []))
        if own:
            self._declared_types().update((name, kind) for name, kind, _ in typed)

    @staticmethod
    def _check_typed(row: DeclaredRoutes) -> None:
        if row.conflicts:
            raise RoutingError(
                "exchange type conflict, nothing was enqueued: " + "; ".join(row.conflicts)
                + ". The route's exchange_type (or Exchange object, or Broadcast) says one type and the "
                  "database has the exchange with another: make the route say the stored type, or "
                  "remove the exchange (sqlq routes remove EXCHANGE) and declare it again"
            )

    @staticmethod
    def _declare_params(exchanges: Sequence[tuple[str, str | None, str | None]],
                        bindings: Sequence[tuple[str, str, str]]) -> dict[str, list[Any]]:
        return {
            "names": [e[0] for e in exchanges], "types": [e[1] for e in exchanges],
            "alternates": [e[2] for e in exchanges], "b_exchanges": [b[0] for b in bindings],
            "b_keys": [b[1] for b in bindings], "b_queues": [b[2] for b in bindings],
        }

    def declare_routes(self, conn: psycopg.Connection, exchanges: Sequence[tuple[str, str | None, str | None]],
                       bindings: Sequence[tuple[str, str, str]]) -> DeclaredRoutes:
        """Upsert exchanges (name, type, alternate_queue) and add bindings (exchange, key, queue)."""
        row = conn.execute(self.sql["DECLARE_ROUTES"], self._declare_params(exchanges, bindings)).fetchone()
        return DeclaredRoutes(*cast("tuple[Any, ...]", row))

    def prune_broadcasts(self, conn: psycopg.Connection, exchanges: Sequence[str]) -> PrunedBroadcasts:
        """Unbind the per-worker broadcast queues of workers that are gone and revoke their waiting
        copies; bind again the live workers' queues of ``exchanges`` that lost their binding."""
        row = conn.execute(self.sql["BROADCAST_PRUNE"], {"exchanges": list(exchanges)}).fetchone()
        return PrunedBroadcasts(*cast("tuple[Any, ...]", row))

    def exchange_type(self, conn: psycopg.Connection, name: str) -> str | None:
        row = conn.execute(self.sql["EXCHANGE_TYPE"], {"name": name}).fetchone()
        return row[0] if row else None

    def unbind(self, conn: psycopg.Connection, exchange: str, queue: str, key: str | None = None) -> int:
        return conn.execute(self.sql["UNBIND"], {"exchange": exchange, "queue": queue, "key": key}).rowcount

    def delete_exchange(self, conn: psycopg.Connection, name: str) -> int:
        return conn.execute(self.sql["DELETE_EXCHANGE"], {"name": name}).rowcount

    def list_routes(self, conn: psycopg.Connection) -> list[RouteRow]:
        return [RouteRow(*r) for r in conn.execute(self.sql["LIST_ROUTES"]).fetchall()]

    def route_queues(self, conn: psycopg.Connection, exchange: str, routing_key: str) -> list[str] | None:
        """The queues (exchange, routing_key) reaches; None for an unknown exchange."""
        return cast("tuple[list[str] | None]", conn.execute(self.sql["ROUTE_QUEUES"], {"exchange": exchange, "routing_key": routing_key}).fetchone())[0]


def _publish_row(res: psycopg.pq.abc.PGresult) -> PublishRow:
    """PUBLISH_ONE's one row, read from its text form as psycopg would have typed it."""
    ord_, exists, count, ids, queues, group_id, notified = (res.get_value(0, i) for i in range(7))
    return PublishRow(int(ord_), exists == b"t", int(count), fast.parse_text_array(ids),  # type: ignore[arg-type]  # (never NULL)
                      fast.parse_text_array(queues), None if group_id is None else group_id.decode(),
                      int(notified))  # type: ignore[arg-type]  # (never NULL)
