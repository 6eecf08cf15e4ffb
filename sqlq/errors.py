"""One exception tree for everything sqlq raises on purpose.

Every message says what is wrong *and* what to do about it, because the person reading it is
usually looking at a log line, not at our source.
"""

from __future__ import annotations

import builtins
import datetime as dt


def first_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of ``exc``'s message (libpq's run to several), or its class name when it has
    none; ``with_type`` puts the class name in front (``OperationalError: the connection is closed``)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    return f"{type(exc).__name__}: {line}" if with_type else line


class SqlqError(Exception):
    """Base of every error sqlq raises deliberately."""


class ConfigurationError(SqlqError):
    """A setting is missing, malformed or contradicts another one."""


class DatabaseURLError(ConfigurationError):
    """The database URL cannot be parsed or names an unsupported driver."""


class DatabaseUnavailableError(SqlqError):
    """The PostgreSQL server cannot be reached, refused the login, or the database is missing."""


class SchemaNotMigratedError(SqlqError):
    """The sqlq tables are missing or older than this version of sqlq expects."""


class EmbeddedDatabaseError(SqlqError):
    """The embedded development PostgreSQL could not be started or reached."""


class SerializationError(SqlqError):
    """A value cannot be encoded or decoded with the chosen serializer."""


class ContentDisallowed(SerializationError):
    """A message uses a content type the app does not accept (e.g. pickle not enabled)."""


class DuplicateJobError(SqlqError):
    """A job with the given ``task_id`` is already waiting or running."""


class InvalidNameError(SqlqError):
    """A queue, task, exchange or schema name is not allowed."""


class NotRegistered(SqlqError, KeyError):
    """A task name is not in the app's registry."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "task not registered"


class InvalidJobError(SqlqError):
    """A job row holds values no worker can run (e.g. ``attempt`` or ``retries`` negative or at the
    integer limit: written by hand or by another tool). Such a row is set aside as FAILURE with this
    type and a message naming the column and its value; raised when a claim still fails after that."""


class TaskArgumentsError(SqlqError, TypeError):
    """A call's arguments do not fit the task's signature (``typing=True``, checked by delay and
    apply_async before anything is sent); a TypeError, as Celery raises."""


class TaskDefinitionError(SqlqError):
    """A task cannot be defined as written (e.g. a name a worker could not import)."""


class RoutingError(SqlqError):
    """A message could not be routed."""


class UnknownExchange(RoutingError):
    """The exchange named by the publisher does not exist."""


class Unroutable(RoutingError):
    """No binding of the exchange matched the routing key and the exchange has no alternate queue."""


class ScheduleError(SqlqError):
    """A periodic-task schedule is invalid (bad cron string, unknown time zone, unknown task)."""


class TimeoutError(SqlqError, builtins.TimeoutError):  # noqa: A001 - deliberately also a builtin TimeoutError
    """Waiting for a result took longer than the caller allowed."""


class TaskError(SqlqError):
    """A task failed and its original exception type could not be rebuilt in this process.

    Carries the remote type name, message and traceback so nothing the worker saw is lost.
    """

    def __init__(self, exc_type: str, message: str, traceback: str | None = None):
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.exc_message = message
        self.remote_traceback = traceback


class TaskRevokedError(SqlqError):
    """The task was revoked (cancelled) before it finished."""


class ChordError(SqlqError):
    """A member of a chord's header did not succeed, so the chord's body did not run (Celery's
    ``celery.exceptions.ChordError``); the message names the member and its error."""


class IncompleteStream(SqlqError):  # noqa: N818 - Celery's name
    """``AsyncResult.collect()`` met a job that has not finished (Celery's
    ``celery.exceptions.IncompleteStream``); pass ``intermediate=True`` to go on past it."""


class WorkflowError(SqlqError):
    """A step of a workflow could not be started: the value of the step before could not be handed
    to it (not JSON, or not kept), or its row could not be written; the message says which."""


class TaskExpiredError(SqlqError):
    """The task's `expires` passed before a worker started it, so it never ran."""


class TaskPredicate(SqlqError):
    """Celery's base of the exceptions a task raises to tell the worker what to do with its job
    (``Retry``, ``Ignore``, ``Reject``) rather than to report a failure."""


class Ignore(TaskPredicate):  # noqa: N818 - Celery's name, kept so user code carries over
    """Raised in a task to end its job without an outcome of its own. Celery then stores nothing
    (the state stays whatever ``update_state`` set last); a sqlq job must end in a recorded state,
    so it is recorded as REVOKED with this type and message: nothing is left waiting, and the
    reader's ``get()`` raises ``TaskRevokedError`` saying the task ignored itself. Hooks
    ``on_failure`` and ``after_return`` are not called, as in Celery."""


class Reject(TaskPredicate):  # noqa: N818 - Celery's name
    """Raised in a task to refuse its job: ``Reject(reason, requeue=False)``, Celery's arguments.
    With ``requeue=False`` the job is recorded as FAILURE with this type, ``reason`` as its message
    and the traceback (where Celery's broker would dead-letter or drop the message); with
    ``requeue=True`` it goes back to the queue at once, counted as a retry, so a job rejected more
    than the task's ``max_retries`` times ends as that FAILURE instead of going round for ever."""

    def __init__(self, reason: object = None, requeue: bool = False):
        super().__init__(reason, requeue)
        self.reason = reason
        self.requeue = requeue

    def __str__(self) -> str:
        return "rejected" if self.reason is None else str(self.reason)


class Retry(TaskPredicate):  # noqa: N818 - Celery's name, kept so user code carries over
    """Raised by `Task.retry()` to tell the worker to run the job again later."""

    def __init__(self, message: str | None = None, exc: BaseException | None = None,
                 when: float | dt.datetime | None = None):
        if message is None:
            message = ("Retry" if when is None else f"Retry at {when.isoformat()}"
                       if isinstance(when, dt.datetime) else f"Retry in {when}s")
        super().__init__(message)
        self.exc = exc
        self.when = when


class MaxRetriesExceededError(SqlqError):
    """`Task.retry()` was called after the task used up `max_retries`."""


class SoftTimeLimitExceeded(SqlqError):  # noqa: N818 - Celery's name
    """Raised inside a task when its `soft_time_limit` passes, so it can clean up."""


class TimeLimitExceeded(SqlqError):  # noqa: N818 - Celery's name
    """The task ran past its hard `time_limit` and was stopped."""


class WorkerLostError(SqlqError):
    """The worker running the job died (killed, OOM, lost its heartbeat) before it finished."""


class TransactionalTaskError(SqlqError):
    """A transactional task used its connection in a way that cannot be committed with the outcome."""


class SqlqCompatibilityWarning(UserWarning):
    """A Celery setting or argument was given that sqlq does not use: it has no meaning when
    PostgreSQL is the broker and the result backend, or sqlq does not support it yet. The message
    names it and says why, so that nothing Celery code sets is skipped in silence."""
