"""``AsyncResult``: a handle on one job, read from the tables, woken by NOTIFY.

States use Celery's names so user code carries over: PENDING (waiting, scheduled, or unknown id),
STARTED, RETRY (waiting to run again), then one of SUCCESS, FAILURE, REVOKED, EXPIRED.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import serialization, signals
from .errors import TaskError, TaskExpiredError, TaskRevokedError
from .errors import TimeoutError as SqlqTimeoutError
from .task import _current_request, task_uuid

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from .app import App
    from .store import JobState

READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED", "EXPIRED"})
#: The longest a waiter sleeps between checks if no notification arrives (notifications can be lost).
SAFETY_POLL = 2.0


def rebuild_exception(exc_type: str | None, message: str | None, traceback: str | None,
                      args: Sequence[Any] | None = None) -> BaseException:
    """The task's own exception type where this process already has it, else a TaskError carrying
    the remote type name, message and traceback.

    ``args``, the exception's arguments as the worker stored them (``failure_args``), rebuild it as
    ``cls(*args)``: ``HttpError(404)`` comes back with ``status_code == 404``, as in Celery, whose
    backends keep the args tuple. Without them (a row written before, args that did not encode), or
    when the constructor refuses them, ``cls(message)``; then TaskError.

    "Already has": a builtin, or a class of a module already imported here (``sys.modules``; sqlq's
    errors always are). Nothing is imported: ``exc_type`` is text from a row, which anyone who can
    write the table (or a task raising a class whose ``__module__`` was set) controls, and importing
    the module it names would run that module's code in the client."""
    name = exc_type or "Exception"
    module_name, _, qualname = name.rpartition(".")
    cls: Any = sys.modules.get(module_name) if module_name else builtins
    for part in qualname.split("."):
        cls = getattr(cls, part, None) if cls is not None and not part.startswith("_") else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        attempts: list[tuple[Any, ...]] = [] if args is None else [tuple(args)]
        attempts.append((message,) if message is not None else ())
        for call_args in attempts:
            with contextlib.suppress(Exception):  # a constructor that wants other arguments: fall through
                exc = cls(*call_args)
                exc.remote_traceback = traceback  # type: ignore[attr-defined]
                return exc
    return TaskError(name, message or "", traceback)


def failure_args(row: JobState, accept_content: Iterable[str]) -> list[Any] | None:
    """The exception arguments a FAILURE row keeps in its ``result`` column (written by
    ``sqlq.worker.execution.failure`` with the job's result serializer), or None: an older row, args
    that did not encode, a content type this app does not accept, or anything but a list there."""
    if row.result is None and row.result_payload is None:
        return None
    try:
        if row.result_content_type is None or row.result_content_type == serialization.JSON:
            value = serialization.json_loads(row.result)
        else:
            value = serialization.decode(row.result_content_type, None, row.result_payload, accept_content)
    except Exception:  # noqa: BLE001 - undecodable args only cost the rebuilt exception its arguments
        return None
    return value if isinstance(value, list) else None


#: Celery's words (celery.result.assert_will_not_block), so a search for them finds the same advice.
E_WOULDBLOCK = ("Never call result.get() within a task! See "
                "https://docs.celeryq.dev/en/latest/userguide/tasks.html#avoid-launching-synchronous-subtasks")


def assert_will_not_block() -> None:
    """RuntimeError (E_WOULDBLOCK) when called inside a task a worker is running: ``get()`` there
    would hold the worker's slot until another job finishes, and enough such waits deadlock it."""
    request = _current_request.get(None)
    if request is not None and not request.is_eager:
        raise RuntimeError(E_WOULDBLOCK)


def _row_id(task_id: str) -> str:
    """The row id of the job with task id ``task_id``: the UUID itself, or for any other string
    the uuid5 its job was written under (``sqlq.task.task_uuid``), so any id finds its job and none
    reaches PostgreSQL as a malformed uuid."""
    return task_uuid(task_id)


class AsyncResult:
    """The result of one job. Every property reads the current state from the database."""

    # Slots: a bulk enqueue makes one of these per job (10,000 dicts cost ~10 ms, most of it GC).
    __slots__ = ("id", "app", "task_name", "_cache")

    def __init__(self, id: str, app: App | None = None, task_name: str | None = None):
        # Any string is a task id, as in Celery: one that is not a UUID is looked up by its
        # row's uuid5 (sqlq.task.task_uuid).
        # Without an app, the current app's (sqlq.current), as Celery's AsyncResult(id) does.
        self.id = str(id)
        if app is None:
            from .current import get_current_app

            app = get_current_app()
        self.app = app
        self.task_name = task_name
        self._cache: JobState | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def task_id(self) -> str:
        """Celery's other name for ``id``."""
        return self.id

    # reading -----------------------------------------------------------------------------------

    def _row(self) -> JobState | None:
        if self._cache is not None:
            return self._cache
        with self.app.connection() as conn:
            row = self.app.store.fetch_state(conn, _row_id(self.id))
        if row is not None and row.state in READY_STATES:
            self._cache = row  # final rows never change (until forget)
        return row

    @property
    def state(self) -> str:
        """Celery's state name. A running job reads STARTED, or PENDING when its task (or, for a task
        this app does not have, ``conf.task_track_started``) does not track starts, as in Celery."""
        row = self._row()
        if row is None:
            return "PENDING"
        if row.state == "STARTED" and not self._tracks_started(row.task):
            return "PENDING"
        return row.state

    def _tracks_started(self, task_name: str) -> bool:
        task = self.app.tasks.get(task_name)
        tracked = task.track_started if task is not None else None
        return bool(self.app.conf.task_track_started if tracked is None else tracked)

    status = state

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == "SUCCESS"

    def failed(self) -> bool:
        return self.state == "FAILURE"

    @property
    def result(self) -> Any:
        """The return value on SUCCESS, the exception on FAILURE (and, while a job waits to run again,
        the one its last attempt raised: RETRY), else None (Celery's meaning)."""
        row = self._row()
        if row is None:
            return None
        return self._value(row)

    info = result

    @property
    def traceback(self) -> str | None:
        row = self._row()
        return row.traceback if row else None

    @property
    def date_done(self) -> dt.datetime | None:
        row = self._row()
        return row.finished_at if row else None

    @property
    def retries(self) -> int:
        row = self._row()
        return row.retries if row else 0

    def _value(self, row: JobState) -> Any:
        state = row.state
        if state == "SUCCESS":
            if row.result_content_type is None or row.result_content_type == serialization.JSON:
                return serialization.json_loads(row.result) if row.result is not None else None
            return serialization.decode(row.result_content_type, None, row.result_payload,
                                        self.app.conf.accept_content)
        if state == "FAILURE":
            return rebuild_exception(row.exc_type, row.exc_message, row.traceback,
                                     failure_args(row, self.app.conf.accept_content))
        if state == "REVOKED":
            return TaskRevokedError(f"task {self.id} was revoked before it ran")
        if state == "EXPIRED":
            return TaskExpiredError(f"task {self.id} expired before a worker started it, so it never ran")
        if state == "RETRY" and row.exc_message:
            # what the last attempt raised, kept on the job as "type: message" (Celery's RETRY result
            # is that exception); its traceback is not kept
            exc_type, _, message = row.exc_message.partition(": ")
            return rebuild_exception(exc_type, message, None)
        return None

    def _outcome(self, row: JobState, propagate: bool) -> Any:
        value = self._value(row)
        if propagate and row.state != "SUCCESS" and isinstance(value, BaseException):
            raise value
        return value

    # waiting -----------------------------------------------------------------------------------

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float | None = None,
            disable_sync_subtasks: bool = True) -> Any:
        """Wait for the outcome; re-raise the task's exception when ``propagate``.

        Waiting is woken by the FINISH statement's NOTIFY; ``interval`` (default 2 s) only bounds
        how long a lost notification can delay us.

        ``disable_sync_subtasks`` (Celery's, default True): inside a task a worker is running, this
        raises RuntimeError instead of waiting, because a task blocking on another task's result
        holds its worker slot while it waits, and enough of them deadlock the pool. Pass False to
        wait anyway (the task's own risk, as in Celery). An eager task is not stopped: its subtask
        ran already (Celery does the same).
        """
        if disable_sync_subtasks:
            assert_will_not_block()
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = self.app.result_waiter()
        event = threading.Event()
        waiter.register(_row_id(self.id), event.set)
        try:
            while True:
                event.clear()
                row = self._row()
                if row is not None and row.state in READY_STATES:
                    return self._outcome(row, propagate)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SqlqTimeoutError(self._timeout_message(timeout))
                step = interval or SAFETY_POLL
                event.wait(step if remaining is None else min(step, remaining))
        finally:
            waiter.unregister(_row_id(self.id), event.set)

    wait = get

    async def aget(self, timeout: float | None = None, propagate: bool = True,
                   interval: float | None = None) -> Any:
        """``get()`` for asyncio apps, never blocking the loop.

        Woken through the app's one LISTEN connection (the same that serves ``get()``), and reading
        the state on the app's async pool: any number of concurrent awaits holds a few connections,
        not one each."""
        deadline = None if timeout is None else time.monotonic() + timeout
        step = interval or SAFETY_POLL
        waiter = await asyncio.to_thread(self.app.result_waiter)  # the first call connects and LISTENs
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:  # runs on the listener thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(event.set)

        waiter.register(_row_id(self.id), wake)
        try:
            while True:
                event.clear()
                row = await self._arow()
                if row is not None and row.state in READY_STATES:
                    return self._outcome(row, propagate)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SqlqTimeoutError(self._timeout_message(timeout))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), step if remaining is None else min(step, remaining))
        finally:
            waiter.unregister(_row_id(self.id), wake)

    async def _arow(self) -> JobState | None:
        """``_row`` on the app's async pool."""
        if self._cache is not None:
            return self._cache
        async with self.app._async_pool().connection() as conn:
            row = await self.app.store.afetch_state(conn, _row_id(self.id))
        if row is not None and row.state in READY_STATES:
            self._cache = row
        return row

    def _timeout_message(self, timeout: float | None) -> str:
        name = f" ({self.task_name})" if self.task_name else ""
        return (f"task {self.id}{name} did not finish within {timeout} s (state {self.state}); "
                f"is a worker running for its queue? Try `sqlq queues` and `sqlq worker`")

    # acting ------------------------------------------------------------------------------------

    def forget(self) -> None:
        """Delete the stored outcome (the job itself is not affected)."""
        with self.app.connection() as conn:
            self.app.store.forget(conn, _row_id(self.id))
        self._cache = None

    def revoke(self) -> bool:
        """Cancel the job if it has not started; it ends as REVOKED. Returns whether it was revoked."""
        with self.app.connection() as conn:
            revoked = self.app.store.revoke(conn, [_row_id(self.id)]) > 0
        if revoked and signals.task_revoked.has_receivers:
            signals.send_revoked(self.app, [self.id], self.task_name)
        return revoked



class GroupResult:
    """The jobs one publish created when it reached several queues (a fanout exchange, or a routing
    key several bindings match). Each job has its own id; all share ``group_id`` = ``self.id``.

    ``results`` (alias ``children``) holds one ``AsyncResult`` per job, in the order of ``queues``.
    ``get()`` waits for all of them and returns their values in that order.
    """

    def __init__(self, id: str | None, results: list[AsyncResult], app: App, queues: list[str] | None = None):
        self.id = id
        self.results = results
        self.app = app
        self.queues = queues

    @property
    def children(self) -> list[AsyncResult]:
        return self.results

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def completed_count(self) -> int:
        return sum(r.successful() for r in self.results)

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float | None = None,
            disable_sync_subtasks: bool = True) -> list[Any]:
        """Every job's value; ``timeout`` bounds the whole wait, not each job's.
        ``disable_sync_subtasks`` as ``AsyncResult.get``'s (checked before the first wait)."""
        if disable_sync_subtasks:
            assert_will_not_block()
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for r in self.results:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            values.append(r.get(timeout=remaining, propagate=propagate, interval=interval,
                                disable_sync_subtasks=disable_sync_subtasks))
        return values

    join = get

    def revoke(self) -> int:
        """Revoke the jobs that have not started; returns how many were."""
        if signals.task_revoked.has_receivers:  # one by one, to signal those that were revoked
            return sum(r.revoke() for r in self.results)
        with self.app.connection() as conn:
            return self.app.store.revoke(conn, [_row_id(r.id) for r in self.results])
