"""Rate limits (Celery's ``rate_limit``): parsing the rates, the token bucket's size, and the
Python API that changes a limit live.

A limit is enforced **across all workers**: each limited task has one token bucket, a row of the
schema's ``rate_limits`` table, and a worker takes tokens from it in the same statement that claims
the task's jobs (``CLAIM_RATE_LIMITED`` in store/claims.sql), so workers cannot overshoot together.
Celery keeps one bucket per worker process, so there N workers run N times the limit.

Where a limit comes from, and which value wins:

* **Code** declares it: ``task.rate_limit`` (a class attribute, or set by ``task_annotations``),
  else ``task_default_rate_limit``. Every worker, when it starts, writes the limits of the tasks its
  app registers into the table (a task declared without a limit has its row deleted), so the code
  is the source at each deploy.
* **The table** is what workers enforce. ``set_rate_limit(app, task, rate)`` (and
  ``app.control.rate_limit``, ``sqlq control rate_limit``, which also make every worker read it at
  once) changes it while workers run; every worker re-reads the table about once a second
  (``REFRESH_INTERVAL``), so a change takes effect without a restart, and lasts until the next
  worker start re-declares the code's value.

This module is pure but for ``set_rate_limit`` and ``rate_limits``, which run the store's statements.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .app import App
    from .store.records import RateLimitRow

#: Seconds of tokens a bucket holds when full: after an idle spell, that many seconds' worth of jobs
#: may start at once (and at least one job: a bucket always holds one token, so '10/m' lets one job
#: start, then one every six seconds). kombu's TokenBucket, which Celery's worker uses, holds one
#: token; a cluster-wide bucket refilled by claims holds a second's worth so that a busy worker
#: takes several jobs per claim instead of needing one claim statement per job.
BURST_SECONDS = 1.0

#: Seconds between two reads of the table by a worker (how soon a live change takes effect).
REFRESH_INTERVAL = 1.0

#: Seconds a worker lets pass before it looks again for a limited task's jobs in a queue where its
#: last claim found none. Finding none walks the queue's waiting jobs (no index leads to one task's
#: jobs, and adding one would cost every job its upkeep), so a worker busy with other jobs of that
#: queue does not repeat the walk at every claim; a new job of the task waits this long at most.
IDLE_RECHECK = 0.1

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*([smh]))?\s*")

_HELP = ("write a number of tasks per second, minute or hour: '10/s', '100/m', '1000/h' (a plain number "
         "is per second, as in Celery), or None / 0 for no limit")


def parse_rate(value: Any, what: str = "rate_limit") -> float | None:
    """Tasks per second for a Celery rate (``'10/s'``, ``'100/m'``, ``'1000/h'``, a plain number =
    per second), None for no limit (None, 0, ``'0'``, ``''``). Anything else raises
    ConfigurationError naming ``what`` and the accepted forms: a limit silently taken as "none"
    would be worse than an error."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):  # (a bool is an int to Python, never a rate to a user)
        raise ConfigurationError(f"{what}={value!r} is not a rate; {_HELP}")
    if isinstance(value, (int, float)):
        number, per = float(value), 1.0
    elif isinstance(value, str):
        match = _RATE.fullmatch(value)
        if match is None:
            raise ConfigurationError(f"{what}={value!r} is not a rate; {_HELP}")
        number, per = float(match.group(1)), _UNITS[match.group(2) or "s"]
    else:
        raise ConfigurationError(f"{what}={value!r} ({type(value).__name__}) is not a rate; {_HELP}")
    if not math.isfinite(number) or number < 0:
        raise ConfigurationError(
            f"{what}={value!r} is not a rate (it must be a finite number, 0 or more); {_HELP}")
    if number == 0:
        return None
    return number / per


def capacity(rate: float) -> float:
    """The bucket's size for ``rate`` tasks per second: BURST_SECONDS of tokens, at least one."""
    return max(1.0, rate * BURST_SECONDS)


def declared_rate_limits(app: App) -> dict[str, float | None]:
    """Each registered task's limit as its code declares it, in tasks per second (None: no limit):
    ``task.rate_limit``, else ``task_default_rate_limit``. Raises ConfigurationError naming the task
    (or the setting) whose rate is malformed."""
    default = parse_rate(app.conf.task_default_rate_limit, "task_default_rate_limit")
    limits: dict[str, float | None] = {}
    for name, task in app.tasks.items():
        declared = getattr(task, "rate_limit", None)
        limits[name] = default if declared is None else parse_rate(declared, f"rate_limit of task {name!r}")
    return limits


def set_rate_limit(app: App, task: str, rate: Any) -> float | None:
    """Change ``task``'s limit for every worker now, without a restart (each re-reads the table
    within about a second): ``set_rate_limit(app, 'proj.send_mail', '10/m')``; None or 0 removes it.
    Returns the rate in tasks per second (None: no limit). The change lasts until a worker starts
    with an app whose code declares another value for the task, which then re-declares it."""
    from .names import validate_task_name

    validate_task_name(task)
    per_second = parse_rate(rate, f"the rate limit for {task!r}")
    with app.connection() as conn:
        if per_second is not None and any(r.task == task for r in app.store.concurrency_limits(conn)):
            raise ConfigurationError(f"task {task!r} has a concurrency limit; sqlq enforces either a rate or "
                                     f"a concurrency limit per task: remove the concurrency limit first")
        app.store.rate_limits_set(conn, task, per_second)
    return per_second


def rate_limits(app: App) -> list[RateLimitRow]:
    """The limits the workers enforce now, one row per limited task, with the tokens its bucket holds."""
    with app.connection() as conn:
        return app.store.rate_limits(conn)


def limits_arrays(limits: Mapping[str, float | None]) -> dict[str, list[Any]]:
    """RATE_LIMITS_DECLARE's parameter arrays for ``limits`` (task → tasks per second or None)."""
    names = sorted(limits)
    rates = [limits[n] for n in names]
    return {"tasks": names, "rates": rates, "capacities": [None if r is None else capacity(r) for r in rates]}
