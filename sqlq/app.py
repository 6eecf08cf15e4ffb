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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from . import enqueue as _enqueue
from . import serialization
from .config import Settings
from .connections import Connections
from .current import set_current_app
from .errors import ConfigurationError, NotRegistered, SchemaNotMigratedError, TaskDefinitionError
from .migrate import HEAD_REVISION
from .names import validate_queue, validate_task_name
from .result import AsyncResult
from .store import Store
from .task import APPLY_OPTIONS, Task
from .task import Task as _Task  # for annotations inside App, where the name Task is the property

if TYPE_CHECKING:
    # imported where the engine is made: a worker or producer that never needs SQLAlchemy
    # does not pay ~0.1-0.2 s of start-up for it
    from sqlalchemy import Engine

    from .db import AsyncConnectionPool
    from .notify import ResultWaiter

    # for annotations inside App, where the name AsyncResult is App's method
    from .result import AsyncResult as _AsyncResult
    from .result import GroupResult

#: What @app.task(...) accepts besides name= and base=: Task's attributes (a custom base class may add
#: its own: any attribute of the base is accepted).
_TASK_OPTIONS = frozenset({
    "bind", "typing", "max_retries", "default_retry_delay", "autoretry_for", "retry_kwargs", "retry_backoff",
    "retry_backoff_max", "retry_jitter", "acks_late", "reject_on_worker_lost", "ignore_result", "queue",
    "priority", "time_limit", "soft_time_limit", "rate_limit", "throws", "track_started", "serializer",
    "expires", "transactional"})
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
    for key in ("autoretry_for", "throws"):
        if key in values:
            given = values[key]
            values[key] = tuple(given) if isinstance(given, list | tuple | set | frozenset) else (given,)
            if not all(isinstance(c, type) and issubclass(c, BaseException) for c in values[key]):
                raise TaskDefinitionError(f"{key}= of task {name!r} must be exception classes, got {given!r}")
    if "retry_kwargs" in values:
        values["retry_kwargs"] = dict(values["retry_kwargs"] or {})
    return values


class TaskRegistry(dict[str, Task]):
    """name → Task, with an error that tells the user how to get a task registered."""

    def __missing__(self, name: str) -> Task:
        raise NotRegistered(
            f"task {name!r} is not registered in this app; import the module that defines it "
            f"(sqlq -A yourmodule, or app.autodiscover_tasks([...]))"
        )


class App:
    """A sqlq application: ``App('proj', database_url=...)``."""

    def __init__(self, main: str | None = None, database_url: str | None = None, *, set_as_current: bool = True,
                 **settings: Any):
        self.main = main
        self.conf = Settings(**settings)
        if database_url is not None:
            self.conf.database_url = database_url
        self.tasks: TaskRegistry = TaskRegistry()
        self._connections = Connections(self.conf)
        self._store: Store | None = None
        if set_as_current:
            set_current_app(self)

    def __repr__(self) -> str:
        return f"<sqlq.App {self.main or '__main__'}>"

    def set_current(self) -> None:
        """Make this the app that app-less entry points (``shared_task``, ``AsyncResult(id)``) use."""
        set_current_app(self)

    # configuration -----------------------------------------------------------------------------

    def config_from_object(self, obj: Any) -> None:
        """Load settings from a module, class, mapping, or dotted path (``'proj.settings'``)."""
        self.conf.from_object(obj)

    def set_database_url(self, url: str | None) -> None:
        """A URL given on the command line: beats every other source."""
        self._connections.set_url(url)

    @property
    def database_url(self) -> str:
        """The URL by precedence: CLI, SQLQ_DATABASE_URL, DATABASE_URL, the app's setting, embedded."""
        return self._connections.url

    @property
    def store(self) -> Store:
        schema = self.conf.schema
        if self._store is None or self._store.schema != schema:
            self._store = Store(schema)
        return self._store

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

    def task(self, *args: Any, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., bind=True, base=...)``.

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
        """The base class of this app's tasks, bound to it (Celery's ``app.Task``): subclass it for
        a class-based task or a base class with hooks."""
        base = self.__dict__.get("_task_base")
        if base is None:
            base = type("Task", (Task,), {"_app": self, "__module__": Task.__module__,
                                          "__qualname__": "Task", "__doc__": Task.__doc__})
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

    def _register(self, fn: Callable[..., Any], options: dict[str, Any]) -> _Task:
        options = dict(options)
        name = options.pop("name", None) or self._task_name(fn)
        base = options.pop("base", None) or self.Task
        if not (isinstance(base, type) and issubclass(base, Task)):
            raise TaskDefinitionError(f"base= must be a subclass of sqlq.Task (app.Task), got {base!r} for {name!r}")
        validate_task_name(name)
        unknown = [key for key in options if key not in _TASK_OPTIONS and not _base_attribute(base, key)]
        if unknown:
            raise TaskDefinitionError(
                f"unknown option(s) {', '.join(sorted(unknown))} in @app.task for {name!r}; "
                f"known options: name, base, {', '.join(sorted(_TASK_OPTIONS))} (and the attributes "
                f"of the base class)"
            )
        bind = bool(options.pop("bind", base.bind))
        attributes: dict[str, Any] = {
            "name": name, "bind": bind, "run": fn if bind else staticmethod(fn), "__wrapped__": fn,
            "__doc__": fn.__doc__, "__module__": getattr(fn, "__module__", None) or base.__module__,
            "__qualname__": getattr(fn, "__qualname__", name), "__name__": getattr(fn, "__name__", name),
            "_app": self,
        }
        attributes.update(_task_option_values(name, options))
        cls = type(getattr(fn, "__name__", "task"), (base,), attributes)
        return self._bind(cls())

    def _bind(self, task: _Task) -> _Task:
        """Check a task's attributes once, at definition, and register it in this app."""
        validate_task_name(task.name)
        if task.queue is not None:
            validate_queue(task.queue)
        if task.serializer is not None:
            serialization.content_type_for(task.serializer)  # fail at definition, not at first call
        task.app = self
        self.tasks[task.name] = task
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
        return f"{module}.{qualname}"

    def autodiscover_tasks(self, packages: Sequence[str] | Callable[[], Sequence[str]],
                           related_name: str = "tasks") -> list[str]:
        """Import ``<package>.<related_name>`` for each package so their tasks register."""
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

    # sending -----------------------------------------------------------------------------------

    def send_task(self, name: str, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
                  connection: Any = None, **options: Any) -> _AsyncResult | GroupResult:
        """Enqueue by name, without importing the task's code."""
        validate_task_name(name)
        task = self.tasks.get(name)
        if task is not None:
            return task.apply_async(args, kwargs, connection=connection, **options)
        unknown = set(options) - APPLY_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) for send_task({name!r}): {', '.join(sorted(unknown))}; "
                f"known options: {', '.join(sorted(APPLY_OPTIONS))}"
            )
        spec = self.build_job(name, args, kwargs, **options)
        return self.enqueue([spec], connection=connection)[0]

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> _AsyncResult:  # noqa: N802
        return AsyncResult(task_id, self, task_name)

    # The way jobs get into the table (sqlq/enqueue.py): its functions are these methods, bound
    # here rather than wrapped, so that a delay() pays for no extra call.
    build_job = _enqueue.build_job
    build_jobs = _enqueue.build_jobs
    enqueue = _enqueue.enqueue
    aenqueue = _enqueue.aenqueue
    enqueue_calls = _enqueue.enqueue_calls
