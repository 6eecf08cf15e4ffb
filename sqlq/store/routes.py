"""Exchanges and bindings, and publishing jobs through them (routes.sql; sqlq/routing.py turns
what comes back into results or errors).

A routed publish is one ``INSERT … SELECT`` over the bindings that match: zero queues means
unroutable, said by the publish's rows, so the caller raises without its transaction aborted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg

from . import fast
from .base import StoreBase
from .records import DeclaredRoutes, JobSpec, PublishRow, RouteRow


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
        if own and len(jobs) == 1:
            res = fast.execute(conn, self._fast["PUBLISH_ONE"], jobs[0].params())
            if res is not None:
                return [_publish_row(res)]
        statement, params = self.publish_statement(jobs)
        return [PublishRow(*r) for r in conn.execute(statement, params, prepare=True).fetchall()]

    async def apublish(self, conn: psycopg.AsyncConnection, jobs: Sequence[JobSpec]) -> list[PublishRow]:
        statement, params = self.publish_statement(jobs)
        cur = await conn.execute(statement, params, prepare=True)
        return [PublishRow(*r) for r in await cur.fetchall()]

    def declare_routes(self, conn: psycopg.Connection, exchanges: Sequence[tuple[str, str | None, str | None]],
                       bindings: Sequence[tuple[str, str, str]]) -> DeclaredRoutes:
        """Upsert exchanges (name, type, alternate_queue) and add bindings (exchange, key, queue)."""
        row = conn.execute(self.sql["DECLARE_ROUTES"], {
            "names": [e[0] for e in exchanges], "types": [e[1] for e in exchanges],
            "alternates": [e[2] for e in exchanges], "b_exchanges": [b[0] for b in bindings],
            "b_keys": [b[1] for b in bindings], "b_queues": [b[2] for b in bindings],
        }).fetchone()
        return DeclaredRoutes(*cast("tuple[Any, ...]", row))

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
