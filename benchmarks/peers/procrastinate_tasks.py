"""Procrastinate app + noop task, shared by the producer and ``procrastinate worker``."""

from __future__ import annotations

import procrastinate
import settings
import sink

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=settings.pg_dsn()))


@app.task(name="bench_noop")
async def noop(i: int) -> None:
    sink.record(i)
