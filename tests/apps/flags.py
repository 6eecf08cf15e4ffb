"""The app of tests/test_worker_flags.py (``sqlq worker``'s Celery-style flags).

Its database URL and schema come from SQLQ_DATABASE_URL / SQLQ_SCHEMA, which the test fixtures set.
"""

from __future__ import annotations

import os
import time

from sqlq import App

app = App("tests.apps.flags")

#: What ``hog`` allocated, held so that the process's resident memory stays up after the job.
_held: list[bytearray] = []


@app.task
def add(x, y):
    return x + y


@app.task
def fail(message="boom"):
    raise RuntimeError(message)


@app.task(bind=True, max_retries=3)
def retry_once(self):
    if self.request.retries < 1:
        raise self.retry(exc=ValueError("not yet"), countdown=0)
    return "done"


@app.task
def sleep(seconds):
    """Sleeps in steps of 0.1 s: the threads pool's hard time limit is an exception raised in the
    task's thread, which lands between two steps (one long time.sleep would run to its end)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    return seconds


@app.task
def pid():
    return os.getpid()


@app.task
def hog(kib):
    """Allocate and keep ``kib`` KiB (touched, so resident)."""
    _held.append(bytearray(b"x" * (kib * 1024)))
    return os.getpid()
