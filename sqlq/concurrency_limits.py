"""Concurrency limits: at most N jobs of a task running at once, cluster-wide (all workers, all hosts).

``@app.task(concurrency_limit=5)`` lets at most five jobs of the task run at once, whichever
workers run them; with ``concurrency_key=lambda args, kwargs: kwargs['account']`` the limit holds for
each key value instead (at most five per account). The key is computed when the job is enqueued and
stored on its row. Celery has no such limit (its ``worker_concurrency`` and autoscaling are per
worker); here it is one row per task (and per key value given a limit of its own) in
``concurrency_limits``, enforced by the claim itself: the claim locks the row, counts the task's
running jobs and takes at most the free slots (CLAIM_CONCURRENCY_LIMITED in store/claims.sql).

A claimed job holds its slot from its claim to its outcome, prefetched jobs too (they are claimed,
so they count): a limit of N lets N jobs be claimed, wherever they wait. A job that stops running
any way frees its slot, a dead worker's jobs when they are rescued, since what is counted is the
running rows, never a counter.

Where a limit comes from, and which value wins, as for rate limits (sqlq.rate_limits):

* **Code** declares it (``concurrency_limit``, a class attribute or ``task_annotations``); every
  worker, when it starts, writes the limits of the tasks its app registers into the table (the row
  of a task declared without one is deleted). Rows for one key value are only written live.
* **The table** is what claims enforce: ``set_concurrency_limit(app, task, n, key=None)``
  (``app.control.concurrency_limit``, ``sqlq control concurrency_limit``) changes it while workers
  run; each worker's next claim of the task reads it, and each re-reads which tasks are limited
  about once a second (``rate_limits.REFRESH_INTERVAL``).

This module is pure but for ``set_concurrency_limit`` and ``concurrency_limits``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .app import App
    from .store.records import ConcurrencyLimitRow

#: The largest limit a row holds (the column is a PostgreSQL integer).
MAX_LIMIT = 2147483647

_HELP = "write a whole number of jobs from 1 to 2147483647, or None / 0 for no limit"


def parse_limit(value: Any, what: str = "concurrency_limit") -> int | None:
    """The limit ``value`` says (None: no limit, for None, 0, ``'0'`` and ``''``). Anything but a
    whole number from 0 to MAX_LIMIT raises ConfigurationError naming ``what``: a limit silently
    taken as "none" would be worse than an error."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{what}={value!r} is not a number of jobs; {_HELP}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigurationError(f"{what}={value!r} is not a number of jobs; {_HELP}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ConfigurationError(f"{what}={value!r} ({type(value).__name__}) is not a number of jobs; {_HELP}")
    if value < 0 or value > MAX_LIMIT:
        raise ConfigurationError(f"{what}={value!r} is out of range; {_HELP}")
    return value or None


def check_key_function(fn: Any, task: str) -> None:
    """A task's ``concurrency_key`` must be callable as ``fn(args, kwargs)``."""
    if fn is not None and not callable(fn):
        raise ConfigurationError(
            f"concurrency_key of task {task!r} must be a function of (args, kwargs) returning the key, "
            f"e.g. concurrency_key=lambda args, kwargs: kwargs['account']; got {fn!r}")


def compute_key(fn: Callable[[tuple[Any, ...], dict[str, Any]], Any], task: str, args: Sequence[Any] | None,
                kwargs: dict[str, Any] | None) -> str:
    """The key value of one call, as stored on its row: ``fn(args, kwargs)`` as text (a str as it
    is, an int as its digits). A key function that raises, or returns None or anything but a str
    or an int, fails the enqueue naming the task: a job whose key is unknown could not be counted."""
    try:
        key = fn(tuple(args or ()), dict(kwargs or {}))
    except Exception as exc:
        raise ConfigurationError(
            f"the concurrency_key of task {task!r} raised {type(exc).__name__}: {exc} for args={args!r}, "
            f"kwargs={kwargs!r}; make it return a key for every call of the task") from exc
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ConfigurationError(
            f"the concurrency_key of task {task!r} returned {key!r} ({type(key).__name__}) for args={args!r}, "
            f"kwargs={kwargs!r}; it must return a str or an int")
    return key if isinstance(key, str) else str(key)


def declared_concurrency_limits(app: App) -> dict[str, int | None]:
    """Each registered task's limit as its code declares it (None: no limit). Raises
    ConfigurationError naming the task whose limit is malformed."""
    return {name: parse_limit(getattr(task, "concurrency_limit", None), f"concurrency_limit of task {name!r}")
            for name, task in app.tasks.items()}


def set_concurrency_limit(app: App, task: str, limit: Any, key: str | None = None) -> int | None:
    """Change ``task``'s limit (of its key value ``key`` when given) for every worker now, without a
    restart: ``set_concurrency_limit(app, 'proj.sync', 2, key='acme')``; None or 0 removes it.
    Returns the limit (None: none). A task's own limit lasts until a worker starts with an app whose
    code declares another, which then declares it again; a key value's lasts until changed."""
    from .names import validate_task_name

    validate_task_name(task)
    if key is not None and not isinstance(key, str):
        raise ConfigurationError(f"the key of a concurrency limit is a str (as the task's concurrency_key "
                                 f"stores it), got {type(key).__name__} {key!r}")
    n = parse_limit(limit, f"the concurrency limit for {task!r}")
    with app.connection() as conn:
        if n is not None and any(r.task == task for r in app.store.rate_limits(conn)):
            raise ConfigurationError(f"task {task!r} has a rate limit; sqlq enforces either a rate or a "
                                     f"concurrency limit per task: remove the rate limit first")
        app.store.concurrency_limit_set(conn, task, n, key)
    return n


def concurrency_limits(app: App) -> list[ConcurrencyLimitRow]:
    """The limits the claims enforce now, one row per task (and key value), with what runs under it."""
    with app.connection() as conn:
        return app.store.concurrency_limits(conn)
