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


# --- tasks the worker tests use (tests/test_worker_*.py) -----------------------------------------

_runs_conn: tuple[int, object] | None = None


def record_run(job_id: str) -> None:
    """Write one row per execution into ``<schema>.runs`` (a side table the test creates), on this
    process's own connection, so a test can count how often each job really ran."""
    global _runs_conn
    import psycopg
    from psycopg import sql

    if _runs_conn is None or _runs_conn[0] != os.getpid():
        conn = psycopg.connect(os.environ["SQLQ_DATABASE_URL"], autocommit=True)
        # a crashed process never loses a committed row; only a server crash could, so skip the flush
        conn.execute("SET synchronous_commit = off")
        _runs_conn = (os.getpid(), conn)
    conn = _runs_conn[1]
    conn.execute(sql.SQL("INSERT INTO {}.runs (job_id, pid) VALUES (%s, %s)").format(sql.Identifier(app.conf.schema)),
                 (job_id, os.getpid()))


@app.task(bind=True)
def recorded(self, seconds=0.0):
    """Records each execution, then sleeps: the crash and shutdown tests count runs with it."""
    record_run(self.request.id)
    if seconds:
        time.sleep(seconds)
    return self.request.attempt


@app.task(bind=True)
def slow_first_attempt(self, seconds):
    """Slow only on its first attempt, so a test can kill its process and watch the re-run finish."""
    record_run(self.request.id)
    if self.request.attempt == 1:
        time.sleep(seconds)
    return self.request.attempt



@app.task(bind=True, max_retries=5)
def flaky(self, failures):
    """Fails (and retries at once) ``failures`` times, then returns how many retries it took."""
    if self.request.retries < failures:
        raise self.retry(exc=ValueError(f"failure {self.request.retries + 1}"), countdown=0)
    return self.request.retries


@app.task(acks_late=False)
def suicide_acks_early():
    """Kills its process; acks_late is off, so the job is not run again."""
    os.kill(os.getpid(), 9)


@app.task
def mark_then_sleep(path, seconds):
    """Creates ``path`` as it starts, then sleeps: a test can wait until the job is really running
    (sent to a child is not started: a child hands back what it has not begun)."""
    with open(path, "w"):
        pass
    time.sleep(seconds)
    return seconds


# --- poison outcomes (tests/test_poison_outcomes.py): each one's outcome is hard to record ------

@app.task
def returns_nan():
    return [1.0, {"ratio": float("nan")}]


@app.task
def returns_nul():
    return "text with a NUL \x00 inside"


@app.task
def returns_surrogate():
    """A lone surrogate passes the JSON encoder (ensure_ascii off) but not UTF-8: refused at encoding."""
    return "bad \udc80 text"


@app.task
def raises_nul():
    raise ValueError("message with a NUL \x00 inside")


@app.task
def raises_surrogate():
    raise ValueError("message with a lone surrogate \udc80")


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")


@app.task
def raises_unprintable():
    raise UnprintableError()


@app.task(bind=True, max_retries=3)
def retries_with_nul(self):
    """Retries once with an error whose text holds a NUL (RETRY's last_error), then succeeds."""
    if self.request.retries == 0:
        raise self.retry(exc=ValueError("retry reason with a NUL \x00"), countdown=0)
    return "retried"


@app.task(bind=True, max_retries=None)
def always_retries(self):
    raise self.retry(countdown=0)


class ReceiverExit(BaseException):  # noqa: N818 - a BaseException on purpose: Signal.send does not catch it
    """What a receiver raises that the signal machinery lets through."""


@app.task
def troubled_prerun():
    return "ran"


@app.task
def troubled_postrun():
    return "ran"


def _raise_in_prerun(sender=None, **kwargs):
    raise ReceiverExit("task_prerun receiver gave up")


def _raise_in_postrun(sender=None, **kwargs):
    raise ReceiverExit("task_postrun receiver gave up")


from sqlq import signals  # noqa: E402 - kept beside the receivers it is for

signals.task_prerun.connect(_raise_in_prerun, sender=troubled_prerun.name)
signals.task_postrun.connect(_raise_in_postrun, sender=troubled_postrun.name)
