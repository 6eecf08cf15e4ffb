"""``Task``: what ``@app.task`` returns.

Calling the task object runs the function here and now; ``delay``/``apply_async`` turn the call into
a job row (one round trip) and return an ``AsyncResult``. ``retry()`` asks the worker to run the job
again later. Options mirror Celery's so existing task modules carry over.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import inspect
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import serialization
from .errors import ConfigurationError, MaxRetriesExceededError, Retry, TransactionalTaskError
from .names import validate_queue
from .store import JobSpec

if TYPE_CHECKING:
    from .app import App
    from .result import AsyncResult, GroupResult

_MISSING = object()


@dataclass(slots=True)
class Request:
    """What a running task knows about its own job (``self.request`` in a bound task)."""

    id: str | None = None
    task: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    attempt: int = 0
    queue: str | None = None
    priority: int = 0
    headers: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    hostname: str | None = None
    worker_id: str | None = None
    is_eager: bool = True
    connection: Any = None
    session: Any = None


#: What ``apply_async`` (and the bulk forms) accept besides args, kwargs and connection.
APPLY_OPTIONS = frozenset({"countdown", "eta", "expires", "queue", "priority", "task_id", "headers",
                            "serializer", "exchange", "routing_key"})

_current_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar("sqlq_request", default=None)


def _as_datetime(value: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC, as Celery does with its default timezone."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class Task:
    """A registered task. Usually made by ``@app.task``, not instantiated by hand."""

    def __init__(self, app: App, fn: Callable[..., Any], name: str, *, bind: bool = False, queue: str | None = None,
                 priority: int | None = None, max_retries: int | None = 3, default_retry_delay: float = 180,
                 retry_backoff: bool | float = False, retry_backoff_max: float = 600, retry_jitter: bool = True,
                 autoretry_for: Sequence[type[BaseException]] = (), retry_kwargs: dict[str, Any] | None = None,
                 time_limit: float | None = None, soft_time_limit: float | None = None,
                 expires: float | dt.datetime | None = None, acks_late: bool | None = None,
                 ignore_result: bool = False, serializer: str | None = None, transactional: bool = False):
        self.app = app
        self.fn = fn
        self.name = name
        self.bind = bind
        self.queue = validate_queue(queue) if queue is not None else None
        self.priority = priority
        self.max_retries = max_retries
        self.default_retry_delay = default_retry_delay
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_jitter = retry_jitter
        self.autoretry_for = tuple(autoretry_for)
        self.retry_kwargs = dict(retry_kwargs or {})
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit
        self.expires = expires
        self.acks_late = acks_late
        self.ignore_result = ignore_result
        self.serializer = serializer
        self.transactional = transactional
        self.is_async = inspect.iscoroutinefunction(fn)
        if serializer is not None:
            serialization.content_type_for(serializer)  # fail at definition, not at first call
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__module__ = getattr(fn, "__module__", None)  # type: ignore[assignment]  # None when fn has none
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    # running here ------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in this process, as a plain call would (no job, no worker)."""
        if self.bind:
            return self.fn(self, *args, **kwargs)
        return self.fn(*args, **kwargs)

    run = __call__

    @property
    def request(self) -> Request:
        return _current_request.get() or Request(task=self.name)

    @property
    def connection(self) -> Any:
        """The SQLAlchemy connection whose transaction also records this job's outcome."""
        return self._transactional_attr("connection")

    @property
    def session(self) -> Any:
        """A SQLAlchemy session on that same transaction."""
        return self._transactional_attr("session")

    def _transactional_attr(self, attr: str) -> Any:
        if not self.transactional:
            raise TransactionalTaskError(
                f"task {self.name} uses self.{attr} but is not transactional; "
                f"declare it with @app.task(bind=True, transactional=True)"
            )
        value = getattr(self.request, attr)
        if value is None:
            raise TransactionalTaskError(
                f"self.{attr} is only available while a worker runs task {self.name}"
            )
        return value

    # sending -----------------------------------------------------------------------------------

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult | GroupResult:
        """Enqueue with default options; one round trip to PostgreSQL."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, *,
                    countdown: float | None = None, eta: dt.datetime | None = None,
                    expires: float | dt.datetime | None = None, queue: str | None = None,
                    priority: int | None = None, task_id: str | None = None, headers: dict[str, Any] | None = None,
                    serializer: str | None = None, connection: Any = None, **options: Any) -> AsyncResult | GroupResult:
        """Enqueue one job. With ``connection=`` it is written in the caller's transaction."""
        spec = self.build_job(args, kwargs, countdown=countdown, eta=eta, expires=expires, queue=queue,
                              priority=priority, task_id=task_id, headers=headers, serializer=serializer,
                              **options)
        return self.app.enqueue([spec], connection=connection)[0]

    def delay_many(self, calls: Iterable[Any], *, connection: Any = None, **options: Any) -> list[AsyncResult | GroupResult]:
        """Enqueue many calls in one statement. Each item is a tuple of positional arguments
        (anything else is taken as the single argument)."""
        return self.apply_many(((_as_args(c), {}) for c in calls), connection=connection, **options)

    def apply_many(self, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]], *, connection: Any = None,
                   **options: Any) -> list[AsyncResult | GroupResult]:
        """Enqueue many ``(args, kwargs)`` calls in one statement with the same options."""
        unknown = set(options) - APPLY_OPTIONS
        if unknown:
            raise ConfigurationError(f"unknown option(s) for {self.name}.apply_many: {', '.join(sorted(unknown))}")
        return self.app.enqueue_calls(self.name, calls, task=self, connection=connection,
                                      **self._task_defaults(options))

    async def adelay(self, *args: Any, **kwargs: Any) -> AsyncResult | GroupResult:
        return await self.aapply_async(args, kwargs)

    async def aapply_async(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, *,
                           connection: Any = None, **options: Any) -> AsyncResult | GroupResult:
        spec = self.build_job(args, kwargs, **options)
        return (await self.app.aenqueue([spec], connection=connection))[0]

    async def adelay_many(self, calls: Iterable[Any], *, connection: Any = None, **options: Any) -> list[AsyncResult | GroupResult]:
        specs = [self.build_job(_as_args(c), {}, **options) for c in calls]
        return await self.app.aenqueue(specs, connection=connection)

    def build_job(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any) -> JobSpec:
        """Encode a call into a ``JobSpec``; raises before anything is written.

        ``options`` are ``apply_async``'s: countdown, eta, expires, queue, priority, task_id, headers,
        serializer, exchange, routing_key."""
        if options and not APPLY_OPTIONS.issuperset(options):
            unknown = set(options) - APPLY_OPTIONS
            raise ConfigurationError(
                f"unknown option(s) for {self.name}.apply_async: {', '.join(sorted(unknown))}"
            )
        return self.app.build_job(self.name, args, kwargs, task=self, **self._task_defaults(options))

    def _task_defaults(self, options: dict[str, Any]) -> dict[str, Any]:
        """The call's options with this task's own defaults filled in where the call gives none."""
        merged = dict(options)
        if merged.get("expires") is None:
            merged["expires"] = self.expires
        if merged.get("priority") is None:
            merged["priority"] = self.priority
        merged["serializer"] = merged.get("serializer") or self.serializer
        merged["acks_late"] = self.acks_late
        return merged

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        return self.app.AsyncResult(task_id, task_name=self.name)

    # retrying ----------------------------------------------------------------------------------

    def retry(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, exc: BaseException | None = None,
              throw: bool = True, eta: dt.datetime | None = None, countdown: float | None = None,
              max_retries: Any = _MISSING, **options: Any) -> Retry:
        """Ask the worker to run this job again later; raises ``Retry`` (as Celery does).

        When the retries are used up, re-raises ``exc`` if given, else ``MaxRetriesExceededError``,
        so the job ends as FAILURE carrying the original exception.
        """
        request = self.request
        limit = self.max_retries if max_retries is _MISSING else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"task {self.name}[{request.id}] used up its {limit} retries; raise max_retries to retry more"
            )
        when: float | dt.datetime
        if eta is not None:
            when = _as_datetime(eta)  # a moment: the database places it, as apply_async(eta=) does
        elif countdown is not None:
            when = max(float(countdown), 0.0)
        else:
            when = max(float(self.default_retry_delay), 0.0)
        signal = Retry(exc=exc, when=when)
        if throw:
            raise signal
        return signal

    def backoff_delay(self, retries: int) -> float:
        """Delay before retry number ``retries + 1`` for ``autoretry_for``: exponential, capped,
        with full jitter so a crowd of failing jobs does not come back at the same instant."""
        if not self.retry_backoff:
            return float(self.retry_kwargs.get("countdown", self.default_retry_delay))
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        delay: float = min(float(self.retry_backoff_max), factor * (2 ** retries))
        if self.retry_jitter:
            delay = random.uniform(0, delay)
        return delay


def _as_args(call: Any) -> tuple[Any, ...]:
    return call if isinstance(call, tuple) else (call,)
