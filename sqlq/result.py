"""``AsyncResult``: a handle on one job, read from the tables, woken by NOTIFY.

States use Celery's names so user code carries over: PENDING (waiting, scheduled, or unknown id),
STARTED, RETRY (waiting to run again), then one of SUCCESS, FAILURE, REVOKED, EXPIRED. A running
task may report a state of its own with ``update_state`` (``PROGRESS``, or any name but the
outcomes'), read with its meta as ``info``/``result`` until the outcome replaces it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar, Generic

from typing_extensions import TypeVar

from . import serialization, signals
from .errors import (
    ConfigurationError,
    IncompleteStream,
    SerializationError,
    TaskError,
    TaskExpiredError,
    TaskRevokedError,
)
from .errors import TimeoutError as SqlqTimeoutError
from .task import _current_request, task_uuid

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from .app import App
    from .store import JobState

READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED", "EXPIRED"})
#: States ``update_state`` refuses: the outcomes are the worker's to record (a task that reports
#: SUCCESS and then fails would be both), and PENDING/RETRY describe a job that is not running.
RESERVED_STATES = READY_STATES | {"PENDING", "RETRY"}
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


#: What the job's task returns (``AsyncResult[R]``: ``get()`` is an ``R``); ``Any`` by default.
R = TypeVar("R", default=Any)


class AsyncResult(Generic[R]):
    """The result of one job. Every property reads the current state from the database."""

    # Slots: a bulk enqueue makes one of these per job (10,000 dicts cost ~10 ms, most of it GC).
    # ``_parent`` and ``_workflow`` are set only on the handle a workflow's send returns (left unset
    # otherwise, so a plain handle costs nothing more to make).
    __slots__ = ("id", "app", "task_name", "_cache", "_parent", "_workflow")
    #: Whether the outcome is held in this object rather than read from the database
    #: (``EagerResult``): a GroupResult asks such members themselves instead of querying.
    _local: ClassVar[bool] = False

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
        return self._state_of(self._row())

    def _state_of(self, row: JobState | None) -> str:
        """The state ``row`` (this job's, as FETCH_STATE or GROUP_STATES read it) means here."""
        if row is None:
            return "PENDING"
        if row.state == "STARTED" and row.result is None and not self._tracks_started(row.task):
            return "PENDING"  # (a STARTED the task reported itself, with meta, is shown as it is)
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
            if row.exc_type == "sqlq.errors.Ignore":  # (Celery stores nothing for a task that raised Ignore)
                return TaskRevokedError(f"task {self.id} ended without an outcome: {row.exc_message}")
            return TaskRevokedError(f"task {self.id} was revoked before it ran")
        if state == "EXPIRED":
            return TaskExpiredError(f"task {self.id} expired before a worker started it, so it never ran")
        if state == "RETRY" and row.exc_message:
            # what the last attempt raised, kept on the job as "type: message" (Celery's RETRY result
            # is that exception), with that attempt's traceback
            exc_type, _, message = row.exc_message.partition(": ")
            return rebuild_exception(exc_type, message, row.traceback)
        if row.result is not None:  # a running job's update_state meta: Celery's result of a custom state
            return serialization.json_loads(row.result)
        if state == "STARTED" and row.worker_pid is not None and self._tracks_started(row.task):
            return {"pid": row.worker_pid, "hostname": row.worker_hostname}  # Celery's info of a started task
        return None

    def _outcome(self, row: JobState, propagate: bool) -> R:
        """The value ``get()`` returns: the task's return value (an ``R``), or with ``propagate``
        off the exception a failed job raised (what Celery's ``get(propagate=False)`` returns)."""
        value = self._value(row)
        if propagate and row.state != "SUCCESS" and isinstance(value, BaseException):
            raise value
        outcome: R = value
        return outcome

    # waiting -----------------------------------------------------------------------------------

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float | None = None,
            disable_sync_subtasks: bool = True) -> R:
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
                   interval: float | None = None) -> R:
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

    # workflows ---------------------------------------------------------------------------------

    @property
    def parent(self) -> AsyncResult | GroupResult | None:
        """The result whose outcome (or run) sent this job: a chain's previous step, a chord body's
        header (a GroupResult), the task that sent this one; None for a job nothing sent. The
        handle a workflow's send returns knows its parents already (Celery's shape, before any step
        ran); any other handle reads ``parent_id`` from the tables."""
        known = getattr(self, "_parent", None)
        if known is not None:
            return known  # type: ignore[no-any-return]
        with self.app.connection() as conn:
            found = self.app.store.workflow_parent(conn, _row_id(self.id))
        if found is None:
            return None
        if found.is_group:
            return GroupResult.restore(found.parent_id, app=self.app)
        return AsyncResult(found.parent_id, self.app)

    @parent.setter
    def parent(self, value: AsyncResult | GroupResult | None) -> None:
        self._parent = value

    @property
    def children(self) -> list[AsyncResult]:
        """The jobs this one sent, finished or not, in the order they were enqueued: a chain's next
        step, its callbacks, the tasks it sent while running (read from ``parent_id``)."""
        with self.app.connection() as conn:
            rows = self.app.store.workflow_children(conn, _row_id(self.id))
        return [AsyncResult(row.id, self.app, row.task) for row in rows]

    def iterdeps(self, intermediate: bool = False) -> Iterator[tuple[AsyncResult | None, AsyncResult]]:
        """(parent, result) for this result and every descendant, breadth first (Celery's). A
        descendant not finished yet raises ``IncompleteStream`` unless ``intermediate``."""
        from collections import deque

        stack: deque[tuple[AsyncResult | None, AsyncResult]] = deque([(None, self)])
        while stack:
            parent, node = stack.popleft()
            yield parent, node
            if node.ready():
                stack.extend((node, child) for child in node.children)
            elif not intermediate:
                raise IncompleteStream(f"task {node.id} has not finished, so its children are not known yet")

    def collect(self, intermediate: bool = False, **kwargs: Any) -> Iterator[tuple[AsyncResult, Any]]:
        """(result, value) for this result and every job it led to, breadth first: Celery's
        ``collect()``; ``kwargs`` go to each ``get()``."""
        for _, node in self.iterdeps(intermediate=intermediate):
            yield node, node.get(**kwargs)

    def _revocable(self) -> list[str]:
        """This job's row id and, for the handle of a workflow's send, every id that workflow
        pre-assigned (the pending steps), walking the known parents too."""
        ids = [_row_id(self.id)]
        ids.extend(getattr(self, "_workflow", None) or ())
        parent = getattr(self, "_parent", None)
        while parent is not None:
            if isinstance(parent, GroupResult):
                ids.extend(i for r in parent._leaves() if not r._local for i in r._revocable())
                break
            ids.extend(parent._revocable())
            parent = getattr(parent, "_parent", None)
        return list(dict.fromkeys(ids))

    # acting ------------------------------------------------------------------------------------

    def forget(self) -> None:
        """Delete the stored outcome (the job itself is not affected)."""
        with self.app.connection() as conn:
            self.app.store.forget(conn, _row_id(self.id))
        self._cache = None

    def revoke(self, terminate: bool = False, signal: str | int = "SIGTERM") -> bool:
        """Cancel the job if it has not started; it ends as REVOKED. Returns whether it was revoked.
        The id is kept in the revoked table for ``worker_revoke_expires`` seconds, so no worker runs
        it and a workflow step not enqueued yet is recorded REVOKED when its turn comes; the handle a
        workflow's send returns (a chain's, a chord's) revokes every step of it that has not started.
        With ``terminate``, the worker running it stops it (``signal``: see ``app.control.revoke``)
        and records it REVOKED."""
        ids = self._revocable()
        if terminate:
            return self.app.control.flag_revoked(ids, terminate=True, signal=signal, task_name=self.task_name,
                                                 notify=True) > 0
        with self.app.connection() as conn:
            revoked = self.app.store.revoke(conn, ids, expires=float(self.app.conf.worker_revoke_expires)) > 0
        if revoked and signals.task_revoked.has_receivers:
            signals.send_revoked(self.app, [self.id], self.task_name)
        return revoked



class GroupResult:
    """The results of a group of jobs sharing one ``group_id`` (``self.id``): Celery's GroupResult.

    Two things make one: ``sqlq.canvas.group(...).apply_async()`` (``results`` in the group's
    order), and a publish that reached several queues (a fanout exchange, or a routing key several
    bindings match; ``results`` in the order of ``queues``). A member may itself be a GroupResult
    (a group member that a fanout exchange copied to several queues).

    Every check reads all members in one statement (GROUP_STATES over ``id = ANY(...)``), never
    one query per member, and a member's final row is kept (it never changes until ``forget``), so
    polling a large group re-reads only the members that have not finished. ``get()`` is woken by
    the results channel's NOTIFY as ``AsyncResult.get()`` is.
    """

    def __init__(self, id: str | None, results: list[AsyncResult | GroupResult], app: App | None = None,
                 queues: list[str] | None = None):
        if app is None:  # as AsyncResult(id): the current app, as Celery's GroupResult(id, results) does
            from .current import get_current_app

            app = get_current_app()
        self.id = id
        self.results = list(results)
        self.app = app
        self.queues = queues
        #: The result before this group in a chain (Celery's ``GroupResult.parent``), when known.
        self.parent: AsyncResult | GroupResult | None = None

    @property
    def children(self) -> list[AsyncResult | GroupResult]:
        return self.results

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(str(r.id) for r in self.results)}]>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupResult) and other.id == self.id and other.results == self.results

    def __hash__(self) -> int:
        return hash((self.id, tuple(self.results)))

    def __iter__(self) -> Iterator[AsyncResult | GroupResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult | GroupResult:
        return self.results[index]

    # reading -----------------------------------------------------------------------------------

    def _leaves(self) -> list[AsyncResult]:
        """Every AsyncResult of the group, nested groups' included."""
        leaves: list[AsyncResult] = []
        for member in self.results:
            if isinstance(member, GroupResult):
                leaves.extend(member._leaves())
            else:
                leaves.append(member)
        return leaves

    def _rows(self) -> dict[str, JobState | None]:
        """Each database member's row by task id, read in one statement for those not final yet."""
        leaves = [r for r in self._leaves() if not r._local]
        unread = [r for r in leaves if r._cache is None]
        if unread:
            with self.app.connection() as conn:
                rows = self.app.store.group_states(conn, [_row_id(r.id) for r in unread])
            for r, row in zip(unread, rows, strict=True):
                if row is not None and row.state in READY_STATES:
                    r._cache = row
        else:
            rows = []
        fresh = {r.id: row for r, row in zip(unread, rows, strict=True)}
        return {r.id: r._cache if r._cache is not None else fresh.get(r.id) for r in leaves}

    def _statuses(self, rows: dict[str, JobState | None]) -> list[tuple[bool, bool, bool]]:
        """(ready, successful, failed) of each member, in order, from ``rows``."""
        statuses = []
        for member in self.results:
            if isinstance(member, GroupResult):
                inner = member._statuses(rows)
                statuses.append((all(s[0] for s in inner), all(s[1] for s in inner), any(s[2] for s in inner)))
            elif member._local:
                statuses.append((member.ready(), member.successful(), member.failed()))
            else:
                state = member._state_of(rows[member.id])
                statuses.append((state in READY_STATES, state == "SUCCESS", state == "FAILURE"))
        return statuses

    def ready(self) -> bool:
        """Whether every member has finished (whatever its outcome)."""
        return all(s[0] for s in self._statuses(self._rows()))

    def successful(self) -> bool:
        """Whether every member ended in SUCCESS."""
        return all(s[1] for s in self._statuses(self._rows()))

    def failed(self) -> bool:
        """Whether any member ended in FAILURE."""
        return any(s[2] for s in self._statuses(self._rows()))

    def waiting(self) -> bool:
        """Whether any member has not finished yet."""
        return not self.ready()

    def completed_count(self) -> int:
        """How many members ended in SUCCESS (Celery counts successes, not every finished member)."""
        return sum(s[1] for s in self._statuses(self._rows()))

    def _values(self, rows: dict[str, JobState | None], propagate: bool) -> tuple[bool, list[Any]]:
        """(whether the values are all there, the values in order so far). A failed member raises
        when ``propagate``, once every member before it has finished, as Celery's join does."""
        values: list[Any] = []
        for member in self.results:
            if isinstance(member, GroupResult):
                done, inner = member._values(rows, propagate)
                if not done:
                    return False, values
                values.append(inner)
            elif member._local:
                if not member.ready():
                    return False, values
                values.append(member.get(propagate=propagate))
            else:
                row = rows[member.id]
                if row is None or row.state not in READY_STATES:
                    return False, values
                values.append(member._outcome(row, propagate))
        return True, values

    # waiting -----------------------------------------------------------------------------------

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float | None = None,
            disable_sync_subtasks: bool = True) -> list[Any]:
        """Every member's value in the group's order; ``timeout`` bounds the whole wait, not each
        member's. With ``propagate`` the first failed member (in order) raises its exception.

        Each round reads the unfinished members in one statement; the wait between rounds is woken
        by any member's NOTIFY, ``interval`` (default 2 s) only bounds a lost notification's delay.
        ``disable_sync_subtasks`` as ``AsyncResult.get``'s (checked before the first wait)."""
        if disable_sync_subtasks:
            assert_will_not_block()
        deadline = None if timeout is None else time.monotonic() + timeout
        ids = [_row_id(r.id) for r in self._leaves() if not r._local]
        waiter = self.app.result_waiter() if ids else None
        event = threading.Event()
        for row_id in ids:
            waiter.register(row_id, event.set)  # type: ignore[union-attr]  # (set when ids)
        try:
            while True:
                event.clear()
                done, values = self._values(self._rows(), propagate)
                if done:
                    return values
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SqlqTimeoutError(
                        f"group {self.id} did not finish within {timeout} s ({self.completed_count()} of "
                        f"{len(self.results)} members succeeded); is a worker running for their queues? "
                        f"Try `sqlq queues` and `sqlq worker`")
                step = interval or SAFETY_POLL
                event.wait(step if remaining is None else min(step, remaining))
        finally:
            for row_id in ids:
                waiter.unregister(row_id, event.set)  # type: ignore[union-attr]

    join = get
    join_native = get

    # acting ------------------------------------------------------------------------------------

    def revoke(self) -> int:
        """Revoke the members that have not started; returns how many were."""
        leaves = [r for r in self._leaves() if not r._local]
        if signals.task_revoked.has_receivers:  # one by one, to signal those that were revoked
            return sum(r.revoke() for r in leaves)
        if not leaves:
            return 0
        with self.app.connection() as conn:
            return self.app.store.revoke(conn, list(dict.fromkeys(i for r in leaves for i in r._revocable())),
                                         expires=float(self.app.conf.worker_revoke_expires))

    def save(self) -> GroupResult:
        """Store the group's members (their task ids, in order) under its id, so that
        ``GroupResult.restore(id)`` in any process gets it back; saving again replaces them. Kept as
        long as results are (``result_expires``). A group with a nested group (a member a fanout
        exchange copied) cannot be saved: its shape would not survive a list of ids."""
        if self.id is None:
            raise ConfigurationError("this GroupResult has no id, so it cannot be saved")
        if any(isinstance(r, GroupResult) for r in self.results):
            raise ConfigurationError(
                f"group {self.id} has a nested group (a member routed to several queues); save() stores "
                f"a flat list of task ids, so save the nested GroupResult on its own")
        with self.app.connection() as conn:
            self.app.store.group_save(conn, _group_uuid(self.id), [str(r.id) for r in self.results])
        return self

    @classmethod
    def restore(cls, id: str, app: App | None = None, backend: Any = None) -> GroupResult | None:
        """The group ``save()`` stored under ``id``, or None when no group was saved under it (as
        Celery's restore returns None). ``backend`` is accepted for Celery's signature; the results
        are always in the app's database."""
        if app is None:
            from .current import get_current_app

            app = get_current_app()
        try:
            group_id = _group_uuid(id)
        except ConfigurationError:
            return None  # not a group id sqlq could have made, so never saved
        with app.connection() as conn:
            ids = app.store.group_restore(conn, group_id)
        if ids is None:
            return None
        return cls(str(id), [AsyncResult(i, app) for i in ids], app)

    def delete(self) -> None:
        """Celery's ``GroupResult.delete()``: forget the saved group, keep the members' outcomes."""
        if self.id is None:
            return
        with self.app.connection() as conn:
            self.app.store.group_forget(conn, _group_uuid(self.id), [])

    def forget(self) -> None:
        """Delete the saved group (if any) and every member's stored outcome, in one statement."""
        leaves = [r for r in self._leaves() if not r._local]
        with self.app.connection() as conn:
            self.app.store.group_forget(conn, None if self.id is None else _group_uuid(self.id),
                                        [_row_id(r.id) for r in leaves])
        for r in self._leaves():
            if r._local:
                r.forget()  # (an EagerResult drops the outcome it holds)
            else:
                r._cache = None


def _group_uuid(group_id: str) -> str:
    """A group id as the uuid its column holds; a ConfigurationError for anything else (group ids
    are made by ``group()`` or PUBLISH, always UUIDs)."""
    try:
        return str(uuid.UUID(str(group_id)))
    except ValueError:
        raise ConfigurationError(f"a group id is a UUID, got {group_id!r}") from None


def checked_progress(task_id: str, state: Any, meta: Any) -> str | None:
    """``update_state``'s state and meta checked, the meta as JSON text (None for no meta): a state
    is a non-empty string other than ``RESERVED_STATES``, the meta JSON-serializable (sqlq's tagged
    JSON: datetimes, UUIDs, Decimals come back as themselves)."""
    if not isinstance(state, str) or not state:
        raise ConfigurationError(f"update_state needs a state name (a non-empty string such as 'PROGRESS'), "
                                 f"got {state!r}")
    if state in RESERVED_STATES:
        raise ConfigurationError(
            f"update_state cannot set {state!r} on task {task_id}: the worker records SUCCESS, FAILURE and the "
            f"other outcomes itself, and PENDING/RETRY describe a job that is not running; use 'PROGRESS', "
            f"'STARTED' or a state name of your own")
    if meta is None:
        return None
    try:
        return serialization.json_dumps(meta)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"the meta of update_state({state!r}) for task {task_id} must be "
                                 f"JSON-serializable: {exc}") from None
