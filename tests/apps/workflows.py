"""An importable app for the workflow tests that run worker processes (chains and chords with
workers killed mid-run). Its database URL and schema come from SQLQ_DATABASE_URL / SQLQ_SCHEMA."""

from __future__ import annotations

import time

from sqlq import App
from tests.apps.basic import record_run

app = App("tests.apps.workflows")


@app.task(bind=True, acks_late=True)
def step(self, x):
    """One step of a long chain: x + 1, slowly enough for a worker to be killed mid-chain."""
    record_run(self.request.id)
    time.sleep(0.02)
    return x + 1


@app.task(bind=True, acks_late=True)
def member(self, i):
    """A chord member: its own number back."""
    record_run(self.request.id)
    time.sleep(0.002)
    return i


@app.task(bind=True, acks_late=True)
def body(self, results):
    """A chord body: records each run, returns how many results it got and whether in order."""
    record_run(self.request.id)
    return [len(results), results == sorted(results), sum(results)]
