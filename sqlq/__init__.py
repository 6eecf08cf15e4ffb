"""sqlq: a Celery-shaped task queue in which PostgreSQL is broker, result backend and scheduler."""

from .app import App, Celery
from .current import current_app, shared_task
from .errors import (
    Ignore,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    SqlqError,
    TaskError,
    TimeLimitExceeded,
    UnknownExchange,
    Unroutable,
    WorkerLostError,
)
from .lazy import lazy_exports
from .result import AsyncResult, GroupResult
from .task import Task

__version__ = "0.1.0"

# Imported on first use, so that a worker or a producer that uses neither pays nothing for them at
# start-up: the periodic-schedule helpers (sqlq.periodic.timing imports croniter) and the routing
# declarations (sqlq.routing.declarations), signatures and eager results.
__getattr__ = lazy_exports(__name__, {
    "crontab": ".periodic.timing", "every": ".periodic.timing", "solar": ".periodic.timing",
    "Signature": ".canvas", "signature": ".canvas", "subtask": ".canvas", "group": ".canvas",
    "chain": ".canvas", "chord": ".canvas", "chunks": ".canvas", "xmap": ".canvas", "xstarmap": ".canvas",
    "EagerResult": ".eager", "EagerGroupResult": ".eager",
    "Exchange": ".routing.declarations", "Queue": ".routing.declarations", "binding": ".routing.declarations",
    "Broadcast": ".routing.declarations",
    "get_task_logger": ".log",
})

__all__ = [
    "App",
    "AsyncResult",
    "Broadcast",
    "Celery",
    "EagerGroupResult",
    "EagerResult",
    "Exchange",
    "GroupResult",
    "Ignore",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Queue",
    "Reject",
    "Retry",
    "Signature",
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
    "chain",
    "chord",
    "chunks",
    "crontab",
    "current_app",
    "every",
    "get_task_logger",
    "group",
    "shared_task",
    "signature",
    "solar",
    "subtask",
    "xmap",
    "xstarmap",
]
