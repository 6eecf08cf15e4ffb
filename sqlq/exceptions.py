"""``celery.exceptions`` under sqlq's roof: ``from sqlq.exceptions import Ignore, Reject, Retry`` is
the only change a module that imports its exceptions from there needs.

Each name is sqlq's own exception (``sqlq.errors``) where sqlq has the thing, under Celery's name:
``CeleryError`` is ``SqlqError``, ``ImproperlyConfigured`` is ``ConfigurationError``,
``OperationalError`` is ``DatabaseUnavailableError`` (what a send raises when PostgreSQL cannot be
reached), ``InvalidTaskError`` is ``InvalidJobError``, ``CeleryWarning`` is
``SqlqCompatibilityWarning``. Celery's names for things sqlq does not have (``ChordError``,
``QueueNotFound``, ``WorkerShutdown``, ...) are not here, so importing one fails at the import.
``TaskError`` is not Celery's either: sqlq's is the failure of a task whose exception type this
process cannot import, so it is left in ``sqlq.errors``.
"""

from __future__ import annotations

from .errors import ConfigurationError as ImproperlyConfigured
from .errors import DatabaseUnavailableError as OperationalError
from .errors import (
    Ignore,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskPredicate,
    TaskRevokedError,
    TimeLimitExceeded,
    TimeoutError,
    WorkerLostError,
)
from .errors import InvalidJobError as InvalidTaskError
from .errors import SqlqCompatibilityWarning as CeleryWarning
from .errors import SqlqError as CeleryError

__all__ = ["CeleryError", "CeleryWarning", "Ignore", "ImproperlyConfigured", "InvalidTaskError",
           "MaxRetriesExceededError", "NotRegistered", "OperationalError", "Reject", "Retry",
           "SoftTimeLimitExceeded", "TaskPredicate", "TaskRevokedError", "TimeLimitExceeded", "TimeoutError",
           "WorkerLostError"]
