"""The app the benchmarks enqueue to and the ``sqlq worker`` under test runs.

    python -m sqlq -A benchmarks.bench_tasks worker -P solo --burst

The database is ``SQLQ_DATABASE_URL`` (else the local server), the schema ``SQLQ_SCHEMA`` (set by
``benchmarks/run.py`` to a fresh ``bench_<random>`` schema for each run). Outcomes are recorded
(``ignore_result=False``) so the drain can be checked and timed from the ``results`` table.
"""

from __future__ import annotations

import os

from sqlq import App

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"

app = App(
    "benchmarks.bench_tasks",
    database_url=os.environ.get("SQLQ_DATABASE_URL") or LOCAL_URL,
    schema=os.environ.get("SQLQ_SCHEMA") or "sqlq_bench",
)


@app.task(ignore_result=False)
def noop(i: int) -> None:
    return None


@app.task(ignore_result=False, unique_on=("args",))
def noop_keyed(i: int) -> None:
    """``noop`` with a unique key per call (the "unique keys" drain: each job its own key)."""
    return None


#: The "concurrency limit" drain's limit: more than the drain's jobs, so it never binds (a limit near
#: the worker's prefetch binds a little: the running rows include outcomes not recorded yet, which
#: the worker no longer counts) and the drain measures what the limited claim path costs.
BENCH_CONCURRENCY_LIMIT = 100_000
#: Set (to anything) in that drain's worker only: a worker whose app has a limited task claims every
#: job through the limited path, so the other drains' workers must not declare it.
LIMITED_ENV = "BENCH_CONCURRENCY_LIMITED"


@app.task(ignore_result=False, concurrency_limit=BENCH_CONCURRENCY_LIMIT if os.environ.get(LIMITED_ENV) else None)
def noop_limited(i: int) -> None:
    """``noop`` with a cluster-wide concurrency limit that does not bind (BENCH_CONCURRENCY_LIMIT),
    in a worker started with LIMITED_ENV."""
    return None


@app.task(ignore_result=False)
def count(results: list) -> int:
    """A chord's body: how many results it was given."""
    return len(results)
