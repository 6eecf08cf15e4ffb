"""``App``: settings, the task registry, and the methods an application is used through.

What those methods do lives in modules of its own, which App delegates to: its connections
(sqlq/connections.py), the way jobs get into the table (sqlq/enqueue.py), migrations
(sqlq/migrate.py), routing declarations (sqlq/routing/declarations.py); finding an app for ``-A`` is
sqlq/loading.py.

There is no module-level app: a process may hold several (different databases or schemas), and
tests build a fresh one each.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Literal, overload

import psycopg

from . import annotations as _annotations
from . import enqueue as _enqueue
from . import pydantic_args as _pydantic_args
from . import serialization, unique
from .concurrency_limits import check_key_function, parse_limit
from .config import Settings, celery_url
from .connections import Connections
from .current import app_created, set_current_app
from .errors import (
    ConfigurationError,
    NotRegistered,
    SchemaNotMigratedError,
    SqlqCompatibilityWarning,
    TaskDefinitionError,
)
from .loading import import_object
from .migrate import HEAD_REVISION
from .names import validate_queue, validate_task_name
from .rate_limits import parse_rate
from .result import AsyncResult
from .signals import Signal
from .store import Store
from .task import APPLY_OPTIONS, Task
from .task import P as _P  # (the parameters and return type of typed tasks)
from .task import R as _R
from .task import Task as _Task  # for annotations inside App, where the name Task is the property

if TYPE_CHECKING:
    # imported where the engine is made: a worker or producer that never needs SQLAlchemy
    # does not pay ~0.1-0.2 s of start-up for it
    from sqlalchemy import Engine

    from .control import Control
    from .db import AsyncConnectionPool
    from .events import Events
    from .notify import ResultWaiter

    # for annotations inside App, where the name AsyncResult is App's method
    from .result import AsyncResult as _AsyncResult
    from .result import GroupResult

#: What @app.task(...) accepts besides name= and base=: Task's attributes (a custom base class may add
#: its own: any attribute of the base is accepted).
_TASK_OPTIONS = frozenset({
    "bind", "typing", "max_retries", "default_retry_delay", "autoretry_for", "dont_autoretry_for", "retry_kwargs",
    "retry_backoff",
    "retry_backoff_max", "retry_jitter", "acks_late", "reject_on_worker_lost", "ignore_result", "queue",
    "priority", "time_limit", "soft_time_limit", "rate_limit", "concurrency_limit", "concurrency_key", "throws",
    "track_started", "serializer", "expires", "transactional", "Request", "store_eager_result", "unique_on",
    "unique_for", "on_conflict", "send_events"})
#: Celery's task options that have no meaning here: accepted with one warning each saying why.
_CELERY_TASK_NO_EFFECT = {
    "compression": "jobs are rows, not broker messages; PostgreSQL compresses large values itself (TOAST)",
    "backend": "results are rows in the same database as the jobs",
    "store_errors_even_if_ignored": "sqlq always records a failure, ignore_result or not",
    "trail": "a running task's request.children always collects what it sends",
    "resultrepr_maxsize": "sqlq's log lines never show return values",
    "abstract": "a base class is any subclass of app.Task; it is never registered unless you register it",
}
#: Celery's task options sqlq does not support: an error saying so and what to do instead.
_CELERY_TASK_UNSUPPORTED = {
    "Strategy": "a Strategy is Celery's consumer-side handler of kombu messages, and sqlq has no messages to "
                "handle: the worker's claim is SQL; route, rate-limit or prioritise the task instead, or use "
                "Request= for per-job hooks in the worker",
}
#: Attributes of a task that are not options: its methods and what the app sets.
_NOT_OPTIONS = frozenset({"app", "request", "connection", "session", "run", "is_async"})


def _base_attribute(base: type, key: str) -> bool:
    """Whether ``key`` is a data attribute of a custom base class, which @app.task may then set (its
    methods, properties and private names are not options)."""
    if key.startswith("_") or key in _NOT_OPTIONS or not hasattr(base, key):
        return False
    value = inspect.getattr_static(base, key)
    return not (callable(value) or isinstance(value, property | staticmethod | classmethod))


def _task_option_values(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """@app.task's options as class attributes, in the types the worker reads (tuples, a dict)."""
    values = dict(options)
    for key in ("autoretry_for", "dont_autoretry_for", "throws"):
        if key in values:
            given = values[key]
            values[key] = tuple(given) if isinstance(given, list | tuple | set | frozenset) else (given,)
            if not all(isinstance(c, type) and issubclass(c, BaseException) for c in values[key]):
                raise TaskDefinitionError(f"{key}= of task {name!r} must be exception classes, got {given!r}")
    if "retry_kwargs" in values:
        values["retry_kwargs"] = dict(values["retry_kwargs"] or {})
    if "send_events" in values and not isinstance(values["send_events"], bool):
        raise TaskDefinitionError(f"send_events= of task {name!r} must be True or False (whether workers with "
                                  f"task events on write this task's events), got {values['send_events']!r}")
    if callable(values.get("unique_on")):
        values["unique_on"] = staticmethod(values["unique_on"])  # (a class attribute: not a method)
    elif isinstance(values.get("unique_on"), list):
        values["unique_on"] = tuple(values["unique_on"])
    return values


def _check_one_limit(task: Task) -> None:
    """A task is claimed either by its rate limit's statement or by its concurrency limit's, which
    cannot enforce each other's limit: both on one task are refused rather than one of them ignored."""
    if task.rate_limit and parse_limit(task.concurrency_limit, f"concurrency_limit of task {task.name!r}"):
        raise ConfigurationError(
            f"task {task.name!r} has both rate_limit={task.rate_limit!r} and "
            f"concurrency_limit={task.concurrency_limit!r}; sqlq enforces one of them per task: keep one")


def _check_unique(task: Task) -> None:
    """A task's unique options, checked at definition (a bad one fails here, not at the first call)."""
    unique_on = task.unique_on
    if inspect.ismethod(unique_on) and unique_on.__self__ is task:  # a plain function on a Task subclass
        task.unique_on = unique_on.__func__
    try:
        unique.check_unique_on(task.name, task.unique_on)
        unique.check_options(None, task.unique_for, task.on_conflict)
    except ConfigurationError as exc:
        raise TaskDefinitionError(f"task {task.name!r}: {exc}") from None


def _task_class(task_cls: type[Task] | str | None) -> type[Task]:
    """``task_cls=`` as a class: sqlq's Task when None; a dotted path (``'proj.base:Base'`` or
    ``'proj.base.Base'``) is imported. It must be a subclass of ``sqlq.Task``."""
    if task_cls is None:
        return Task
    found: object = task_cls
    if isinstance(task_cls, str):
        try:
            found = import_object(task_cls)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(
                f"task_cls={task_cls!r} cannot be imported ({exc}); give 'module:Class' or 'module.Class'"
            ) from None
    if not (isinstance(found, type) and issubclass(found, Task)):
        raise ConfigurationError(f"task_cls={task_cls!r} is not a subclass of sqlq.Task (found {found!r})")
    return found


class TaskRegistry(dict[str, Task]):
    """name → Task, with an error that tells the user how to get a task registered. The built-in
    tasks of workflows (``celery.map``, ``celery.starmap``, ``celery.chunks``, ``sqlq.errback``:
    ``sqlq.workflows``) are registered at their first lookup, so an app that never uses them lists
    only its own tasks."""

    def __init__(self, app: App | None = None):
        super().__init__()
        self._app = app

    def get(self, name: str, default: Task | None = None) -> Task | None:  # type: ignore[override]
        found = super().get(name)
        if found is None and self._app is not None and name in _BUILTIN_TASKS:
            return self[name]
        return default if found is None else found

    def __missing__(self, name: str) -> Task:
        if self._app is not None and name in _BUILTIN_TASKS:
            from .workflows import builtin

            made = builtin(self._app, name)
            if made is not None:
                return made
        raise NotRegistered(
            f"task {name!r} is not registered in this app; import the module that defines it "
            f"(sqlq -A yourmodule, or app.autodiscover_tasks([...]))"
        )


#: The built-in task names (sqlq.workflows.BUILTIN_TASKS, kept here so a lookup imports nothing).
_BUILTIN_TASKS = frozenset({"celery.map", "celery.starmap", "celery.chunks", "sqlq.errback"})

#: Celery's constructor arguments that configure parts sqlq does not have (its loader, AMQP,
#: events, logging and control classes, fixups): accepted with one warning each.
_CELERY_ONLY_ARGUMENTS = {
    "loader": "sqlq has no loader classes: settings come from App(...), config_from_object and SQLQ_* variables",
    "amqp": "sqlq sends through PostgreSQL, with no AMQP class",
    "events": "sqlq's events are rows of its events table: app.events (sqlq.events) reads them, with no "
              "events class to replace",
    "log": "sqlq configures the 'sqlq' logger only (sqlq worker --loglevel)",
    "control": "sqlq has no broadcast control: workers are rows (sqlq inspect workers)",
    "tasks": "sqlq makes its own task registry (app.tasks)",
    "fixups": "sqlq has no fixups: in a Django project app.autodiscover_tasks() sets Django up and imports "
              "the installed apps' tasks, and 'sqlq.contrib.django' in INSTALLED_APPS does the rest",
    "strict_typing": "sqlq does not check call arguments against the signature when sending "
                     "(the worker's call raises TypeError for bad arguments)",
}


class App:
    """A sqlq application: ``App('proj', database_url=...)``, or with Celery's constructor,
    ``Celery('proj', broker='postgresql://...', include=['proj.tasks'])`` (``sqlq.Celery`` is this
    class)."""

    def __init__(self, main: str | None = None, database_url: str | None = None, *, broker: str | None = None,
                 backend: str | None = None, include: Sequence[str] | None = None, config_source: Any = None,
                 set_as_current: bool = True, task_cls: type[Task] | str | None = None,
                 namespace: str | None = None, autofinalize: bool = True, changes: dict[str, Any] | None = None,
                 **settings: Any):
        self.main = main
        #: Where ``config_from_object`` reads settings with this prefix by default (Celery's namespace).
        self.namespace = namespace
        #: The base class of this app's tasks (``app.Task``): a class, or its dotted path.
        self.task_cls = task_cls
        self._task_base: type[Task] | None = None
        #: Whether a worker, a beat or ``-A`` may finalize the app on their own (Celery's
        #: autofinalize); when False they require ``app.finalize()`` to have been called.
        self.autofinalize = autofinalize
        self.finalized = False
        self._finalize_lock = threading.RLock()
        #: task_annotations prepared once: (the setting's value it was prepared from, the result).
        self._annotations: tuple[Any, list[_annotations.Annotation]] | None = None
        # Celery's app signals, per app and sent with sender=app (see finalize()).
        self.on_configure = Signal("on_configure")
        self.on_after_configure = Signal("on_after_configure")
        self.on_after_finalize = Signal("on_after_finalize")
        for argument in [a for a in settings if a in _CELERY_ONLY_ARGUMENTS]:
            warnings.warn(f"Celery's argument {argument}= has no effect in sqlq: {_CELERY_ONLY_ARGUMENTS[argument]}",
                          SqlqCompatibilityWarning, stacklevel=2)
            del settings[argument]
        self.conf = Settings()
        if config_source is not None:  # first, so that what the constructor says wins, as in Celery
            self.conf.from_object(config_source, namespace)
        self.conf.update(changes or {}, **settings)
        if broker is not None:
            celery_url(broker, "broker")  # (not PostgreSQL: an error that names broker=)
            self.conf.update(broker_url=broker)
        if backend is not None:
            self.conf.update(result_backend=backend)  # must name the broker's database; else warns
        if database_url is not None:
            self.conf.database_url = database_url
        if include is not None:
            self.conf.include = (*self.conf.include, *([include] if isinstance(include, str) else include))
        self.tasks: TaskRegistry = TaskRegistry(self)
        self._connections = Connections(self.conf)
        self._store: Store | None = None
        if set_as_current:
            set_current_app(self)
        app_created(self)

    def __repr__(self) -> str:
        return f"<sqlq.App {self.main or '__main__'}>"

    def set_current(self) -> None:
        """Make this the app that app-less entry points (``shared_task``, ``AsyncResult(id)``) use."""
        set_current_app(self)

    # finalizing --------------------------------------------------------------------------------

    def finalize(self, auto: bool = False) -> None:
        """Make the app ready to run tasks, once (later calls return at once): import the modules
        of ``include`` and ``imports`` (their tasks register), apply ``task_annotations`` to every
        task, then send ``on_configure``, ``on_after_configure`` (``source=app.conf``) and
        ``on_after_finalize``, each with ``sender=app``, as Celery does.

        ``auto``: the caller is a worker, a beat or ``-A`` finalizing on its own, which an app made
        with ``autofinalize=False`` refuses (Celery's contract: such an app is finalized by its owner)."""
        if self.finalized:
            return
        if auto and not self.autofinalize:
            raise ConfigurationError(
                f"{self!r} was made with autofinalize=False, so it must be finalized by its owner: "
                f"call app.finalize() before starting a worker or beat with it"
            )
        with self._finalize_lock:
            if self.finalized:
                return
            self.finalized = True  # (set first: a receiver that calls finalize() must not loop)
            self.on_configure.send(sender=self)
            self.import_modules()
            self._discover_pending()
            for task in list(self.tasks.values()):
                self.annotate_task(task)
            self.on_after_configure.send(sender=self, source=self.conf)
            self.on_after_finalize.send(sender=self)

    def import_modules(self) -> list[str]:
        """Import the modules named by ``include`` and ``imports`` (Celery's two names for it),
        so that the tasks they define are registered. A module that does not exist is an error
        that names the setting; an error inside a module that exists is raised as it is."""
        imported = []
        for setting in ("include", "imports"):
            for module_name in getattr(self.conf, setting):
                try:
                    importlib.import_module(module_name)
                except ModuleNotFoundError as exc:
                    if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                        raise ConfigurationError(
                            f"cannot import module {module_name!r} listed in {setting}: no module named "
                            f"{exc.name!r}; fix the name or put its directory on sys.path"
                        ) from None
                    raise
                imported.append(module_name)
        return imported

    def annotate_task(self, task: Task) -> None:
        """Apply ``task_annotations`` to ``task`` (a task registered after ``finalize()`` gets them
        when it is registered)."""
        setting = self.conf.task_annotations
        if self._annotations is None or self._annotations[0] is not setting:  # (changed since)
            self._annotations = (setting, _annotations.prepare(setting))
        if self._annotations[1]:
            _annotations.apply(self._annotations[1], task)
            if task.rate_limit:  # an annotated rate is checked where it is given, as a task's own
                parse_rate(task.rate_limit, f"rate_limit of task {task.name!r} (task_annotations)")
            _check_one_limit(task)

    # running the command line in this process --------------------------------------------------

    def start(self, argv: Sequence[str] | None = None) -> int:
        """Run the ``sqlq`` command line for this app in this process, as Celery's ``app.start()``:
        ``argv`` are the arguments after the program name (default: ``sys.argv[1:]``), e.g.
        ``['worker', '--loglevel=INFO']``; no ``-A`` is needed. Returns the exit status."""
        from .cli import main as cli_main

        args = list(sys.argv[1:] if argv is None else argv)
        try:
            cli_main.main(args=args, prog_name=self.main or "sqlq", obj=self, standalone_mode=True)
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        return 0

    def worker_main(self, argv: Sequence[str] | None = None) -> int:
        """Run a worker for this app in this process, as Celery's ``app.worker_main(argv)``:
        ``argv`` are the command's arguments, with or without the word ``worker`` first
        (``['worker', '--loglevel=INFO', '-c', '4']``; default: ``sys.argv[1:]``)."""
        args = list(sys.argv[1:] if argv is None else argv)
        if not args or args[0] != "worker":
            args.insert(0, "worker")
        return self.start(args)

    # configuration -----------------------------------------------------------------------------

    def config_from_object(self, obj: Any, namespace: str | None = None, *, silent: bool = False,
                           force: bool = False) -> None:
        """Load settings from a module, class, mapping, or dotted path (``'proj.settings'``);
        ``namespace='CELERY'`` reads only ``CELERY_*`` names (Django's style; the app's
        ``namespace=`` is the default). ``silent``: a module that cannot be imported is skipped, as
        Celery's ``silent=True``. ``force`` is accepted for Celery's signature: settings are always
        applied at once here."""
        if silent and isinstance(obj, str):
            try:
                importlib.import_module(obj.partition(":")[0])
            except ImportError:
                return
        self.conf.from_object(obj, namespace if namespace is not None else self.namespace)

    def set_database_url(self, url: str | None) -> None:
        """A URL given on the command line: beats every other source."""
        self._connections.set_url(url)

    @property
    def database_url(self) -> str:
        """The URL by precedence: CLI, SQLQ_DATABASE_URL, DATABASE_URL, the app's setting, embedded."""
        return self._connections.url

    @property
    def listen_database_url(self) -> str:
        """Where LISTEN and the workers' liveness sessions connect: the setting
        ``listen_database_url``, else ``database_url``."""
        return self._connections.listen_url

    @property
    def pooled(self) -> bool:
        """Whether ``database_url`` is taken for a transaction pooler (``listen_database_url`` set)."""
        return self._connections.pooled

    def direct_connection(self) -> psycopg.Connection:
        """A new connection to ``listen_database_url`` that keeps session state; the caller closes it."""
        return self._connections.connect_direct()

    @property
    def store(self) -> Store:
        schema = self.conf.schema
        if self._store is None or self._store.schema != schema:
            self._store = Store(schema)
        return self._store

    @property
    def control(self) -> Control:
        """Celery's ``app.control``: inspect and control the workers, through PostgreSQL
        (``sqlq.control``)."""
        from .control import Control

        return Control(self)

    @property
    def events(self) -> Events:
        """Celery's ``app.events``: receivers of the events stream and ``State`` (``sqlq.events``)."""
        from .events import Events

        return Events(self)

    @property
    def engine(self) -> Engine:
        """SQLAlchemy engine for migrations, transactional tasks and ad-hoc SQL."""
        return self._connections.engine

    def connection(self) -> contextlib.AbstractContextManager[psycopg.Connection]:
        """A pooled autocommit psycopg connection (the hot path's way in)."""
        return self._connections.connection()

    def _async_pool(self) -> AsyncConnectionPool:
        return self._connections.async_pool()

    def result_waiter(self) -> ResultWaiter:
        return self._connections.result_waiter(self.store.listen_results)

    def close(self) -> None:
        """Close every connection this app opened, and forget what it read from the environment
        (the database URL, the ``SQLQ_*`` settings): its next use reads them again."""
        self._connections.close()
        self.conf.reload_environment()

    # migrations --------------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        from . import migrate

        migrate.upgrade(self.engine, self.conf.schema, revision)

    def require_migrated(self) -> None:
        """Fail early, with the fix in the message, when the schema is missing or behind.

        One query on sqlq's version table: cheap enough for every worker start."""
        with self.connection() as conn:
            current = self.store.schema_revision(conn)
        head = HEAD_REVISION
        if current != head:
            raise SchemaNotMigratedError(
                f"the sqlq schema {self.conf.schema!r} is at revision {current or 'none'} but this sqlq "
                f"needs {head}; run `sqlq migrate` (or app.migrate()) first"
            )

    def migration_status(self) -> tuple[str | None, str]:
        """(current revision, head revision)."""
        from . import migrate

        return migrate.current_revision(self.engine, self.conf.schema), migrate.head_revision()

    def apply_routes(self) -> tuple[int, int]:
        """Declare ``conf.task_queues`` (exchanges, bindings) in the database; idempotent and
        additive, so every worker runs it at start. Returns (exchanges, new bindings)."""
        if not self.conf.task_queues:  # (nothing to declare: spare a worker's start importing routing)
            return 0, 0
        from .routing import declarations

        return declarations.apply_routes(self)

    # tasks -------------------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[_P, _R], /) -> _Task[_P, _R]: ...

    @overload
    def task(self, *, bind: Literal[True], **options: Any) -> Callable[[Callable[Concatenate[Any, _P], _R]],
                                                                       _Task[_P, _R]]: ...

    @overload
    def task(self, *, bind: Literal[False] = False, **options: Any) -> Callable[[Callable[_P, _R]], _Task[_P, _R]]: ...

    def task(self, *args: Any, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., bind=True, base=...)``.

        Typed as the function: ``Task[P, R]`` for a function of parameters ``P`` returning ``R``
        (without the task itself, with ``bind=True``), so a checker sees ``add.delay(1, "x")``
        as the error it is and ``add.delay(1, 2).get()`` as ``add``'s return type.

        As in Celery, the task is an instance of a new subclass of ``base`` (default ``app.Task``)
        whose ``run`` is the function; the other options become class attributes of that subclass."""
        if len(args) == 1 and callable(args[0]) and not options:
            return self._register(args[0], {})
        if args:
            raise TaskDefinitionError("use @app.task or @app.task(**options); positional options are not accepted")

        def decorator(fn: Callable[..., Any]) -> _Task:
            return self._register(fn, options)

        return decorator

    @property
    def Task(self) -> type[_Task]:  # noqa: N802 - Celery's name
        """The base class of this app's tasks, bound to it (Celery's ``app.Task``): a subclass of
        ``task_cls=`` (a class or ``'module:Class'`` / ``'module.Class'``), else of ``sqlq.Task``.
        Subclass it for a class-based task or a base class with hooks; ``@app.task(base=...)``
        overrides it per task."""
        base = self._task_base
        if base is None:
            parent = _task_class(self.task_cls)  # task_cls=: a class or 'module:Class', else sqlq.Task
            base = type(parent.__name__, (parent,), {"_app": self, "__module__": parent.__module__,
                                                     "__qualname__": parent.__qualname__,
                                                     "__doc__": parent.__doc__})
            self._task_base = base
        return base

    def register_task(self, task: _Task | type[_Task]) -> _Task:
        """Register a class-based task (Celery 4+'s way): ``app.register_task(MyTask())``, a class
        is instantiated. A task without ``name`` is named ``module.ClassName``."""
        if isinstance(task, type):
            if not issubclass(task, Task):
                raise TaskDefinitionError(f"register_task needs a sqlq.Task subclass or instance, got {task!r}")
            task = task()
        if not isinstance(task, Task):
            raise TaskDefinitionError(
                f"register_task needs a sqlq.Task subclass or instance, got {type(task).__name__}; "
                f"use @app.task for a function")
        cls = type(task)
        if cls.run is Task.run:
            raise TaskDefinitionError(f"task class {cls.__qualname__} defines no run() method; define "
                                      f"run(self, ...) with the task's body")
        if not task.name:
            task.name = self._task_name(cls)
        return self._bind(task)

    def _pydantic_run(self, fn: Callable[..., Any], name: str, options: dict[str, Any]) -> Callable[..., Any] | None:
        """``fn`` wrapped by ``sqlq.pydantic_args`` when ``pydantic=True``, else None; the pydantic
        options are taken out of ``options`` (a pydantic option without ``pydantic=True`` is an
        error, not a silent no-op)."""
        given = {key: options.pop(key) for key in _pydantic_args.OPTIONS if key in options}
        if not given.get("pydantic"):
            others = sorted(key for key in given if key != "pydantic")
            if others:
                raise TaskDefinitionError(f"@app.task({', '.join(others)}=...) for {name!r} needs pydantic=True too")
            return None
        if isinstance(fn, type):
            raise TaskDefinitionError(f"@app.task(pydantic=True) for {name!r} needs a function, got {fn!r}")
        return _pydantic_args.wrap(fn, app=self, task_name=name, strict=bool(given.get("pydantic_strict", False)),
                                   context=given.get("pydantic_context"), dump_kwargs=given.get("pydantic_dump_kwargs"))

    def _register(self, fn: Callable[..., Any], options: dict[str, Any]) -> _Task:
        options = dict(options)
        name = options.pop("name", None) or self._task_name(fn)
        base = options.pop("base", None) or self.Task
        if not (isinstance(base, type) and issubclass(base, Task)):
            raise TaskDefinitionError(f"base= must be a subclass of sqlq.Task (app.Task), got {base!r} for {name!r}")
        validate_task_name(name)
        for key in [k for k in options if k in _CELERY_TASK_UNSUPPORTED or k in _CELERY_TASK_NO_EFFECT]:
            if key in _CELERY_TASK_UNSUPPORTED:
                raise TaskDefinitionError(f"@app.task({key}=...) for {name!r} is Celery's, and sqlq does not "
                                          f"support it: {_CELERY_TASK_UNSUPPORTED[key]}")
            warnings.warn(f"@app.task({key}=...) for {name!r} has no effect in sqlq: {_CELERY_TASK_NO_EFFECT[key]}",
                          SqlqCompatibilityWarning, stacklevel=3)
            del options[key]
        validating = self._pydantic_run(fn, name, options)
        if validating is not None:
            fn = validating
        unknown = [key for key in options if key not in _TASK_OPTIONS and not _base_attribute(base, key)]
        if unknown:
            raise TaskDefinitionError(
                f"unknown option(s) {', '.join(sorted(unknown))} in @app.task for {name!r}; "
                f"known options: name, base, {', '.join(sorted(_TASK_OPTIONS))}, "
                f"{', '.join(_pydantic_args.OPTIONS)} (and the attributes "
                f"of the base class)"
            )
        bind = bool(options.pop("bind", base.bind))
        attributes: dict[str, Any] = {
            "name": name, "bind": bind, "run": fn if bind else staticmethod(fn), "__wrapped__": fn,
            "__doc__": fn.__doc__, "__module__": getattr(fn, "__module__", None) or base.__module__,
            "__qualname__": getattr(fn, "__qualname__", name), "__name__": getattr(fn, "__name__", name),
            "_app": self,
        }
        if validating is not None:
            attributes["_dump_models"] = True  # the call side dumps models (sqlq.pydantic_args.dump_call)
        attributes.update(_task_option_values(name, options))
        if callable(attributes.get("concurrency_key")):  # a function given here is not a method of the task
            attributes["concurrency_key"] = staticmethod(attributes["concurrency_key"])
        cls = type(getattr(fn, "__name__", "task"), (base,), attributes)
        return self._bind(cls())

    def _bind(self, task: _Task) -> _Task:
        """Check a task's attributes once, at definition, and register it in this app."""
        validate_task_name(task.name)
        if task.queue is not None:
            validate_queue(task.queue)
        if task.serializer is not None:
            serialization.content_type_for(task.serializer)  # fail at definition, not at first call
        if task.Request != "sqlq.worker.request:Request":  # a request class of its own (Celery's Task.Request)
            from .worker.request import check_request_class

            check_request_class(task.Request, task.name)
        task.app = self
        self.tasks[task.name] = task
        if task.rate_limit:
            parse_rate(task.rate_limit, f"rate_limit of task {task.name!r}")  # a bad rate fails here
        parse_limit(task.concurrency_limit, f"concurrency_limit of task {task.name!r}")
        check_key_function(task.concurrency_key, task.name)
        if task.unique_on is not None or task.unique_for is not None or task.on_conflict != "skip":
            _check_unique(task)
        self.annotate_task(task)  # task_annotations (cheap when there are none)
        _check_one_limit(task)
        return task

    def _task_name(self, fn: Callable[..., Any] | type) -> str:
        """``module.function``; for ``__main__`` use a name a worker can import, or say how to get one."""
        module = fn.__module__
        if module == "__main__":
            spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            if spec is not None and spec.name and spec.name != "__main__":
                module = spec.name  # run as `python -m pkg.mod`: importable under that name
            elif self.main:
                module = self.main
            else:
                raise TaskDefinitionError(
                    f"task {fn.__qualname__!r} is defined in __main__, which a worker cannot import; "
                    f"pass name='yourmodule.{fn.__name__}' to @app.task (or set name on the class), or "
                    f"create the app with App('yourmodule') where yourmodule is the importable name of this file"
                )
        # a task made inside a function is named by its function name only, as Celery does
        qualname = fn.__name__ if "<locals>" in fn.__qualname__ else fn.__qualname__
        return self.gen_task_name(qualname, module)

    def gen_task_name(self, name: str, module: str) -> str:
        """The name of a task defined as ``name`` in ``module`` when none is given: Celery's hook, so
        an app subclass that shortens names (drops a ``.tasks`` suffix, say) carries over."""
        return f"{module}.{name}"

    def autodiscover_tasks(self, packages: Sequence[str] | Callable[[], Sequence[str]] | None = None,
                           related_name: str = "tasks", force: bool = False) -> list[str]:
        """Import ``<package>.<related_name>`` for each package so their tasks register.

        Without ``packages`` (Celery's Django layout), the packages are the Django project's
        ``INSTALLED_APPS``, imported lazily as Celery does: when the app is finalized (a worker,
        a beat, ``-A``), or at once with ``force=True`` or when it already is."""
        if packages is None:
            return self._autodiscover_installed_apps(related_name, force)
        if callable(packages):
            packages = packages()
        imported = []
        for package in packages:
            module_name = f"{package}.{related_name}" if related_name else package
            try:
                importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name and related_name:
                    continue  # a package without a tasks module: nothing to register
                if exc.name and (package == exc.name or package.startswith(exc.name + ".")):
                    raise ConfigurationError(
                        f"autodiscover_tasks: cannot import package {package!r} (no module named "
                        f"{exc.name!r}); fix the name or put it on sys.path"
                    ) from None
                raise  # the tasks module exists but imports something missing: surface it
            imported.append(module_name)
        return imported

    def _autodiscover_installed_apps(self, related_name: str, force: bool) -> list[str]:
        """``autodiscover_tasks()`` without packages: the Django project's installed apps
        (sqlq/contrib/django/discovery.py), now or when the app is finalized."""
        from .contrib.django import discovery

        discovery.require_django_project()
        if force or self.finalized:
            return self.autodiscover_tasks(discovery.installed_apps(), related_name)
        pending: list[str] = self.__dict__.setdefault("_discover_on_finalize", [])
        if related_name not in pending:
            pending.append(related_name)
        return []

    def _discover_pending(self) -> None:
        """At finalize: the lazy ``autodiscover_tasks()`` calls made so far (an error in a tasks
        module surfaces here, as it would from ``include``)."""
        pending = self.__dict__.get("_discover_on_finalize")
        if pending:
            from .contrib.django import discovery

            for related_name in pending:
                self.autodiscover_tasks(discovery.installed_apps(), related_name)

    # sending -----------------------------------------------------------------------------------

    def send_task(self, name: str, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
                  connection: Any = None, **options: Any) -> _AsyncResult | GroupResult:
        """Enqueue by name, without importing the task's code."""
        validate_task_name(name)
        task = self.tasks.get(name)
        if task is not None:
            return task.apply_async(args, kwargs, connection=connection, **options)
        if options.get("link") or options.get("link_error"):  # callbacks: the database runs them
            from .canvas import Signature

            sent: _AsyncResult | GroupResult = Signature(name, args, kwargs, app=self, **options).apply_async(
                connection=connection)
            return sent
        unknown = set(options) - APPLY_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) for send_task({name!r}): {', '.join(sorted(unknown))}; "
                f"known options: {', '.join(sorted(APPLY_OPTIONS))}"
            )
        spec = self.build_job(name, args, kwargs, **options)
        result = self.enqueue([spec], connection=connection)[0]
        task_id = options.get("task_id")
        if isinstance(task_id, str) and result.id != task_id and result.id == spec.id:
            result.id = task_id  # a task id that is not the row's UUID: the handle shows the caller's
        return result

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> _AsyncResult:  # noqa: N802
        return AsyncResult(task_id, self, task_name)

    # The way jobs get into the table (sqlq/enqueue.py): its functions are these methods, bound
    # here rather than wrapped, so that a delay() pays for no extra call.
    build_job = _enqueue.build_job
    build_jobs = _enqueue.build_jobs
    enqueue = _enqueue.enqueue
    aenqueue = _enqueue.aenqueue
    enqueue_calls = _enqueue.enqueue_calls

    def add_periodic_task(self, schedule: Any, sig: Any, name: str | None = None, **options: Any) -> str:
        """Celery's ``app.add_periodic_task``: an entry of ``conf.beat_schedule`` made from a signature
        (sqlq/periodic/definitions.py, ``add_periodic_task``); returns the entry's name."""
        from .periodic.definitions import add_periodic_task

        return add_periodic_task(self, schedule, sig, name, **options)

    # Paused queues (Oban's pause_queue/resume_queue; store/queues.sql): a row every worker reads
    # before its next claim, so a pause holds for the workers running now and those started later.
    def pause_queue(self, queue: str) -> bool:
        """Stop every worker from claiming ``queue``'s jobs until ``resume_queue``; they stay waiting.
        Jobs already claimed finish. False when the queue was already paused."""
        with self.connection() as conn:
            return self.store.pause_queue(conn, validate_queue(queue))

    def resume_queue(self, queue: str) -> bool:
        """Let the workers claim ``queue``'s jobs again; False when it was not paused."""
        with self.connection() as conn:
            return self.store.resume_queue(conn, validate_queue(queue))

    def paused_queues(self) -> list[str]:
        """The paused queues, the first paused first."""
        with self.connection() as conn:
            return [p.queue for p in self.store.paused_queues(conn)]


#: Celery's name for the app class, so ``from sqlq import Celery`` is the only change to make.
Celery = App
