"""sqlq: a Celery-shaped task queue in which PostgreSQL is broker, result backend and scheduler."""

from .app import App
from .errors import (
    MaxRetriesExceededError,
    NotRegistered,
    Retry,
    SoftTimeLimitExceeded,
    SqlqError,
    TaskError,
    TimeLimitExceeded,
    UnknownExchange,
    Unroutable,
    WorkerLostError,
)
from .result import AsyncResult, GroupResult
from .task import Task

__version__ = "0.1.0"

# Imported on first use, so that a worker or a producer that uses neither pays nothing for them at
# start-up: the periodic-schedule helpers (sqlq.schedules imports croniter) and the routing
# declarations (sqlq.routing).
_LAZY = {"crontab": "schedules", "every": "schedules", "Exchange": "routing", "Queue": "routing",
         "binding": "routing"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "App",
    "AsyncResult",
    "Exchange",
    "GroupResult",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Queue",
    "Retry",
    "SoftTimeLimitExceeded",
    "SqlqError",
    "Task",
    "TaskError",
    "TimeLimitExceeded",
    "UnknownExchange",
    "Unroutable",
    "WorkerLostError",
    "__version__",
    "binding",
    "crontab",
    "every",
]
