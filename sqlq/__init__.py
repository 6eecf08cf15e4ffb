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
from .routing import Exchange, Queue, binding
from .schedules import crontab, every
from .task import Task

__version__ = "0.1.0"

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
