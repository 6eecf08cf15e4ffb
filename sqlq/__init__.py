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
    WorkerLostError,
)
from .result import AsyncResult
from .task import Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncResult",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Retry",
    "SoftTimeLimitExceeded",
    "SqlqError",
    "Task",
    "TaskError",
    "TimeLimitExceeded",
    "WorkerLostError",
    "__version__",
]
