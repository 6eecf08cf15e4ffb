"""sqlq's pytest plugin and test helpers (loaded by pytest through the ``pytest11`` entry point).

Fixtures, modelled on ``celery.contrib.pytest`` (every name starts with ``sqlq_``):

* ``sqlq_app``: an ``App`` on a fresh schema of the test database, migrated, made current, and
  dropped with everything in it after the test. The database is ``SQLQ_TEST_DATABASE_URL``, else
  ``SQLQ_DATABASE_URL``, else ``DATABASE_URL``, else the embedded one (``sqlq-pg[embedded]``).
  ``SQLQ_DATABASE_URL`` and ``SQLQ_SCHEMA`` are set for the test's duration, so a prefork child or
  a ``sqlq`` command the test starts sees the same schema.
* ``sqlq_config`` (settings for ``sqlq_app``) and ``sqlq_includes`` (modules imported once the app
  exists), to override like Celery's ``celery_config``/``celery_includes``;
  ``sqlq_worker_parameters`` (``Worker`` keyword arguments: ``pool``, ``concurrency``, ``queues``).
* ``sqlq_worker``: a real ``sqlq.worker.Worker`` (threads pool; prefork for an app importable by
  its module name) in a thread of the test process, consuming ``sqlq_app``'s queues for the test's
  duration, stopped (warm) at teardown.
* ``sqlq_eager``: ``task_always_eager`` and ``task_eager_propagates`` on the current app for one
  test (``eager(app)`` is the same for any app, as a context manager).
* Celery's other knobs under sqlq names: the ``sqlq`` marker (``@pytest.mark.sqlq(result_expires=60)``:
  settings for one test's ``sqlq_app``, merged over ``sqlq_config``, as ``@pytest.mark.celery``),
  ``sqlq_parameters`` (``App`` constructor arguments, ``task_cls=`` ...), ``sqlq_worker_pool``
  (``sqlq_worker``'s pool, ``threads``), ``sqlq_enable_logging`` (the worker logs as ``sqlq worker``
  does), ``depends_on_current_app`` (``sqlq_app`` made current, the previous app restored) and
  ``use_sqlq_app_trap`` (override to return True: using the current app in the test raises,
  Celery's ``use_celery_app_trap``).

Helpers: ``drain(app)`` runs every job due now, in this process, and returns their outcomes;
``assert_enqueued(task, args=..., kwargs=..., count=...)`` checks the jobs waiting in the table;
``on_test_schema(app)`` puts an existing app (your project's) on a fresh schema for a test.

Loading the plugin imports the ``sqlq`` package (as any test of a sqlq project does) and no more:
the worker, the store's statements and the database are reached only when a fixture or a helper is
used, so a run that uses none of them opens no connection.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    import datetime as dt

    from .app import App
    from .result import AsyncResult
    from .task import Task
    from .worker.worker import Worker

#: Where the test database's URL is looked for, in this order (then the embedded database).
URL_VARIABLES = ("SQLQ_TEST_DATABASE_URL", "SQLQ_DATABASE_URL", "DATABASE_URL")

_ANY: Any = object()


def database_url() -> str:
    """The test database: the first of ``URL_VARIABLES`` that is set, else the embedded database
    (started if need be; it needs ``pip install 'sqlq-pg[embedded]'``)."""
    for variable in URL_VARIABLES:
        url = os.environ.get(variable)
        if url:
            return url
    from .embedded import ensure_embedded

    return ensure_embedded(quiet=True)


_find_database_url = database_url  # (on_test_schema's parameter has the same name)


@contextlib.contextmanager
def on_test_schema(app: App, database_url: str | None = None) -> Iterator[App]:
    """Point ``app`` at a fresh schema of the test database, migrated, for the ``with`` block; then
    close its connections and drop the schema with everything in it.

    The schema and the URL are given through ``SQLQ_SCHEMA`` and ``SQLQ_DATABASE_URL``, which take
    precedence over the app's own settings (as they do in production), and are set back afterwards:
    so this works on your project's own app, and subprocesses the test starts use the same schema."""
    from .db import connect
    from .store import Store

    url = database_url or _find_database_url()
    schema = f"sqlq_test_{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SQLQ_DATABASE_URL", url)
        env.setenv("SQLQ_SCHEMA", schema)
        env.delenv("DATABASE_URL", raising=False)
        app.close()  # forget the URL and settings it read from the environment before
        if app.conf.schema != schema:
            raise RuntimeError(f"sqlq.testing: the app's schema is {app.conf.schema!r}, not the test's "
                               f"{schema!r}, after setting SQLQ_SCHEMA; is the app's conf patched?")
        try:
            app.migrate()
            yield app
        finally:
            app.close()
            with connect(url) as conn:
                Store(schema).drop_schema(conn)
    app.close()  # its next use reads the environment as it is again


@contextlib.contextmanager
def eager(app: App, propagates: bool = True) -> Iterator[App]:
    """``task_always_eager`` (and ``task_eager_propagates``) on ``app`` for the ``with`` block: every
    ``delay()``/``apply_async()`` of its tasks runs at once in this process (``sqlq.eager``)."""
    conf = app.conf
    before = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, propagates
    try:
        if (conf.task_always_eager, conf.task_eager_propagates) != (True, propagates):
            raise RuntimeError(
                "sqlq.testing.eager: the environment overrides task_always_eager or task_eager_propagates "
                "(SQLQ_TASK_ALWAYS_EAGER, SQLQ_TASK_EAGER_PROPAGATES); unset them for this test"
            )
        yield app
    finally:
        conf.task_always_eager, conf.task_eager_propagates = before


# --- running what is queued ---------------------------------------------------------------------

@functools.cache
def _drain_worker_class() -> type[Worker]:
    """A burst worker that also notes which jobs it brought to an end (made on first use, so that
    loading the plugin imports no worker code)."""
    from .store import ClaimedJob, Interrupted, RetryRequest
    from .worker.execution import Result
    from .worker.worker import Worker

    class DrainWorker(Worker):
        def __init__(self, app: App, **options: Any):
            self.finished: list[ClaimedJob] = []
            super().__init__(app, burst=True, **options)

        def _on_result(self, job: ClaimedJob, result: Result) -> None:
            if not isinstance(result, RetryRequest | Interrupted):  # those run again (or wait)
                self.finished.append(job)
            super()._on_result(job, result)

    return DrainWorker


def _queues_with_work(app: App, *, scheduled: bool) -> list[str]:
    with app.connection() as conn:
        depths = app.store.queue_depths(conn)
    return [d.queue for d in depths if d.waiting or (scheduled and d.scheduled)]


def drain(app: App, queues: Sequence[str] | None = None, *, timeout: float = 60.0, pool: str = "solo",
          concurrency: int | None = None) -> list[AsyncResult]:
    """Run every job of ``app`` that is due now, in this process, and return their outcomes.

    A burst worker (``sqlq worker --burst``: claim, run, record, exit when nothing is due) runs
    here, with the ``solo`` pool by default (one job at a time, in this thread: deterministic, and a
    task's errors show in this test's log) or ``pool="threads"``. Jobs those jobs enqueue run too
    when they are due now; jobs waiting for a countdown, an eta or a retry delay are left waiting.
    ``queues=None`` means every queue holding work (rounds repeat while any queue has jobs waiting,
    so a task that enqueues on another queue is followed there too).

    Returns one ``AsyncResult`` per job that reached a final state, in the order they finished (a
    job retried and then finished appears once); each is ready (``state``, ``result``, ``get()``).
    Raises ``sqlq.errors.TimeoutError`` when jobs keep coming after ``timeout`` seconds (a task
    that enqueues itself forever): the worker then stops claiming and the job running at that
    moment finishes first."""
    from .errors import TimeoutError as SqlqTimeoutError
    from .result import AsyncResult

    deadline = time.monotonic() + timeout
    finished: dict[str, AsyncResult] = {}
    first = True
    while True:
        names = list(queues) if queues is not None else _queues_with_work(app, scheduled=first)
        if not names:
            break
        options: dict[str, Any] = {"queues": names, "pool": pool}
        if concurrency is not None:
            options["concurrency"] = concurrency
        worker = _drain_worker_class()(app, **options)
        expired = threading.Event()

        def stop(worker: Worker = worker, expired: threading.Event = expired) -> None:
            expired.set()
            worker.stop()

        timer = threading.Timer(max(deadline - time.monotonic(), 0.0), stop)
        timer.daemon = True
        timer.start()
        try:
            worker.run()
        finally:
            timer.cancel()
        for job in worker.finished:  # type: ignore[attr-defined]  # (DrainWorker's)
            finished.pop(job.id, None)
            finished[job.id] = AsyncResult(job.id, app, job.task)
        if expired.is_set():
            raise SqlqTimeoutError(
                f"drain() did not finish within {timeout} s ({len(finished)} job(s) finished); a task may "
                f"be enqueueing work for ever, or pass a longer timeout="
            )
        if queues is not None or not _queues_with_work(app, scheduled=False):
            break
        first = False
    return list(finished.values())


# --- what is waiting ----------------------------------------------------------------------------

class EnqueuedJob(NamedTuple):
    """A job that has not started, its arguments decoded (what ``assert_enqueued`` returns)."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    state: str  # available (due now) | scheduled (countdown, eta, retry)
    run_at: dt.datetime
    retries: int
    headers: dict[str, Any]


def enqueued(task_or_name: Task | str, *, app: App | None = None) -> list[EnqueuedJob]:
    """The jobs of a task that have not started yet, oldest first, with their arguments decoded."""
    from . import serialization

    name, app = _name_and_app(task_or_name, app)
    accept = app.conf.accept_content
    with app.connection() as conn:
        rows = app.store.waiting_jobs(conn, name)
    jobs = []
    for row in rows:
        args, kwargs = serialization.decode_call(row.content_type, row.args, row.kwargs, row.payload, accept)
        jobs.append(EnqueuedJob(id=row.id, task=row.task, args=args, kwargs=kwargs, queue=row.queue,
                                priority=row.priority, state=row.state, run_at=row.run_at, retries=row.retries,
                                headers=serialization.json_loads(row.headers) if row.headers else {}))
    return jobs


def assert_enqueued(task_or_name: Task | str, args: Sequence[Any] = _ANY, kwargs: Mapping[str, Any] = _ANY, *,
                    count: int | None = None, app: App | None = None) -> list[EnqueuedJob]:
    """Assert that jobs of this task wait in the table (not started yet), and return them.

    ``args``/``kwargs``, when given, must equal the job's as the worker would receive them: both
    sides make the serializer's round trip first, so ``(1, 2)`` matches ``[1, 2]``. ``count=None``
    wants at least one matching job, ``count=N`` exactly N (``count=0``: none). The app is ``app=``,
    else the task's, else the current app. On failure the message lists the task's waiting jobs."""
    from . import serialization

    name, app = _name_and_app(task_or_name, app)
    if count is not None and (not isinstance(count, int) or count < 0):
        raise ValueError(f"count must be None or a whole number from 0, got {count!r}")
    want_args = want_kwargs = _ANY
    if args is not _ANY or kwargs is not _ANY:
        encoded = serialization.encode_call(list(args) if args is not _ANY else [],
                                            dict(kwargs) if kwargs is not _ANY else {}, "json")
        decoded_args, decoded_kwargs = serialization.decode_call(*encoded, ["json"])
        want_args = decoded_args if args is not _ANY else _ANY
        want_kwargs = decoded_kwargs if kwargs is not _ANY else _ANY
    jobs = enqueued(name, app=app)
    matching = [j for j in jobs if (want_args is _ANY or j.args == want_args)
                and (want_kwargs is _ANY or j.kwargs == want_kwargs)]
    if (count is None and matching) or (count is not None and len(matching) == count):
        return matching
    call = ", ".join(part for part in (
        f"args={list(want_args)!r}" if want_args is not _ANY else "",
        f"kwargs={want_kwargs!r}" if want_kwargs is not _ANY else "") if part)
    wanted = "at least one" if count is None else f"exactly {count}"
    listing = "".join(f"\n  {j.task}(args={j.args!r}, kwargs={j.kwargs!r}) queue={j.queue} state={j.state}"
                      for j in jobs[:20])
    more = f"\n  ... and {len(jobs) - 20} more" if len(jobs) > 20 else ""
    raise AssertionError(
        f"expected {wanted} waiting job(s) of {name}{f' with {call}' if call else ''}, found {len(matching)}; "
        f"waiting jobs of {name} (schema {app.conf.schema}): {listing or 'none'}{more}"
    )


def _name_and_app(task_or_name: Task | str, app: App | None) -> tuple[str, App]:
    from .names import validate_task_name
    from .task import Task

    if isinstance(task_or_name, Task):
        return task_or_name.name, app or task_or_name.app
    if not isinstance(task_or_name, str):
        raise TypeError(f"expected a task or a task name, got {type(task_or_name).__name__}")
    if app is None:
        from .current import get_current_app

        app = get_current_app()
    return validate_task_name(task_or_name), app


# --- fixtures -----------------------------------------------------------------------------------

#: The marker of one test's settings for ``sqlq_app`` (Celery's ``celery`` marker).
MARKER = "sqlq"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``sqlq`` marker, so ``--strict-markers`` accepts it and ``pytest --markers``
    describes it (as celery.contrib.pytest registers ``celery``)."""
    config.addinivalue_line("markers", f"{MARKER}(**settings): settings of sqlq_app for this test, "
                                       f"merged over the sqlq_config fixture")


@contextlib.contextmanager
def worker_logging(level: str = "info") -> Iterator[None]:
    """The ``sqlq`` logger set up as ``sqlq worker`` sets it up (``sqlq.cli.setup_logging``: its
    handler and format on stderr, ``setup_logging`` signals honoured) for the ``with`` block, then
    put back: set-up replaces the logger's handlers and stops its propagation, which would hide the
    records from pytest's ``caplog`` in every later test of the session."""
    import logging

    from .cli import setup_logging

    logger = logging.getLogger("sqlq")
    handlers, saved_level, propagate = list(logger.handlers), logger.level, logger.propagate
    setup_logging(level)
    ours = [h for h in logger.handlers if h not in handlers]
    try:
        yield
    finally:
        # handler by handler, not the whole list: pytest attaches its capture handlers to a logger
        # that does not propagate (this one, now) for each phase and detaches them itself
        for handler in ours:
            logger.removeHandler(handler)
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(saved_level)
        logger.propagate = propagate

@pytest.fixture(scope="session")
def sqlq_database_url() -> str:
    """The test database's URL (``sqlq.testing.database_url()``), looked up once per session."""
    return database_url()


@pytest.fixture
def sqlq_config() -> Mapping[str, Any]:
    """Override to configure ``sqlq_app``: a dict of settings (``{"task_routes": ...}``)."""
    return {}


@pytest.fixture
def sqlq_includes() -> Sequence[str]:
    """Override to import modules (tasks, signal handlers) once ``sqlq_app`` exists and is current."""
    return ()


@pytest.fixture
def sqlq_worker_parameters() -> Mapping[str, Any]:
    """Override to pass ``Worker`` keyword arguments to ``sqlq_worker`` (``pool``, ``concurrency``,
    ``queues``, and Celery's ``exclude_queues``, ``shutdown_timeout``, ``without_*``)."""
    return {}


@pytest.fixture
def sqlq_parameters() -> Mapping[str, Any]:
    """Override to pass ``App`` constructor arguments to ``sqlq_app`` (``task_cls=``, ``include=``,
    ``autofinalize=``, ...; Celery's ``celery_parameters``). Settings go in ``sqlq_config``."""
    return {}


@pytest.fixture
def sqlq_worker_pool() -> str:
    """Override to choose ``sqlq_worker``'s pool (Celery's ``celery_worker_pool``). ``threads`` by
    default, where Celery's is ``solo``: sqlq's solo worker runs tasks in its consumer thread, so one
    slow task would hold back the claims of a test that waits on two results. ``prefork`` works with
    an app its children can import by module name: override ``sqlq_app`` to yield your project's app
    through ``on_test_schema`` (the default ``sqlq_app`` makes its app inside the fixture, and
    ``sqlq_worker`` says so)."""
    return "threads"


@pytest.fixture
def sqlq_enable_logging() -> bool:
    """Override to return True and ``sqlq_worker`` logs as ``sqlq worker`` does (its format on
    stderr; ``worker_logging``) for the test (Celery's ``celery_enable_logging``). Off by default, so
    the records reach pytest's own capture (``caplog``) instead."""
    return False


@pytest.fixture
def use_sqlq_app_trap() -> bool:
    """Override to return True and, in tests that use ``sqlq_app``, using the current app
    (``current_app``, ``AsyncResult(id)`` without an app, a ``shared_task``) raises ``RuntimeError``,
    so code that should be given its app cannot fall back on the current one (Celery's
    ``use_celery_app_trap``); ``depends_on_current_app`` lifts it for one test."""
    return False


@pytest.fixture
def sqlq_app(request: pytest.FixtureRequest, sqlq_config: Mapping[str, Any], sqlq_parameters: Mapping[str, Any],
             sqlq_includes: Sequence[str], sqlq_database_url: str, use_sqlq_app_trap: bool) -> Iterator[App]:
    """A fresh ``App`` on a fresh, migrated schema of the test database, current for the test
    (unless ``use_sqlq_app_trap``): made with ``sqlq_parameters`` and the settings of
    ``sqlq_config`` updated by the test's ``sqlq`` marker (``@pytest.mark.sqlq(result_expires=60)``)."""
    from . import current
    from .app import App

    mark = request.node.get_closest_marker(MARKER)
    if mark is not None and mark.args:
        raise TypeError(f"@pytest.mark.{MARKER} takes settings as keyword arguments, got {mark.args!r}")
    settings = {**dict(sqlq_config), **(mark.kwargs if mark is not None else {})}
    parameters = dict(sqlq_parameters)
    both = sorted(set(parameters) & set(settings))
    if both:
        raise TypeError(f"sqlq_parameters and the settings (sqlq_config, @pytest.mark.{MARKER}) both give "
                        f"{', '.join(both)}; give each in one place")
    previous = current._current
    app = App(parameters.pop("main", "sqlq_test"), **parameters, **settings)
    try:
        with on_test_schema(app, sqlq_database_url):
            for module in sqlq_includes:
                importlib.import_module(module)
            with current.trapped() if use_sqlq_app_trap else contextlib.nullcontext():
                yield app
    finally:
        if previous is not None:
            current.set_current_app(previous)


@pytest.fixture
def sqlq_worker(sqlq_app: App, sqlq_worker_parameters: Mapping[str, Any], sqlq_worker_pool: str,
                sqlq_enable_logging: bool) -> Iterator[Worker]:
    """A real worker (``sqlq_worker_pool``, 2 slots) for ``sqlq_app`` in a thread, ready when the
    test starts and stopped (warm: running jobs finish) when it ends; logging as ``sqlq worker``
    does when ``sqlq_enable_logging``. A ``pool`` in ``sqlq_worker_parameters`` wins."""
    options = {"pool": sqlq_worker_pool, "concurrency": 2, **sqlq_worker_parameters}
    if options["pool"] == "prefork":
        _check_prefork_app(sqlq_app)
    with contextlib.ExitStack() as stack:
        if sqlq_enable_logging:
            stack.enter_context(worker_logging())
        yield stack.enter_context(running_worker(sqlq_app, **options))


def _check_prefork_app(app: App) -> None:
    """A prefork worker's children import the app by its module name: say how to get one when
    ``app`` is not found at module level of an imported module (the default ``sqlq_app``'s is not)."""
    from .errors import ConfigurationError
    from .loading import app_path

    if app_path(app) is not None:
        return
    raise ConfigurationError(
        f"sqlq_worker with the prefork pool: its child processes import the app by its module name, and "
        f"the app {app.main!r} is not found at module level of any imported module (the default sqlq_app "
        f"makes its app inside the fixture). Override sqlq_app with your project's app on the test schema "
        f"(@pytest.fixture\ndef sqlq_app():\n    with on_test_schema(proj.celery.app) as app:\n        yield app), "
        f"or use sqlq_worker_pool 'threads'")


@pytest.fixture
def depends_on_current_app(sqlq_app: App) -> Iterator[App]:
    """``sqlq_app`` as the current app for the test (Celery's ``depends_on_current_app``): what
    ``shared_task``, ``current_app`` and ``AsyncResult(id)`` without an app use. The app current
    before is current again afterwards, so a test that replaced it meanwhile does not leak it."""
    from . import current

    with current._lock:
        previous = current._current
    current.set_current_app(sqlq_app)
    try:
        yield sqlq_app
    finally:
        with current._lock:
            current._current = previous


@pytest.fixture
def sqlq_eager() -> Iterator[App]:
    """``task_always_eager`` and ``task_eager_propagates`` on the current app for this test (no
    database needed); yields that app."""
    from .current import get_current_app

    with eager(get_current_app()) as app:
        yield app


@contextlib.contextmanager
def running_worker(app: App, *, ready_timeout: float = 60.0, **options: Any) -> Iterator[Worker]:
    """A ``Worker(app, **options)`` running in a thread for the ``with`` block (what ``sqlq_worker``
    uses): entered once the worker is ready, left once it has stopped."""
    from . import signals
    from .worker.worker import Worker

    worker = Worker(app, **options)
    ready = threading.Event()
    failed: list[BaseException] = []

    def on_ready(sender: Any = None, **_: Any) -> None:
        if sender is worker:
            ready.set()

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            failed.append(exc)
        finally:
            ready.set()

    signals.worker_ready.connect(on_ready)
    thread = threading.Thread(target=run, name="sqlq-test-worker", daemon=True)
    thread.start()
    try:
        if not ready.wait(ready_timeout):
            raise RuntimeError(f"sqlq.testing: the worker was not ready within {ready_timeout} s")
        if failed:
            raise failed[0]
        yield worker
    finally:
        signals.worker_ready.disconnect(on_ready)
        worker.stop()
        thread.join(worker.shutdown_grace + 10)
        if thread.is_alive():
            worker.stop(cold=True)
            thread.join(30)
    if failed:
        raise failed[0]
