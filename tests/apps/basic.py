"""An importable app for tests that need one (prefork children, CLI and worker subprocesses).

Its database URL and schema come from SQLQ_DATABASE_URL / SQLQ_SCHEMA, which the test fixtures set.
"""

from __future__ import annotations

import asyncio
import os
import time

from sqlq import App

app = App("tests.apps.basic")


@app.task
def add(x, y):
    return x + y


@app.task
def fail(message="boom"):
    raise ValueError(message)


@app.task
async def async_add(x, y):
    await asyncio.sleep(0.01)
    return x + y


@app.task
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task
def pid():
    return os.getpid()


@app.task(soft_time_limit=0.5)
def soft_limited(seconds):
    from sqlq import SoftTimeLimitExceeded

    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(time_limit=0.5)
def hard_limited(seconds):
    time.sleep(seconds)
    return "finished"


@app.task
def suicide():
    os.kill(os.getpid(), 9)
