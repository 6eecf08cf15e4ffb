"""An importable app with concurrency-limited tasks, for tests that run worker processes
(tests/test_concurrency_limits.py). Its database URL and schema come from SQLQ_DATABASE_URL /
SQLQ_SCHEMA."""

from __future__ import annotations

import time
from pathlib import Path

from sqlq import App

app = App("tests.apps.bounded")


@app.task(concurrency_limit=3)
def limited(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(concurrency_limit=2, concurrency_key=lambda args, kwargs: kwargs["account"])
def per_account(seconds: float, account: str) -> str:
    time.sleep(seconds)
    return account


@app.task(concurrency_limit=1)
def hold(marker: str | None) -> str:
    """The first run with a ``marker`` path creates it and sleeps (until its worker is killed); a
    run that finds the marker, or has none, returns at once."""
    if marker is not None and not Path(marker).exists():
        Path(marker).touch()
        time.sleep(120)
    return "done"


@app.task
def free(i: int) -> int:
    return i


@app.task(concurrency_limit=2, concurrency_key=lambda args, kwargs: kwargs["account"], unique_on=("item",))
def sync_item(seconds: float, account: str, item: str) -> str:
    """Limited per account and unique per item: a call whose item has a job waiting or running
    writes nothing, and at most two jobs of one account run at once."""
    time.sleep(seconds)
    return item
