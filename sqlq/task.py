"""``Task``: the base class of every task, and what ``@app.task`` returns.

As in Celery, a task is an instance of a ``Task`` subclass: ``@app.task`` makes one subclass per
function (its ``run`` is the function) and registers an instance; a class-based task
(``class T(app.Task): def run(self, ...)``) is registered with ``app.register_task(T())``. Task
attributes are class attributes with Celery's defaults; options given to ``@app.task(...)`` become
class attributes of the function's own subclass, so they override the base's.

Calling the task object runs ``run`` here and now; ``delay``/``apply_async`` turn the call into a
job row (one round trip) and return an ``AsyncResult``. ``retry()`` asks the worker to run the job
again later. The hooks (``before_start``, ``on_success``, ``on_failure``, ``on_retry``,
``after_return``) have Celery's signatures; the worker calls only those a task's class overrides
(``overridden_hooks``), so a task without hooks pays nothing for them.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import importlib
import inspect
import random
import sys
import traceback as tb_module
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, cast

from typing_extensions import ParamSpec, TypeVar

from .config import naive_timezone
from .errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    MaxRetriesExceededError,
    Retry,
    SoftTimeLimitExceeded,
    SqlqError,
    TaskArgumentsError,
    TaskDefinitionError,
    TimeLimitExceeded,
    TransactionalTaskError,
)
from .store import JobSpec

if TYPE_CHECKING:
    from .app import App
    from .config import Settings
    from .result import AsyncResult, GroupResult

_MISSING = object()

#: A task's parameters and return type (``Task[P, R]``): what ``@app.task`` reads off the function,
#: so that checkers see ``add.delay(1, "x")`` as the error it is and ``AsyncResult[R].get()`` as an
#: ``R``. Both have defaults (any parameters, ``Any``), so a bare ``Task`` stays what it was.
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)


@dataclass(slots=True)
class Request:
    """What a running task knows about its own job (``self.request``), as Celery's ``Task.request``.

    ``id`` is the task id as the caller gave it (any string); ``timelimit`` is ``(hard, soft)`` as
    in Celery, the limits this run has; ``parent_id``/``root_id`` name the task that sent this job
    and the first of that line, when it was sent from inside a running task; ``children`` collects
    the results of the jobs this run sends with ``add_to_parent`` (the default)."""

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
    shadow: str | None = None
    timelimit: tuple[float | None, float | None] = (None, None)
    ignore_result: bool = False
    parent_id: str | None = None
    root_id: str | None = None
    children: list[Any] = field(default_factory=list)
    #: What the caller gave as ``argsrepr=``/``kwargsrepr=`` (Celery's way to keep secrets out of
    #: what is shown of a call); None when it gave none.
    argsrepr: str | None = None
    kwargsrepr: str | None = None

    @property
    def called_directly(self) -> bool:
        """True when no job is behind this call (the task object was called like a function)."""
        return self.id is None


#: The reserved key of a job's headers under which the per-call options a worker needs travel
#: (a task id that is not a UUID, time limits, ignore_result, shadow, argsrepr/kwargsrepr, parent
#: and root ids).
CALL_HEADER = "sqlq"

#: Options of apply_async that concern a broker connection (kombu's producer); sqlq has no broker, so
#: they are accepted for Celery code to run unchanged and have no effect (README, "Defining and
#: calling tasks"). Each, and why it has nothing to do here:
BROKER_OPTIONS = frozenset({
    "exchange_type",  # an exchange's type is declared once, in the database (task_queues), not per message
    "delivery_mode",  # persistent vs transient messages: every job is a row, always durable
    "mandatory",  # AMQP's return of unroutable messages: an unroutable publish raises Unroutable anyway
    "immediate",  # AMQP's "deliver now or return" (removed from RabbitMQ 3.0): a row waits for a worker
    "compression",  # message-body compression on the wire: PostgreSQL compresses large values (TOAST)
    "producer",  # a kombu Producer to publish with: sqlq writes on its own or the caller's connection
})

#: The keys ``retry_policy=`` accepts (Celery's publish retry policy).
RETRY_POLICY_KEYS = frozenset({"max_retries", "interval_start", "interval_step", "interval_max", "retry_errors"})

#: What ``apply_async`` (and the bulk forms) accept besides args, kwargs and connection.
APPLY_OPTIONS = frozenset({"countdown", "eta", "expires", "queue", "priority", "task_id", "headers",
                           "serializer", "exchange", "routing_key", "time_limit", "soft_time_limit",
                           "ignore_result", "retry", "retry_policy", "shadow", "add_to_parent",
                           "argsrepr", "kwargsrepr", "link", "link_error",
                           "unique_key", "unique_for", "on_conflict"}) | BROKER_OPTIONS

#: The hook methods, with Celery's signatures; the worker calls those a task's class overrides.
HOOKS = frozenset({"before_start", "on_success", "on_failure", "on_retry", "after_return"})

#: uuid5 namespace of the row ids of task ids that are not UUIDs (``task_uuid``). Fixed forever:
#: changing it would lose every job sent with such an id.
TASK_ID_NAMESPACE = uuid.UUID("0c6a6a3e-5b8f-5a52-9d0e-7a3c1f4b2e61")

_current_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar("sqlq_request", default=None)


def task_uuid(task_id: str) -> str:
    """The row id (a UUID) of the job whose task id is ``task_id``.

    Job ids are PostgreSQL ``uuid`` columns; a task id that is not a UUID (``'report-2024-01'``, as
    Celery allows) is stored under the uuid5 of that text in ``TASK_ID_NAMESPACE``, so the same text
    always finds the same row, and the text itself travels with the job. A UUID in any spelling
    (upper case, braces) is that UUID."""
    try:
        return str(uuid.UUID(task_id))
    except (ValueError, TypeError, AttributeError):
        if not isinstance(task_id, str) or not task_id:
            raise ConfigurationError(f"a task id must be a non-empty string, got {task_id!r}") from None
        return str(uuid.uuid5(TASK_ID_NAMESPACE, task_id))


def _as_datetime(value: dt.datetime, conf: Settings) -> dt.datetime:
    """A naive datetime is taken to be in ``naive_timezone(conf)``, as Celery reads it: UTC while
    ``enable_utc`` (the default), else the ``timezone`` setting."""
    return value if value.tzinfo is not None else value.replace(tzinfo=naive_timezone(conf))


class ExceptionInfo:
    """The ``einfo`` the failure hooks get, as Celery's ``ExceptionInfo``: the exception, its type
    and its traceback as text (what the result records)."""

    __slots__ = ("exception", "tb", "traceback", "type")

    def __init__(self, exception: BaseException, traceback: str | None = None):
        self.exception = exception
        self.type: type[BaseException] = type(exception)
        self.tb: TracebackType | None = exception.__traceback__
        self.traceback: str = traceback if traceback is not None else "".join(tb_module.format_exception(exception))

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"


def overridden_hooks(task: Task) -> frozenset[str]:
    """The hooks ``task`` overrides: its class's (computed once per class, when the class is made)
    and any set on the instance itself (``task_annotations``). The worker calls only these."""
    own = type(task)._overridden_hooks
    if HOOKS.isdisjoint(vars(task)):
        return own
    return own | (HOOKS & vars(task).keys())


class Task(Generic[P, R]):
    """The base class of tasks, as Celery's ``celery.Task``.

    Subclass it (or ``app.Task``, which is bound to the app) for a class-based task or a base class
    with hooks; ``@app.task(base=MyTask)`` makes a function's task a subclass of ``MyTask``. Every
    attribute below can be set on a subclass or given to ``@app.task(...)``; ``None`` means "the
    app's setting" where one is named."""

    #: The registered name; ``None`` until registered (then ``module.name``), as in Celery.
    name: str = None  # type: ignore[assignment]  # a registered task always has one
    #: ``@app.task(bind=True)``: ``run`` gets the task as ``self`` (class-based tasks always do).
    bind: bool = False
    #: Check at the call site that delay/apply_async's arguments fit ``run``'s signature.
    typing: bool = True
    max_retries: int | None = 3
    default_retry_delay: float = 180
    autoretry_for: tuple[type[BaseException], ...] = ()
    #: Exceptions ``autoretry_for`` would retry that fail the job at once instead (Celery's name).
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] = MappingProxyType({})
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    #: None: ``conf.task_acks_late``. True: a job whose worker was lost runs again.
    acks_late: bool | None = None
    #: With acks_late, False records a job whose worker was lost as FAILURE WorkerLostError (Celery's
    #: default); None or True re-queue it (sqlq's default, what acks_late does without it).
    reject_on_worker_lost: bool | None = None
    #: None: ``conf.task_ignore_result``.
    ignore_result: bool | None = None
    queue: str | None = None
    priority: int | None = None
    #: Seconds; None: ``conf.task_time_limit`` / ``conf.task_soft_time_limit``.
    time_limit: float | None = None
    soft_time_limit: float | None = None
    #: ``'10/s'``, ``'100/m'``, ``'1000/h'``; None: ``conf.task_default_rate_limit``.
    rate_limit: str | None = None
    #: At most this many jobs of the task running at once, cluster-wide (sqlq.concurrency_limits);
    #: with ``concurrency_key``, at most this many per key value. None: no limit.
    concurrency_limit: int | None = None
    #: ``fn(args, kwargs) -> str | int``: the key a call's job is counted under, computed at enqueue.
    concurrency_key: Callable[[tuple[Any, ...], dict[str, Any]], Any] | None = None
    #: Expected exceptions: still FAILURE, but logged at INFO without a traceback.
    throws: tuple[type[BaseException], ...] = ()
    #: None: ``conf.task_track_started`` (whether a running job reads STARTED or PENDING).
    track_started: bool | None = None
    serializer: str | None = None
    expires: float | dt.datetime | None = None
    #: The worker runs the task in a transaction that also records its outcome (``self.connection``).
    transactional: bool = False
    #: Store an eager call's outcome in the results table, so ``AsyncResult(id)`` anywhere reads it;
    #: None: ``conf.task_store_eager_result`` (Celery's option and setting).
    store_eager_result: bool | None = None
    #: The class whose hooks (``on_timeout``, ``on_failure``) the worker process that manages a job
    #: calls for it: a subclass of ``sqlq.worker.request.Request``, or its ``'module:Class'`` path
    #: (Celery's ``Task.Request``).
    Request: ClassVar[Any] = "sqlq.worker.request:Request"
    #: Unique jobs (README, "Unique jobs"): the parts of a call its key is made of (``('args',)``,
    #: ``('kwargs',)``, ``('args', 'kwargs')``, keyword argument names, or a callable
    #: ``(args, kwargs) -> str``); None: a call is keyed only by its own ``unique_key=``.
    unique_on: Any = None
    #: Seconds a key stays held from its job's enqueue, even after the job finished; None: while
    #: the job waits or runs.
    unique_for: float | None = None
    #: What a call whose key is held does: 'skip' (return the holder), 'replace', 'error'.
    on_conflict: str = "skip"
    #: Celery's: False keeps this task's jobs out of the events stream of workers that send task
    #: events (``sqlq worker -E``); True sends nothing by itself.
    send_events: bool = True
    #: What ``delay()``/``apply_async()`` raise when PostgreSQL cannot be reached (Celery's
    #: ``task.OperationalError``, there the broker connection's error), for ``except add.OperationalError``.
    OperationalError: ClassVar[type[SqlqError]] = DatabaseUnavailableError

    #: Whether ``run`` is a coroutine function; set per class.
    is_async: ClassVar[bool] = False
    #: The hooks this class overrides; set per class (``overridden_hooks``).
    _overridden_hooks: ClassVar[frozenset[str]] = frozenset()
    #: The app of ``app.Task`` subclasses and of registered tasks; else the current app.
    _app: App | None = None
    #: ``run``'s signature and the fast bounds of a positional-only call, made at the first checked call.
    _arguments: _Arguments | None = None
    #: ``@app.task(pydantic=True)``: calls send pydantic models as their JSON data (``sqlq.pydantic_args``).
    _dump_models: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.is_async = inspect.iscoroutinefunction(cls.run)
        cls._overridden_hooks = frozenset(h for h in HOOKS if getattr(cls, h) is not getattr(Task, h))

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def app(self) -> App:
        """The app this task is registered in (or whose ``app.Task`` it subclasses), else the
        current app, as Celery's ``Task.app``."""
        app = self._app
        if app is None:
            from .current import get_current_app

            return get_current_app()
        return app

    @app.setter
    def app(self, value: App) -> None:
        self._app = value

    # running here ------------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task in this process, as a plain call would (no job, no worker). The worker runs
        a job through this too, so a base class may wrap every run by overriding it."""
        value: R = self.run(*args, **kwargs)
        return value

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task's body: the decorated function, or a class-based task's own ``run``.
        ``register_task`` refuses a class that does not define it, so this is reached only by
        calling an unregistered class without one."""
        raise TaskDefinitionError(
            f"task class {type(self).__qualname__} defines no run() method; define run(self, ...) "
            f"with the task's body")

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

    # hooks (Celery's signatures; the worker calls only those a subclass overrides) --------------

    def before_start(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Called in the worker just before ``run``. An exception here fails the job, as it would
        in ``run`` (Celery runs it inside the task's own error handling)."""
        return None

    def on_success(self, retval: Any, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Called in the worker after ``run`` returned ``retval`` (the result is recorded anyway).
        An exception here is logged and does not change the job's outcome."""
        return None

    def on_failure(self, exc: BaseException, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                   einfo: ExceptionInfo) -> None:
        """Called in the worker when the job fails with ``exc`` (``einfo``: its traceback). An
        exception here is logged and does not change the job's outcome."""
        return None

    def on_retry(self, exc: BaseException, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                 einfo: ExceptionInfo) -> None:
        """Called in the worker when the job is to run again (``retry()`` or ``autoretry_for``);
        ``exc`` is the reason. An exception here is logged and the retry still happens."""
        return None

    def after_return(self, status: str, retval: Any, task_id: str, args: Sequence[Any],
                     kwargs: Mapping[str, Any], einfo: ExceptionInfo | None) -> None:
        """Called in the worker after the job ended, whatever the end: ``status`` is SUCCESS,
        FAILURE or RETRY, ``retval`` the return value or the exception. An exception here is logged
        and does not change the job's outcome."""
        return None

    # the arguments a call gives --------------------------------------------------------------

    def _check_arguments(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> None:
        """``TaskArgumentsError`` (a TypeError) when ``args``/``kwargs`` do not fit ``run``
        (``typing=True``, Celery's check).

        The signature is read once per task; a call is then checked by its argument count and
        keyword names, and only one that fails that (or a signature with ``*args``/``**kwargs``
        or positional-only parameters) is bound to the signature, which also gives the message."""
        checker = self._arguments
        if checker is None:
            checker = self._arguments = _arguments_of(self.run)
        signature, low, high, index, required = checker
        if args is None:
            given = 0
        elif type(args) is tuple or isinstance(args, tuple | list):
            given = len(args)
        else:
            return  # not arguments at all: the encoder refuses them, saying what they must be
        if not kwargs:
            if low <= given <= high:
                return
        elif not isinstance(kwargs, dict):
            return  # (as above)
        elif index is not None and given <= high and _names_fit(index, required, given, kwargs):
            return
        try:
            signature.bind(*(args or ()), **(kwargs or {}))
        except TypeError as exc:
            raise TaskArgumentsError(
                f"{self.name}{signature}: {exc} (typing=True checks a call against the task's signature "
                f"before it is sent; pass typing=False to the task to skip it)") from None

    def _checked_calls(self, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]]
                       ) -> Iterator[tuple[Sequence[Any], dict[str, Any]]]:
        for args, kwargs in calls:
            self._check_arguments(args, kwargs)
            yield args, kwargs

    # canvas and local runs (sqlq.canvas and sqlq.eager) -----------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A signature of this call (``sqlq.canvas.Signature``), as Celery's ``task.s()``."""
        return _canvas().Signature(self, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Any:
        """An immutable signature: a parent's result is not passed to it (Celery's ``task.si()``)."""
        return _canvas().Signature(self, args, kwargs, immutable=True, app=self.app)

    def signature(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
                  **options: Any) -> Any:
        """A signature with call options (Celery's ``task.signature(args, kwargs, **options)``)."""
        return _canvas().Signature(self, args, kwargs, options, app=self.app)

    subtask = signature

    def map(self, it: Iterable[Any]) -> Any:
        """Celery's ``task.map(it)``: a signature of one task (``celery.map``) calling this task on
        each item, returning the list of results."""
        return _canvas().xmap(self.s(), it, app=self.app)

    def starmap(self, it: Iterable[Any]) -> Any:
        """Celery's ``task.starmap(it)``: as ``map``, each item being a tuple of arguments."""
        return _canvas().xstarmap(self.s(), it, app=self.app)

    def chunks(self, it: Iterable[Any], n: int) -> Any:
        """Celery's ``task.chunks(it, n)``: the items split into tasks of ``n`` calls each."""
        return _canvas().chunks(self.s(), it, n, app=self.app)

    def apply(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        """Run the task here, now, as a worker would (arguments round-trip through the serializer,
        hooks and signals run), and return an ``EagerResult`` (Celery's ``Task.apply``)."""
        if self._dump_models:
            args, kwargs = _dump_models(args, kwargs)
        return _eager().apply(self, args, kwargs, **options)

    # sending -----------------------------------------------------------------------------------

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R] | GroupResult:
        """Enqueue with default options; one round trip to PostgreSQL."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, *,
                    countdown: float | None = None, eta: dt.datetime | None = None,
                    expires: float | dt.datetime | None = None, queue: str | None = None,
                    priority: int | None = None, task_id: str | None = None, headers: dict[str, Any] | None = None,
                    serializer: str | None = None, connection: Any = None,
                    **options: Any) -> AsyncResult[R] | GroupResult:
        """Enqueue one job. With ``connection=`` it is written in the caller's transaction.

        With ``conf.task_always_eager`` the task runs here instead (``sqlq.eager.apply``) and an
        ``EagerResult`` comes back, as in Celery."""
        app = self._app or self.app  # (the property only for a task no app registered)
        if options.get("link") or options.get("link_error"):  # callbacks: the database runs them
            return cast("AsyncResult", self.signature(args, kwargs, countdown=countdown, eta=eta, expires=expires,
                                                      queue=queue, priority=priority, task_id=task_id,
                                                      headers=headers, serializer=serializer, **options)
                        .apply_async(connection=connection))
        options.pop("link", None)
        options.pop("link_error", None)
        if app.conf.task_always_eager:
            if self._dump_models:
                args, kwargs = _dump_models(args, kwargs)
            if self.typing:  # checked first, as Celery does, so an eager test catches a bad call
                self._check_arguments(args, kwargs)
            if connection is not None:  # (eager.apply says what it makes of a caller's connection)
                options["connection"] = connection
            # an EagerResult stands in for the AsyncResult, as in Celery
            return cast("AsyncResult", _eager().apply(
                self, args, kwargs, task_id=task_id, countdown=countdown, eta=eta, expires=expires, queue=queue,
                priority=priority, headers=headers, serializer=serializer, **options))
        spec = self.build_job(args, kwargs, countdown=countdown, eta=eta, expires=expires, queue=queue,
                              priority=priority, task_id=task_id, headers=headers, serializer=serializer,
                              **options)
        result = app.enqueue([spec], connection=connection)[0]
        if task_id is not None and result.id != task_id and result.id == spec.id and isinstance(task_id, str):
            result.id = task_id  # a task id that is not the row's UUID: the handle shows the caller's
        parent = _current_request.get()
        if parent is not None and parent.id is not None and options.get("add_to_parent", True):
            parent.children.append(result)  # Celery's add_to_parent: the running task's request.children
        return result

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """``delay()`` once the current Django transaction commits, never if it rolls back (Celery
        5.4's ``delay_on_commit``, ``transaction.on_commit``); returns None, as there is no job yet.
        ``apply_async(..., connection=django.db.connection)`` writes the job in the transaction
        itself instead, with the result handle at once."""
        _on_commit(lambda: self.apply_async(args, kwargs))

    def apply_async_on_commit(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
                              **options: Any) -> None:
        """``apply_async()`` once the current Django transaction commits (Celery 5.4's); returns None.
        The options are checked now, so a bad one raises here, not after the commit."""
        self._check_options({k: v for k, v in options.items() if k != "connection"}, "apply_async_on_commit")
        _on_commit(lambda: self.apply_async(args, kwargs, **options))

    def delay_many(self, calls: Iterable[Any], *, connection: Any = None, **options: Any) -> list[AsyncResult | GroupResult]:
        """Enqueue many calls in one statement. Each item is a tuple of positional arguments
        (anything else is taken as the single argument)."""
        return self.apply_many(((_as_args(c), {}) for c in calls), connection=connection, **options)

    def apply_many(self, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]], *, connection: Any = None,
                   **options: Any) -> list[AsyncResult | GroupResult]:
        """Enqueue many ``(args, kwargs)`` calls in one statement with the same options."""
        self._check_options(options, "apply_many")
        if self._dump_models:
            calls = [cast("tuple[Sequence[Any], dict[str, Any]]", _dump_models(*call)) for call in calls]
        if self.typing:
            calls = list(self._checked_calls(calls))
        return self.app.enqueue_calls(self.name, calls, task=self, connection=connection,
                                      **self._task_defaults(options))

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R] | GroupResult:
        return await self.aapply_async(args, kwargs)

    async def aapply_async(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, *,
                           connection: Any = None, **options: Any) -> AsyncResult[R] | GroupResult:
        spec = self.build_job(args, kwargs, **options)
        result = (await self.app.aenqueue([spec], connection=connection))[0]
        task_id = options.get("task_id")
        if task_id is not None and result.id != task_id and result.id == spec.id and isinstance(task_id, str):
            result.id = task_id
        return result

    async def adelay_many(self, calls: Iterable[Any], *, connection: Any = None, **options: Any) -> list[AsyncResult | GroupResult]:
        specs = [self.build_job(_as_args(c), {}, **options) for c in calls]
        return await self.app.aenqueue(specs, connection=connection)

    def build_job(self, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any) -> JobSpec:
        """Encode a call into a ``JobSpec``; raises before anything is written.

        ``options`` are ``apply_async``'s (``APPLY_OPTIONS``)."""
        if options:
            self._check_options(options, "apply_async")
        if self._dump_models:
            args, kwargs = _dump_models(args, kwargs)
        if self.typing:
            self._check_arguments(args, kwargs)
        return (self._app or self.app).build_job(self.name, args, kwargs, task=self, **self._task_defaults(options))

    def _check_options(self, options: Mapping[str, Any], method: str) -> None:
        if APPLY_OPTIONS.issuperset(options):
            return
        raise ConfigurationError(unknown_options_message(f"{self.name}.{method}", set(options) - APPLY_OPTIONS))

    def _task_defaults(self, options: dict[str, Any]) -> dict[str, Any]:
        """The call's options with this task's own defaults filled in where the call gives none."""
        merged = dict(options)
        if merged.get("expires") is None:
            merged["expires"] = self.expires
        if merged.get("priority") is None:
            merged["priority"] = self.priority
        merged["serializer"] = merged.get("serializer") or self.serializer
        merged["acks_late"] = self.acks_late
        if self.reject_on_worker_lost is not None:
            merged["reject_on_worker_lost"] = self.reject_on_worker_lost
        return merged

    def update_state(self, task_id: str | None = None, state: str | None = None, meta: Any = None,
                     **kwargs: Any) -> None:
        """Report a state of a running job (Celery's ``update_state``), by default this task's own:
        ``self.update_state(state='PROGRESS', meta={'current': i, 'total': n})`` in a bound task.

        ``AsyncResult.state`` then reads ``state`` and ``.info``/``.result`` the meta, until the
        worker records the outcome, which replaces it. One UPDATE of the job's own row (the claim
        and finish statements are untouched). Refused with a ConfigurationError when the job is not
        running (waiting, finished, unknown) or ``state`` is an outcome (SUCCESS, FAILURE, REVOKED,
        EXPIRED: the worker records those) or PENDING/RETRY; a meta that is not JSON-serializable
        is a SerializationError. In eager mode the running call's result changes, no database is
        used (``sqlq.eager.current_result``). ``kwargs`` (Celery passes them to its backend) are
        refused: there is nothing here they would mean."""
        from . import eager, serialization
        from .result import checked_progress

        if kwargs:
            raise ConfigurationError(f"update_state takes task_id, state and meta, not {', '.join(sorted(kwargs))}")
        request = self.request
        task_id = task_id or request.id
        if task_id is None:
            raise ConfigurationError(f"{self.name}.update_state needs a task id: call it in a running task "
                                     f"(@app.task(bind=True)) or pass task_id=")
        meta_json = checked_progress(task_id, state, meta)
        assert state is not None  # (checked_progress refused anything else)
        if request.is_eager and eager.update_state(task_id, state, serialization.json_loads(meta_json)
                                                    if meta_json is not None else None):
            return
        app = self._app or self.app
        with app.connection() as conn:
            written = app.store.set_progress(conn, task_uuid(task_id), state, meta_json)
        if not written:
            raise ConfigurationError(
                f"update_state({state!r}) for task {task_id}: the job is not running (it is waiting, has "
                f"finished, or no job has that id); only a running job's state can be reported")

    def AsyncResult(self, task_id: str) -> AsyncResult[R]:  # noqa: N802 - Celery's name
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
            when = _as_datetime(eta, self.app.conf)  # a moment: the database places it, as apply_async(eta=) does
        elif countdown is not None:
            when = max(float(countdown), 0.0)
        else:
            when = max(float(self.default_retry_delay), 0.0)
        signal = Retry(exc=exc, when=when)
        if throw:
            raise signal
        return signal

    def autoretries(self, exc: BaseException, retries: int) -> bool:
        """Whether ``autoretry_for`` has the job run again after ``exc``, its ``retries``-th retry so
        far: a listed exception not in ``dont_autoretry_for``, with retries left. A time limit never
        is: the limit is the task's own verdict on the run (the worker and eager mode both ask this)."""
        if not self.autoretry_for or not isinstance(exc, self.autoretry_for) or isinstance(
                exc, SoftTimeLimitExceeded | TimeLimitExceeded):
            return False
        if self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for):
            return False
        limit = self.retry_kwargs.get("max_retries", self.max_retries)
        return limit is None or retries < limit

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


def _on_commit(send: Callable[[], Any]) -> None:
    """Run ``send`` when the Django transaction open now commits (at once outside ``atomic()``)."""
    try:
        from django.db import transaction
    except ImportError:
        raise ConfigurationError("delay_on_commit/apply_async_on_commit wait for a Django transaction "
                                 "(django.db.transaction.on_commit), and Django is not installed; call "
                                 "delay()/apply_async(..., connection=...) in your transaction instead") from None
    transaction.on_commit(send)


def _dump_models(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> tuple[Any, Any]:
    from .pydantic_args import dump_call

    return dump_call(args, kwargs)


def _eager() -> Any:
    """``sqlq.eager``, imported on first use (running a task here is rare in a producer)."""
    return importlib.import_module("sqlq.eager")


def _canvas() -> Any:
    """``sqlq.canvas``, imported on first use (then read from ``sys.modules``: ``task.s()`` is
    called once per member of a group)."""
    module = sys.modules.get("sqlq.canvas")
    return module if module is not None else importlib.import_module("sqlq.canvas")


#: What ``Task._check_arguments`` knows of ``run``: its signature, the fewest and most positional
#: arguments a call without keywords may give, and, for a signature of named parameters only (no
#: ``*args``, ``**kwargs`` or positional-only ones), each name's position and the required ones.
_Arguments = tuple[inspect.Signature, int, int, dict[str, int] | None, tuple[tuple[int, str], ...]]


def _names_fit(index: dict[str, int], required: tuple[tuple[int, str], ...], given: int,
               kwargs: Mapping[str, Any]) -> bool:
    """Whether ``given`` positional arguments and ``kwargs`` fill a signature of named parameters:
    each keyword names a parameter not given by position, and every required one is given."""
    for key in kwargs:
        if index.get(key, -1) < given:
            return False
    for position, name in required:
        if position >= given and name not in kwargs:
            return False
    return True


def _arguments_of(run: Callable[..., Any]) -> _Arguments:
    signature = inspect.signature(run)
    low = high = 0
    index: dict[str, int] | None = {}
    required: list[tuple[int, str]] = []
    keyword_only = 1 << 62  # (a position no call reaches: a keyword-only name is always given by name)
    for parameter in signature.parameters.values():
        kind = parameter.kind
        if kind is parameter.VAR_POSITIONAL or kind is parameter.VAR_KEYWORD or kind is parameter.POSITIONAL_ONLY:
            index = None
        if kind is parameter.VAR_POSITIONAL:
            high = 1 << 62
        elif kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            if index is not None:
                index[parameter.name] = high
            if parameter.default is parameter.empty:
                low += 1
                required.append((high, parameter.name))
            high += 1
        elif kind is parameter.KEYWORD_ONLY:
            if index is not None:
                index[parameter.name] = keyword_only
            if parameter.default is parameter.empty:
                required.append((keyword_only, parameter.name))
                low = 1 << 62  # a call without keywords never fits
    return signature, low, high, index, tuple(required)


def unknown_options_message(where: str, unknown: Iterable[str]) -> str:
    """The error for options ``apply_async`` (or send_task, apply_many) does not know."""
    names = sorted(unknown)
    canvas = [n for n in names if n in ("chain", "chord")]
    hint = (f"; {', '.join(canvas)} {'is not an option' if len(canvas) == 1 else 'are not options'} here: build "
            f"the workflow with sqlq.chain / sqlq.chord and send it" if canvas else "")
    return (f"unknown option(s) for {where}: {', '.join(names)}{hint}; known options: "
            f"{', '.join(sorted(APPLY_OPTIONS))}")
