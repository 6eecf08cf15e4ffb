"""Helpers shared by the peer adapters: availability checks, pacing, the PG bench database."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterable

import settings


class Skipped(Exception):
    """The peer cannot run here (service down, package missing); the message says why."""


def require_tcp(service: str, host: str, port: int, timeout: float = 2.0) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        raise Skipped(f"{service} not reachable at {host}:{port} ({exc})") from exc


def require_postgres() -> None:
    require_tcp("PostgreSQL", *settings.host_port(settings.PG_SERVER_DSN, 5432))


def recreate_bench_database() -> None:
    """Drop (kicking out stray sessions) and recreate the dedicated ``bench_peers`` database."""
    import psycopg
    from psycopg import sql

    name = sql.Identifier(settings.PG_BENCH_DB)
    with psycopg.connect(settings.pg_dsn(settings.PG_MAINTENANCE_DB), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def drop_bench_database() -> None:
    import psycopg
    from psycopg import sql

    name = sql.Identifier(settings.PG_BENCH_DB)
    with psycopg.connect(settings.pg_dsn(settings.PG_MAINTENANCE_DB), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def send_paced(ids: Iterable[int], interval: float, send: Callable[[int], object]) -> dict[int, float]:
    """Call ``send(i)`` every ``interval`` seconds; return i -> wall-clock time just before the call."""
    sent: dict[int, float] = {}
    start = time.monotonic()
    for k, i in enumerate(ids):
        delay = start + k * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent[i] = time.time()
        send(i)
    return sent


async def send_paced_async(
    ids: Iterable[int], interval: float, send: Callable[[int], Awaitable[object]]
) -> dict[int, float]:
    """Async twin of :func:`send_paced`."""
    sent: dict[int, float] = {}
    start = time.monotonic()
    for k, i in enumerate(ids):
        delay = start + k * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[i] = time.time()
        await send(i)
    return sent
