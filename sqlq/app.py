"""``App``: settings, connections, the task registry, and the way jobs get into the table.

There is no module-level app: a process may hold several (different databases or schemas), and
tests build a fresh one each.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import inspect
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from . import router, serialization
from .config import Settings, resolve_database_url, sqlalchemy_url
from .db import (
    AsyncConnectionPool,
    ConnectionPool,
    broke,
    broke_in_transaction,
    connect,
    raise_clear_error,
    write_lost,
)
from .errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    NotRegistered,
    SchemaNotMigratedError,
    SerializationError,
    TaskDefinitionError,
)
from .migrate import HEAD_REVISION
from .names import validate_task_name
from .notify import ResultWaiter
from .result import AsyncResult, GroupResult
from .store import JobSpec, PublishRow, Store
from .task import APPLY_OPTIONS, Task

if TYPE_CHECKING:
    # imported where the engine is made: a worker or producer that never needs SQLAlchemy
    # does not pay ~0.1-0.2 s of start-up for it
    from sqlalchemy import Engine

_PRIORITY_RANGE = range(-32768, 32768)
#: From this many calls on, a bulk enqueue streams its rows with COPY (App.enqueue_calls).
_STREAM_MIN = 64
#: Ids for a streamed bulk enqueue are made this many at a time, as the rows go.
_ID_CHUNK = 512
#: What @app.task(...) accepts besides name=: Task's keyword arguments.
_TASK_OPTIONS = frozenset(inspect.signature(Task.__init__).parameters) - {"self", "app", "fn", "name"}


class TaskRegistry(dict):
    """name → Task, with an error that tells the user how to get a task registered."""

    def __missing__(self, name: str) -> Task:
        raise NotRegistered(
            f"task {name!r} is not registered in this app; import the module that defines it "
            f"(sqlq -A yourmodule, or app.autodiscover_tasks([...]))"
        )


class App:
    """A sqlq application: ``App('proj', database_url=...)``."""

    def __init__(self, main: str | None = None, database_url: str | None = None, **settings: Any):
        self.main = main
        self.conf = Settings(**settings)
        if database_url is not None:
            self.conf.database_url = database_url
        self.tasks: TaskRegistry = TaskRegistry()
        self._url_override: str | None = None
        self._resolved_url: str | None = None
        self._engine: Engine | None = None
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._store: Store | None = None
        self._waiter: ResultWaiter | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<sqlq.App {self.main or '__main__'}>"

    # configuration -----------------------------------------------------------------------------

    def config_from_object(self, obj: Any) -> None:
        """Load settings from a module, class, mapping, or dotted path (``'proj.settings'``)."""
        self.conf.from_object(obj)

    def set_database_url(self, url: str | None) -> None:
        """A URL given on the command line: beats every other source."""
        with self._lock:
            self._url_override = url
            self._reset_connections()

    @property
    def database_url(self) -> str:
        """The URL by precedence: CLI, SQLQ_DATABASE_URL, DATABASE_URL, the app's setting, embedded."""
        if self._resolved_url is None:
            with self._lock:
                url = resolve_database_url(self._url_override, self.conf.database_url)
                if url is None:
                    from .embedded import ensure_embedded

                    url = ensure_embedded()
                sqlalchemy_url(url)  # validate early, with a clear message
                self._resolved_url = url
        return self._resolved_url

    @property
    def store(self) -> Store:
        schema = self.conf.schema
        if self._store is None or self._store.schema != schema:
            self._store = Store(schema)
        return self._store

    @property
    def engine(self) -> Engine:
        """SQLAlchemy engine for migrations, transactional tasks and ad-hoc SQL."""
        with self._lock:
            if self._engine is None:
                from sqlalchemy import create_engine  # here: a worker that never needs it never imports it

                url = self.database_url
                # connect through db.connect so an unreachable server reads as one clear line here too
                self._engine = create_engine(sqlalchemy_url(url), pool_pre_ping=True,
                                             creator=lambda: connect(url, autocommit=False))
            return self._engine

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit psycopg connection (the hot path's way in)."""
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ConnectionPool(self.database_url)
                pool = self._pool
        with pool.connection() as conn:
            try:
                yield conn
            except psycopg.Error as exc:
                raise_clear_error(exc, self.conf.schema)
                raise

    def _async_pool(self) -> AsyncConnectionPool:
        with self._lock:
            if self._apool is None:
                self._apool = AsyncConnectionPool(self.database_url)
            return self._apool

    def result_waiter(self) -> ResultWaiter:
        with self._lock:
            if self._waiter is None:
                self._waiter = ResultWaiter(self.database_url, self.store.listen_results)
            waiter = self._waiter
        waiter.ensure_started()
        return waiter

    def _reset_connections(self) -> None:
        self._resolved_url = None
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None
        if self._pool is not None:
            self._pool.dispose()
            self._pool = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._apool is not None:
            self._apool.close()
            self._apool = None

    def close(self) -> None:
        """Close every connection this app opened."""
        with self._lock:
            self._reset_connections()

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
        from . import routing

        return routing.apply_routes(self)

    # tasks -------------------------------------------------------------------------------------

    def task(self, *args: Any, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., bind=True, ...)``."""
        if len(args) == 1 and callable(args[0]) and not options:
            return self._register(args[0], {})
        if args:
            raise TaskDefinitionError("use @app.task or @app.task(**options); positional options are not accepted")

        def decorator(fn: Callable) -> Task:
            return self._register(fn, options)

        return decorator

    def _register(self, fn: Callable, options: dict[str, Any]) -> Task:
        name = options.pop("name", None) or self._task_name(fn)
        validate_task_name(name)
        unknown = set(options) - _TASK_OPTIONS
        if unknown:
            raise TaskDefinitionError(
                f"unknown option(s) {', '.join(sorted(unknown))} in @app.task for {name!r}; "
                f"known options: name, {', '.join(sorted(_TASK_OPTIONS))}"
            )
        task = Task(self, fn, name, **options)
        self.tasks[name] = task
        return task

    def _task_name(self, fn: Callable) -> str:
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
                    f"pass name='yourmodule.{fn.__name__}' to @app.task, or create the app with "
                    f"App('yourmodule') where yourmodule is the importable name of this file"
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

    def send_task(self, name: str, args: Sequence | None = None, kwargs: dict | None = None,
                  connection: Any = None, **options: Any) -> AsyncResult:
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

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:  # noqa: N802
        return AsyncResult(task_id, self, task_name)

    def build_job(self, task_name: str, args: Sequence | None, kwargs: dict | None, *,
                  countdown: float | None = None, eta: dt.datetime | None = None,
                  expires: float | dt.datetime | None = None, queue: str | None = None,
                  priority: int | None = None, task_id: str | None = None, headers: dict | None = None,
                  serializer: str | None = None, acks_late: bool | None = None,
                  exchange: str | None = None, routing_key: str | None = None,
                  task: Task | None = None) -> JobSpec:
        """Validate and encode one call. Nothing is written, so a bad argument inserts nothing."""
        _check_call(args, kwargs)
        ctype, args_json, kwargs_json, payload = serialization.encode_call(
            args or (), kwargs or {}, serializer or self.conf.task_serializer
        )
        dest = self._route(task_name, args, kwargs, task, queue=queue, exchange=exchange,
                           routing_key=routing_key, priority=priority)
        priority = self.conf.task_default_priority if dest.priority is None else dest.priority
        if not isinstance(priority, int) or priority not in _PRIORITY_RANGE:
            raise ConfigurationError(f"priority must be an integer from -32768 to 32767, got {priority!r}")
        if countdown is not None and eta is not None:
            raise ConfigurationError("pass either countdown= or eta=, not both")
        expires_at = expires_in = None
        if isinstance(expires, dt.datetime):
            expires_at = expires if expires.tzinfo else expires.replace(tzinfo=dt.UTC)
        elif expires is not None:
            expires_in = float(expires)
        if eta is not None and eta.tzinfo is None:
            eta = eta.replace(tzinfo=dt.UTC)
        try:
            headers_json = json.dumps(headers) if headers else "{}"
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"headers must be JSON-serializable: {exc}") from None
        try:
            job_id = str(uuid.UUID(str(task_id))) if task_id else new_job_id()
        except ValueError:
            raise ConfigurationError(f"task_id must be a UUID string, got {task_id!r}") from None
        return JobSpec(
            id=job_id,
            task=task_name, queue=dest.queue or "", priority=priority, content_type=ctype, args=args_json,
            kwargs=kwargs_json, payload=payload, headers=headers_json, eta=eta,
            countdown=float(countdown) if countdown is not None else None,
            expires_at=expires_at, expires_in=expires_in,
            acks_late=self.conf.task_acks_late if acks_late is None else bool(acks_late),
            exchange=dest.exchange, routing_key=dest.routing_key,
        )

    def build_jobs(self, task_name: str, calls: Iterable[tuple[Sequence | None, dict | None]], *,
                   task: Task | None = None, **options: Any) -> list[JobSpec]:
        """``build_job`` for many calls with the same options.

        Options and routing are resolved once, from the first call, unless a router function could
        route each call differently; then only the arguments are encoded per call, which is what
        makes bulk enqueue fast."""
        calls = list(calls)
        if not calls:
            return []
        if "task_id" in options or not router.routes_by_name_only(self.conf.task_routes):
            return [self.build_job(task_name, a, k, task=task, **options) for a, k in calls]
        first = self.build_job(task_name, *calls[0], task=task, **options)
        serializer = options.get("serializer") or self.conf.task_serializer
        specs = [first]
        for args, kwargs in calls[1:]:
            _check_call(args, kwargs)
            ctype, args_json, kwargs_json, payload = serialization.encode_call(args or (), kwargs or {}, serializer)
            specs.append(JobSpec(
                id=new_job_id(), task=task_name, queue=first.queue, priority=first.priority, content_type=ctype,
                args=args_json, kwargs=kwargs_json, payload=payload, headers=first.headers, eta=first.eta,
                countdown=first.countdown, expires_at=first.expires_at, expires_in=first.expires_in,
                acks_late=first.acks_late, exchange=first.exchange, routing_key=first.routing_key))
        return specs

    def enqueue_calls(self, task_name: str, calls: Iterable[tuple[Sequence | None, dict | None]], *,
                      task: Task | None = None, connection: Any = None,
                      **options: Any) -> list[AsyncResult | GroupResult]:
        """``build_jobs`` and ``enqueue`` in one: bulk enqueue of many calls with the same options.

        When the jobs are due now, JSON-encoded, not routed, and written on sqlq's own connection,
        each call is encoded while the rows stream to PostgreSQL in one COPY, so the encoding
        overlaps the server's work instead of preceding it; a call that cannot be encoded aborts
        the COPY, so nothing is written, as on the other path."""
        calls = calls if isinstance(calls, list) else list(calls)
        if len(calls) >= _STREAM_MIN and connection is None and "task_id" not in options \
                and router.routes_by_name_only(self.conf.task_routes):
            first = self.build_job(task_name, *calls[0], task=task, **options)
            if first.due_now() and first.content_type == serialization.JSON:
                results: list[AsyncResult | GroupResult] = []
                conn = None
                try:
                    with self.connection() as conn:
                        self.store.copy_jobs(conn, self._json_rows(first, calls, results), [first.queue],
                                             lean=first.copies_lean())
                    return results
                except psycopg.OperationalError as exc:
                    if conn is None or not broke(conn, exc):
                        raise
                    lost = exc
                # The COPY's connection broke: write the batch again, with the ids its rows had so far
                specs = self.build_jobs(task_name, calls, task=task, **options)
                for spec, sent in zip(specs, results, strict=False):
                    spec.id = sent.id
                self._rewrite(specs, lost)
                return [AsyncResult(s.id, self, s.task) for s in specs]
        return self.enqueue(self.build_jobs(task_name, calls, task=task, **options), connection=connection)

    def _json_rows(self, first: JobSpec, calls: list[tuple[Sequence | None, dict | None]],
                   results: list[AsyncResult | GroupResult]) -> Iterator[tuple]:
        """COPY_JOBS rows for ``calls``, encoded one by one (ids too, a chunk at a time), each
        call's ``AsyncResult`` appended to ``results``; ``first`` gives the shared columns."""
        encode = serialization.encode_json_call
        name, queue, priority, ctype = first.task, first.queue, first.priority, first.content_type
        headers, acks_late, keep, lean = first.headers, first.acks_late, results.append, first.copies_lean()
        for start in range(0, len(calls), _ID_CHUNK):
            chunk = calls[start:start + _ID_CHUNK]
            ids = new_job_ids(len(chunk))
            if start == 0:
                ids[0] = first.id
            for job_id, (args, kwargs) in zip(ids, chunk, strict=True):
                _check_call(args, kwargs)
                args_json, kwargs_json = encode(args, kwargs)
                keep(AsyncResult(job_id, self, name))
                if lean:  # COPY_JOBS_LEAN's columns
                    yield (job_id, name, queue, "available", args_json, kwargs_json)
                else:
                    yield (job_id, name, queue, priority, "available", args_json, kwargs_json, None, ctype,
                           headers, acks_late, None)

    def _route(self, task_name: str, args: Sequence | None, kwargs: dict | None, task: Task | None,
               **options: Any) -> router.Destination:
        """A queue, or an exchange and routing key (sqlq/router.py: options, task, task_routes, defaults)."""
        return router.resolve(self.conf, task_name, args, kwargs, task=task, **options)

    def enqueue(self, specs: Sequence[JobSpec], connection: Any = None) -> list[AsyncResult | GroupResult]:
        """Write jobs: on a pooled connection (committed at once), or in the caller's transaction.

        Jobs routed through an exchange (``spec.exchange``) return an ``AsyncResult`` when they reach
        one queue and a ``GroupResult`` when they reach several (sqlq/routing.py).

        On a pooled connection, a connection that breaks under the write (a server restart, a
        terminated backend, a network cut) costs the caller nothing: the write is made once more
        on a new connection, guarded so that jobs the first attempt committed are not written
        twice (``Store.rewrite``); if that fails too, a ``DatabaseUnavailableError`` names the
        jobs. On the caller's connection nothing is retried: a broken connection raises a
        ``DatabaseUnavailableError`` saying the caller's transaction is gone.
        """
        store = self.store
        if connection is None:
            conn = None
            try:
                with self.connection() as conn:
                    rows = self._write(store, conn, specs, own=True)
            except psycopg.OperationalError as exc:
                if conn is None or not broke(conn, exc):
                    raise
                rows = self._rewrite(specs, exc)
        else:
            rows = self._write_on(connection, store, specs)
        if rows is not None:
            from .routing import published  # (only routed jobs need it)

            return published(self, specs, rows)
        return [AsyncResult(s.id, self, s.task) for s in specs]

    def _rewrite(self, specs: Sequence[JobSpec], lost: BaseException) -> list[PublishRow] | None:
        """The one retry of a write whose pooled connection broke (``lost``): ``Store.rewrite`` on a
        new connection (the pool checks and replaces idle ones), or the error that says the
        first attempt's fate is unknown."""
        try:
            with self.connection() as conn:
                return self.store.rewrite(conn, specs)
        except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
            raise write_lost([s.id for s in specs], lost, exc) from exc

    async def _arewrite(self, specs: Sequence[JobSpec], lost: BaseException) -> list[PublishRow] | None:
        """``_rewrite`` for the async API."""
        try:
            async with self._async_pool().connection() as conn:
                try:
                    return await self.store.arewrite(conn, specs)
                except psycopg.Error as exc:
                    raise_clear_error(exc, self.conf.schema)
                    raise
        except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
            raise write_lost([s.id for s in specs], lost, exc) from exc

    @staticmethod
    def _write(store: Store, conn: psycopg.Connection, specs: Sequence[JobSpec], *,
               own: bool = False) -> list[PublishRow] | None:
        """Returns PUBLISH's rows for routed jobs (None otherwise). ``own``: a pooled connection."""
        if store.routed(specs):
            return store.publish(conn, specs, own=own)
        if len(specs) == 1:
            store.enqueue(conn, specs[0], own=own)
        else:
            store.enqueue_many(conn, specs)
        return None

    def _write_on(self, connection: Any, store: Store, specs: Sequence[JobSpec]) -> list[PublishRow] | None:
        """The caller's connection: psycopg, or SQLAlchemy Connection/Session (their transaction)."""
        if isinstance(connection, psycopg.Connection):
            in_transaction = _in_transaction(connection)
            try:
                return self._write(store, connection, specs)
            except psycopg.Error as exc:
                if broke(connection, exc):
                    raise broke_in_transaction([s.id for s in specs], exc, in_transaction) from exc
                raise_clear_error(exc, self.conf.schema)
                raise
        statement, params = store.write_statement(specs)
        conn = _sqlalchemy_connection(connection)
        driver = conn.connection.driver_connection  # (SQLAlchemy drops it when it sees the break)
        try:
            result = conn.exec_driver_sql(statement, params)
        except Exception as exc:
            orig = getattr(exc, "orig", exc)
            if isinstance(driver, psycopg.Connection) and broke(driver, orig):
                raise broke_in_transaction([s.id for s in specs], orig, True) from exc
            raise_clear_error(orig, self.conf.schema)
            raise
        return [PublishRow(*row) for row in result.fetchall()] if store.routed(specs) else None

    async def aenqueue(self, specs: Sequence[JobSpec], connection: Any = None) -> list[AsyncResult | GroupResult]:
        """``enqueue`` for the async API, with the same retry on a pooled connection that broke."""
        store = self.store
        if connection is None:
            conn = None
            try:
                async with self._async_pool().connection() as conn:
                    rows = await self._awrite(store, conn, specs)
            except psycopg.OperationalError as exc:
                if conn is None or not broke(conn, exc):
                    raise
                rows = await self._arewrite(specs, exc)
        elif isinstance(connection, psycopg.AsyncConnection):
            in_transaction = _in_transaction(connection)
            try:
                rows = await self._awrite(store, connection, specs)
            except psycopg.OperationalError as exc:
                if broke(connection, exc):
                    raise broke_in_transaction([s.id for s in specs], exc, in_transaction) from exc
                raise
        else:
            statement, params = store.write_statement(specs)
            conn = await _async_sqlalchemy_connection(connection)
            driver = (await conn.get_raw_connection()).driver_connection
            try:
                result = await conn.exec_driver_sql(statement, params)
            except Exception as exc:
                orig = getattr(exc, "orig", exc)
                if isinstance(driver, psycopg.AsyncConnection) and broke(driver, orig):
                    raise broke_in_transaction([s.id for s in specs], orig, True) from exc
                raise_clear_error(orig, self.conf.schema)
                raise
            rows = [PublishRow(*row) for row in result.fetchall()] if store.routed(specs) else None
        if rows is not None:
            from .routing import published  # (only routed jobs need it)

            return published(self, specs, rows)
        return [AsyncResult(s.id, self, s.task) for s in specs]

    async def _awrite(self, store: Store, conn: psycopg.AsyncConnection,
                      specs: Sequence[JobSpec]) -> list[PublishRow] | None:
        try:
            if store.routed(specs):
                return await store.apublish(conn, specs)
            if len(specs) == 1:
                await store.aenqueue(conn, specs[0])
            else:
                await store.aenqueue_many(conn, specs)
        except psycopg.Error as exc:
            raise_clear_error(exc, self.conf.schema)
            raise
        return None


def _in_transaction(conn: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    """Whether a write on the caller's ``conn`` is part of a transaction of theirs (one already
    open, or the one psycopg opens for it on a connection not in autocommit)."""
    return not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def _check_call(args: Any, kwargs: Any) -> None:
    if args is not None and not isinstance(args, list | tuple):
        raise SerializationError(f"args must be a list or tuple, not {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise SerializationError(f"kwargs must be a dict, not {type(kwargs).__name__}")


def new_job_id() -> str:
    """A UUIDv7-style id: time-ordered, so the results primary key grows at its right edge
    instead of splitting random btree pages on every insert. 48 bits of milliseconds, the version
    and variant bits, 74 random bits; formatted by hand (``str(uuid.UUID(...))`` costs 3 µs)."""
    return _format_job_id(f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}", os.urandom(10).hex())


def new_job_ids(n: int) -> list[str]:
    """``n`` ids for one bulk enqueue: one clock read and one ``urandom`` call for them all."""
    stamp = f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}"
    rand = os.urandom(10 * n).hex()
    return [_format_job_id(stamp, rand[i:i + 20]) for i in range(0, 20 * n, 20)]


def _format_job_id(stamp: str, rand: str) -> str:
    """``stamp``: 12 hex digits of time; ``rand``: 20 random hex digits (74 bits are used)."""
    return f"{stamp[:8]}-{stamp[8:]}-7{rand[:3]}-{_VARIANT[rand[3]]}{rand[4:7]}-{rand[7:19]}"


#: RFC 9562 variant bits (10xx) in the first digit of the fourth group, keeping two random bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _sqlalchemy_connection(obj: Any) -> Any:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    if isinstance(obj, Session):
        return obj.connection()
    if isinstance(obj, Connection):
        return obj
    raise ConfigurationError(
        f"connection= must be a SQLAlchemy Connection or Session, or a psycopg Connection "
        f"(async ones with the async API); got {type(obj).__name__}"
    )


async def _async_sqlalchemy_connection(obj: Any) -> Any:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(obj, AsyncSession):
        return await obj.connection()
    if isinstance(obj, AsyncConnection):
        return obj
    raise ConfigurationError(
        f"connection= for the async API must be a SQLAlchemy AsyncConnection or AsyncSession, or a "
        f"psycopg AsyncConnection; got {type(obj).__name__}"
    )


def load_app(path: str) -> App:
    """Find the app for ``-A``: ``module:attr``, or a module holding ``app`` (or exactly one App)."""
    module_name, _, attr = path.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: -A may name a module in the current directory
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(
                f"cannot import app module {module_name!r} (-A {path}): no module named {exc.name!r}; "
                f"run from the directory that contains it or fix the name"
            ) from None
        raise
    if attr:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, App):
            raise ConfigurationError(f"{path!r} is not a sqlq App (found {type(obj).__name__})")
        return obj
    candidate = getattr(module, "app", None)
    if isinstance(candidate, App):
        return candidate
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) == 1:
        return apps[0]
    raise ConfigurationError(
        f"module {module_name!r} has {'no' if not apps else 'several'} sqlq App instances; "
        f"say which one with -A {module_name}:name"
    )


def app_path(app: App) -> str | None:
    """An importable ``module:attr`` for ``app`` (prefork children import it), if there is one."""
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        try:
            for attr, value in vars(module).items():
                if value is app:
                    return f"{name}:{attr}"
        except TypeError:
            continue
    return None
