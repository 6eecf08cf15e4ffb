"""The demo's tasks: one of each kind a Celery user writes.

Run a worker for them with ``sqlq -A examples.tasks worker``.
"""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import text

from sqlq import App

# No database URL here: SQLQ_DATABASE_URL / DATABASE_URL decide, else the embedded dev database.
app = App("examples.tasks")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=5)
def flaky_fetch(self, url: str) -> str:
    """Fails twice, then succeeds: shows retry() with a countdown."""
    if self.request.retries < 2:
        raise self.retry(exc=ConnectionError(f"{url} timed out"), countdown=0.2)
    return f"fetched {url} after {self.request.retries} retries"


@app.task(autoretry_for=(ConnectionError,), retry_backoff=0.1, max_retries=2)
def always_down(host: str) -> None:
    raise ConnectionError(f"{host} refused the connection")


@app.task
def divide(x: float, y: float) -> float:
    return x / y


@app.task
async def slow_greeting(name: str) -> str:
    await asyncio.sleep(0.05)
    return f"hello, {name} (from an async task)"


@app.task(bind=True, transactional=True)
def ship_order(self, order_id: int) -> str:
    """Exactly-once effect: the UPDATE and this job's SUCCESS commit together, or neither does."""
    tracking = f"TRACK-{order_id}-{random.randint(1000, 9999)}"
    self.connection.execute(
        text("UPDATE demo_orders SET status = 'shipped', tracking = :t WHERE id = :id"),
        {"t": tracking, "id": order_id},
    )
    return tracking
