"""Eager mode: run a task call in this process, the way a worker would run its job, without a queue.

``Task.apply()`` runs here, and with ``task_always_eager`` so do ``delay()``/``apply_async()``; both
come to ``apply``. It is for tests and scripts, as in Celery, and it differs from a plain call
(``add(2, 2)``) in what makes a test worth having:

* the arguments make the trip a job's arguments make: encoded with the call's serializer and
  decoded with the app's ``accept_content``, exactly as ``delay()`` and the worker do, so the task
  sees what it would see in a worker (a tuple arrives as a list, a ``datetime`` as a ``datetime``)
  and an argument a worker could not receive raises here as ``delay()`` would;
* the return value is encoded with the result serializer and decoded again, so a value a worker
  could not store fails the call here too (FAILURE ``SerializationError``), unless the task
  ignores its result (then, as in Celery's eager mode, the value is kept as it is);
* ``self.request`` is set (``is_eager=True``), the ``task_prerun``/``postrun``/``success``/
  ``failure``/``retry`` signals are sent, and the task's hooks (``before_start``, ``on_success``,
  ``on_failure``, ``on_retry``, ``after_return``) are called with Celery's arguments;
* ``self.retry()`` and ``autoretry_for`` run the task again at once with ``retries + 1`` until it
  succeeds or its retries are used up (Celery's eager retry; countdowns are not waited).

Unique keys (``unique_key``, ``unique_on``) are derived and checked as ``delay()`` does. An eager
call has finished before the next one starts, so its key never blocks the next call as a waiting
job's would; a ``unique_for`` window is kept in the app's memory, and a call inside it gets the
earlier call's result (``'skip'`` and ``'replace'``: a finished holder cannot be replaced) or
``DuplicateJobError`` (``'error'``), as the database does.

Nothing is written to the database: an eager call needs no PostgreSQL. The exception is a
``transactional=True`` task, which gets a real connection because its body uses one: its writes
commit when it succeeds and roll back when it fails, and no outcome is recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime as dt
import logging
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from . import serialization, signals
from . import task as task_module
from .errors import (
    ConfigurationError,
    DuplicateJobError,
    Ignore,
    Reject,
    Retry,
    SerializationError,
    TaskRevokedError,
)
from .result import READY_STATES, AsyncResult, GroupResult
from .task import ExceptionInfo, Request, Task, _current_request, overridden_hooks

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("sqlq.eager")

#: The task hooks eager mode calls, with Celery's names.

#: Options of ``apply_async`` that mean something only where there is a queue and a clock to wait
#: on: accepted (a call written for a worker runs eagerly unchanged) and documented as having no
#: effect in eager mode, where the call runs now, here, once.
NO_EFFECT_OPTIONS = frozenset({
    "countdown", "eta", "expires", "exchange", "routing_key", "connection", "time_limit", "soft_time_limit",
    "retry", "retry_policy", "shadow", "add_to_parent", "ignore_result",
})
#: Options eager mode uses: ``serializer`` encodes the round trip, ``headers`` become
#: ``self.request.headers``, ``queue``/``priority`` say where the job would have gone
#: (``self.request.queue``/``.priority``).
USED_OPTIONS = frozenset({"serializer", "headers", "queue", "priority"})


def _known_options() -> frozenset[str]:
    # apply_async's options as this sqlq has them (the set may grow), plus the Celery ones above
    return task_module.APPLY_OPTIONS | NO_EFFECT_OPTIONS | USED_OPTIONS


class EagerResult(AsyncResult):
    """The outcome of a call run in this process (``Task.apply()``, or any send with
    ``task_always_eager``): Celery's ``EagerResult``. It holds the outcome itself, so nothing
    reads the database; an ``AsyncResult`` so code that takes one takes this too."""

    __slots__ = ("_state", "_held", "_traceback", "_date_done", "_retries")
    _local = True  # (a GroupResult asks it, not the database)

    def __init__(self, id: str, value: Any, state: str, *, app: App, task_name: str | None = None,
                 traceback: str | None = None, retries: int = 0):
        super().__init__(id, app, task_name)
        self._state = state
        self._held = value
        self._traceback = traceback
        self._retries = retries
        self._date_done: dt.datetime | None = dt.datetime.now(dt.UTC) if state in READY_STATES else None

    def __repr__(self) -> str:
        return f"<EagerResult: {self.id}>"

    @property
    def task_id(self) -> str:
        return self.id

    @property
    def name(self) -> str | None:
        return self.task_name

    @property
    def state(self) -> str:
        return self._state

    status = state

    @property
    def result(self) -> Any:
        """The return value on SUCCESS, the exception on FAILURE (Celery's meaning)."""
        return self._held

    info = result

    @property
    def traceback(self) -> str | None:
        return self._traceback

    @property
    def date_done(self) -> dt.datetime | None:
        return self._date_done

    @property
    def retries(self) -> int:
        return self._retries

    def ready(self) -> bool:
        return self._state in READY_STATES

    def successful(self) -> bool:
        return self._state == "SUCCESS"

    def failed(self) -> bool:
        return self._state == "FAILURE"

    def get(self, timeout: float | None = None, propagate: bool = True, interval: float | None = None,
            disable_sync_subtasks: bool = True) -> Any:
        """The outcome at once (the call has run): the return value, or the task's exception raised
        when ``propagate``. ``timeout``, ``interval`` and ``disable_sync_subtasks`` change nothing:
        there is nothing to wait for."""
        if propagate and self._state != "SUCCESS" and isinstance(self._held, BaseException):
            raise self._held
        return self._held

    wait = get

    async def aget(self, timeout: float | None = None, propagate: bool = True,
                   interval: float | None = None) -> Any:
        return self.get(timeout, propagate, interval)

    def forget(self) -> None:
        """Drop the outcome held here (nothing was stored): afterwards the result reads as an
        unknown id does, PENDING with no value, as an ``AsyncResult`` does after ``forget()``."""
        self._state, self._held, self._traceback, self._date_done = "PENDING", None, None, None

    def revoke(self, terminate: bool = False, signal: str | int = "SIGTERM") -> bool:
        """An eager call has already run, so there is nothing left to cancel or terminate: returns False and
        changes nothing, as ``AsyncResult.revoke()`` does for a job that has started (Celery's
        EagerResult would report REVOKED for a task that in fact ran)."""
        return False


#: The result of the eager call running in this context: what ``update_state`` changes.
_live: contextvars.ContextVar[EagerResult | None] = contextvars.ContextVar("sqlq_eager_live", default=None)


def current_result() -> EagerResult | None:
    """The result of the eager call running here (STARTED, or what ``self.update_state`` last set:
    its state and ``info``), None outside one. The outcome the call returns replaces it, as a
    worker's outcome replaces a job's reported progress; a test reads it from inside the task (or a
    signal receiver) to see what a progress bar would."""
    return _live.get()


def update_state(task_id: str, state: str, meta: Any) -> bool:
    """``Task.update_state`` for the eager call running here, without a database: sets the live
    result's state and info; False when ``task_id`` is not that call's (the caller then writes)."""
    live = _live.get()
    if live is None or live.id != task_id:
        return False
    live._state, live._held = state, meta
    return True


class EagerGroupResult(GroupResult):
    """The outcome of a group run in this process (``group.apply()``, or any send of a group with
    ``task_always_eager``): a ``GroupResult`` whose members are ``EagerResult``s, so every check
    reads the members themselves and nothing touches the database."""

    def __repr__(self) -> str:
        return f"<EagerGroupResult: {self.id} [{', '.join(str(r.id) for r in self.results)}]>"

    def save(self) -> GroupResult:
        """Refused: the members' outcomes exist only in this object, so a group restored elsewhere
        would read every member as PENDING."""
        raise ConfigurationError(f"group {self.id} ran eagerly: its outcomes are held in this process, not "
                                 f"stored, so there is nothing to save for GroupResult.restore()")

    def forget(self) -> None:
        """Drop the outcomes the members hold (nothing was stored)."""
        for r in self._leaves():
            r.forget()


def _call_hook(task: Task, hooks: frozenset[str], name: str, *args: Any) -> None:
    """Call hook ``name`` when the task has it; one that raises is logged and the outcome stands
    (as a signal receiver's error is), because the task itself has already finished."""
    if name not in hooks:
        return
    try:
        getattr(task, name)(*args)
    except Exception:  # noqa: BLE001 - a hook's error must not change the task's outcome
        log.exception("the %s hook of task %s raised; the task's outcome is unchanged", name, task.name)


def _check_options(task: Task, options: Mapping[str, Any]) -> None:
    unknown = set(options) - _known_options()
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) for {task.name}.apply: {', '.join(sorted(unknown))}; known options: "
            f"{', '.join(sorted(_known_options()))}"
        )


def _round_trip(task: Task, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
                serializer: str) -> tuple[str, str | None, str | None, bytes | None]:
    """The call encoded as ``delay()`` encodes it; raises as ``delay()`` does, naming the argument."""
    if args is not None and not isinstance(args, list | tuple):
        raise SerializationError(f"args must be a list or tuple, not {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise SerializationError(f"kwargs must be a dict, not {type(kwargs).__name__}")
    return serialization.encode_call(args or (), dict(kwargs or {}), serializer)


def apply(task: Task, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None, *,
          task_id: str | None = None, retries: int = 0, throw: bool | None = None,
          **options: Any) -> EagerResult:
    """Run ``task(*args, **kwargs)`` here as a worker would run its job, and return its outcome.

    ``throw`` (default: ``app.conf.task_eager_propagates``) re-raises the task's exception when it
    ends in FAILURE; otherwise the exception is the result's value. ``task_id`` may be any string
    (default: a new job id). ``options`` are ``apply_async``'s: ``serializer`` is used for the round
    trip, ``headers`` become ``self.request.headers`` and ``queue``/``priority`` show where the job
    would have gone; the timing and routing options (``countdown``, ``eta``, ``expires``,
    ``exchange``, ``routing_key``, ...) have no effect, as the call runs now. Arguments that cannot
    be encoded raise ``SerializationError`` before the task runs, as ``delay()`` would."""
    from .enqueue import new_job_id
    from .routing import resolution

    _check_options(task, options)
    links, errbacks = options.pop("link", None), options.pop("link_error", None)
    if links or errbacks:  # callbacks: run as a sent workflow runs them (apply_canvas)
        sig = task.signature(args, dict(kwargs or {}), **({"task_id": task_id} if task_id else {}), **options)
        sig.set(**({"link": links} if links else {}), **({"link_error": errbacks} if errbacks else {}))
        ran = _run_signature(sig, (), {}, {}, _NOTHING)
        if bool(task.app.conf.task_eager_propagates if throw is None else throw) and ran.state == "FAILURE" \
                and isinstance(ran.result, BaseException):
            raise ran.result
        return ran
    app = task.app
    conf = app.conf
    key, unique_for, on_conflict = _unique_options(task, args, kwargs, options)
    if key is not None:
        held = _held(app, key)
        if held is not None:
            if on_conflict == "error":
                raise DuplicateJobError(f"{task.name}: unique key {key!r} is held by job {held.id} (within its "
                                        f"unique_for window); nothing was run")
            return held
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigurationError(f"retries must be a whole number from 0, got {retries!r}")
    if task_id is not None and (not isinstance(task_id, str) or not task_id):
        raise ConfigurationError(f"task_id must be a non-empty string, got {task_id!r}")
    propagate = bool(conf.task_eager_propagates if throw is None else throw)
    serializer = options.get("serializer") or task.serializer or conf.task_serializer
    ctype, args_text, kwargs_text, payload = _round_trip(task, args, kwargs, serializer)
    headers = options.get("headers")
    try:
        headers = serialization.json_loads(serialization.json_dumps(headers)) if headers else {}
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"headers must be JSON-serializable: {exc}") from None
    call_args = list(args or ())
    dest = resolution.resolve(conf, task.name, call_args, dict(kwargs or {}), task=task,
                              queue=options.get("queue"), exchange=options.get("exchange"),
                              routing_key=options.get("routing_key"),
                              priority=options.get("priority", task.priority))
    run = _EagerRun(task, task_id or new_job_id(), headers, dest.queue,
                    conf.task_default_priority if dest.priority is None else dest.priority)
    started = dt.datetime.now(dt.UTC)
    window_start = time.monotonic()
    result = run.run(ctype, args_text, kwargs_text, payload, retries)
    if key is not None and unique_for is not None:
        with _windows_lock:
            _windows.setdefault(app, {})[key] = (window_start + unique_for, result)
    store = task.store_eager_result if task.store_eager_result is not None else conf.task_store_eager_result
    if store:
        _store(run, result, EagerCall(ctype, args_text, kwargs_text, payload, started))
    if propagate and result.state == "FAILURE" and isinstance(result.result, BaseException):
        raise result.result
    return result


#: Eager mode's unique_for windows, per app: key -> (monotonic end, the result of the call that took it).
_windows: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, EagerResult]]] = weakref.WeakKeyDictionary()
_windows_lock = threading.Lock()


def _unique_options(task: Task, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
                    options: dict[str, Any]) -> tuple[str | None, float | None, str]:
    """The call's unique key, window and conflict mode, as ``delay()`` derives and checks them."""
    from .enqueue import _unique_options as derive

    unique_key, unique_for, on_conflict = (options.pop(k, None) for k in ("unique_key", "unique_for", "on_conflict"))
    if unique_key is None and unique_for is None and on_conflict is None and task.unique_on is None:
        return None, None, "skip"
    return derive(task.name, args, dict(kwargs or {}), task, unique_key, unique_for, on_conflict)


def _held(app: Any, key: str) -> EagerResult | None:
    """The result of the eager call whose unique_for window holds ``key`` now, if any."""
    with _windows_lock:
        windows = _windows.get(app)
        held = windows.get(key) if windows else None
        if held is None:
            return None
        if held[0] <= time.monotonic():
            del windows[key]  # type: ignore[union-attr]
            return None
        return held[1]


class EagerCall(NamedTuple):
    """An eager call's arguments as ``delay()`` would have encoded them, and when it started."""

    content_type: str
    args: str | None
    kwargs: str | None
    payload: bytes | None
    started_at: dt.datetime


def _store(run: _EagerRun, result: EagerResult, call: EagerCall) -> None:
    """``store_eager_result``: the outcome as its results row, encoded as a worker records it (the
    result with the result serializer, a failure as its type, message, args and traceback), so that
    ``AsyncResult(id)`` in any process reads what this ``EagerResult`` holds. A database that
    cannot be reached raises, as storing was asked for."""
    from .store import EagerResultRow
    from .task import task_uuid
    from .worker.execution import exception_args, exception_type_name

    task, conf = run.task, run.app.conf
    serializer = task.serializer or conf.result_serializer
    value: str | None = None
    data: bytes | None = None
    value_type: str | None = None
    exc_type = exc_message = None
    held = result.result
    if result.state == "SUCCESS":
        if not task.ignore_result:
            encoded = serialization.encode(held, serializer)
            value, data, value_type = encoded.text, encoded.data, encoded.content_type
    elif isinstance(held, BaseException):
        exc_type = exception_type_name(held)
        exc_message = serialization.db_text(serialization.safe_str(held))
        if result.state == "FAILURE":
            encoded_args = exception_args(held, serializer)
            if encoded_args is not None:
                value, data, value_type = encoded_args.text, encoded_args.data, encoded_args.content_type
    row = EagerResultRow(
        id=task_uuid(run.task_id), task=task.name, queue=run.queue or conf.default_queue, priority=run.priority,
        state=result.state, args=call.args, kwargs=call.kwargs, payload=call.payload,
        content_type=call.content_type, result=value, result_payload=data, result_content_type=value_type,
        exc_type=exc_type, exc_message=exc_message, traceback=serialization.db_text(result.traceback),
        started_at=call.started_at, retries=result.retries)
    with run.app.connection() as conn:
        run.app.store.store_eager_result(conn, row)


class _EagerRun:
    """One eager call and its retries."""

    def __init__(self, task: Task, task_id: str, headers: dict[str, Any], queue: str | None, priority: int):
        self.task = task
        self.app = task.app
        self.task_id = task_id
        self.headers = headers
        self.queue = queue
        self.priority = priority
        self.hooks = overridden_hooks(task)
        self.hostname = socket.gethostname()

    def run(self, ctype: str, args_text: str | None, kwargs_text: str | None, payload: bytes | None,
            retries: int) -> EagerResult:
        task = self.task
        try:
            # decoded as the worker decodes a job (accept_content applies): a worker that would refuse
            # the arguments records FAILURE, and so does this
            args, kwargs = serialization.decode_call(ctype, args_text, kwargs_text, payload,
                                                     self.app.conf.accept_content)
        except SerializationError as exc:
            failure = type(exc)(f"cannot decode the arguments of {task.name}[{self.task_id}]: {exc}")
            return self._failed(failure, [], {}, retries)
        while True:
            outcome = self._attempt(args, kwargs, retries)
            if outcome is not None:
                return outcome
            retries += 1

    def _attempt(self, args: list[Any], kwargs: dict[str, Any], retries: int) -> EagerResult | None:
        """Run the task once: its EagerResult, or None when it asked to be retried."""
        from .worker.execution import format_traceback

        task, task_id, hooks = self.task, self.task_id, self.hooks
        request = Request(id=task_id, task=task.name, args=args, kwargs=kwargs, retries=retries,
                          attempt=retries + 1, queue=self.queue, priority=self.priority, headers=self.headers,
                          hostname=self.hostname, is_eager=True)
        token = _current_request.set(request)
        live = _live.set(EagerResult(task_id, None, "STARTED", app=self.app, task_name=task.name, retries=retries))
        state, retval = "FAILURE", None
        einfo: ExceptionInfo | None = None
        try:
            if signals.task_prerun.has_receivers:
                signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs)
            try:
                if "before_start" in hooks:
                    task.before_start(task_id, args, kwargs)
                retval = self._call(request, args, kwargs)
                value = self._round_trip_result(retval)
            except Retry as retry:
                reason = retry.exc or retry
                state, einfo = "RETRY", ExceptionInfo(reason, format_traceback(reason))
                self._retried(request, reason, einfo, args, kwargs)
                return None
            except Ignore as ignored:  # as the worker records it: REVOKED, no hooks
                state = "IGNORED"
                said = f": {serialization.safe_str(ignored)}" if ignored.args else ""
                revoked = TaskRevokedError(f"task {task_id} ended without an outcome: the task raised Ignore{said}")
                return EagerResult(task_id, revoked, "REVOKED", app=self.app, task_name=task.name, retries=retries)
            except Reject as rejected:  # as the worker: requeued (a retry, at once) or FAILURE, no hooks
                state = "REJECTED"
                if rejected.requeue and (task.max_retries is None or retries < task.max_retries):
                    log.info("task %s[%s] rejected and requeued (eager: run again at once): %s", task.name, task_id,
                             serialization.safe_str(rejected))
                    return None
                return EagerResult(task_id, rejected, "FAILURE", app=self.app, task_name=task.name,
                                   traceback=format_traceback(rejected), retries=retries)
            except Exception as exc:  # noqa: BLE001 - every failure becomes the call's FAILURE
                if self.task.autoretries(exc, retries):
                    state, einfo = "RETRY", ExceptionInfo(exc, format_traceback(exc))
                    self._retried(request, exc, einfo, args, kwargs)
                    return None
                einfo = ExceptionInfo(exc, format_traceback(exc))
                _call_hook(task, hooks, "on_failure", exc, task_id, args, kwargs, einfo)
                signals.task_failure.send(sender=task, task_id=task_id, exception=exc, args=args, kwargs=kwargs,
                                          traceback=exc.__traceback__, einfo=einfo.traceback)
                retval = exc
                return EagerResult(task_id, exc, "FAILURE", app=self.app, task_name=task.name,
                                   traceback=einfo.traceback,
                                   retries=retries)
            state = "SUCCESS"
            _call_hook(task, hooks, "on_success", retval, task_id, args, kwargs)
            if signals.task_success.has_receivers:
                signals.task_success.send(sender=task, result=retval)
            return EagerResult(task_id, value, "SUCCESS", app=self.app, task_name=task.name, retries=retries)
        finally:
            try:
                if state not in ("IGNORED", "REJECTED"):  # (Celery's IGNORE_STATES but RETRY)
                    _call_hook(task, hooks, "after_return", state, retval, task_id, args, kwargs, einfo)
                if signals.task_postrun.has_receivers:
                    signals.task_postrun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs,
                                              retval=retval if state == "SUCCESS" else None, state=state)
            finally:
                _current_request.reset(token)
                _live.reset(live)

    def _retried(self, request: Request, reason: BaseException, einfo: ExceptionInfo, args: list[Any],
                 kwargs: dict[str, Any]) -> None:
        log.info("task %s[%s] retry %d (eager: at once): %s", self.task.name, self.task_id, request.retries + 1,
                 serialization.safe_str(reason))
        _call_hook(self.task, self.hooks, "on_retry", reason, self.task_id, args, kwargs, einfo)
        signals.task_retry.send(sender=self.task, request=request, reason=reason)

    def _call(self, request: Request, args: list[Any], kwargs: dict[str, Any]) -> Any:
        task = self.task
        if task.transactional:
            return self._call_transactional(request, args, kwargs)
        value = task(*args, **kwargs)
        return _await(value) if task.is_async else value

    def _call_transactional(self, request: Request, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """A transactional task's body uses ``self.connection``/``self.session``: they are real, and
        its writes commit only when it succeeds (no outcome is written: there is no job)."""
        from sqlalchemy.orm import Session

        task = self.task
        with self.app.engine.connect() as conn, conn.begin():
            session = Session(bind=conn, join_transaction_mode="create_savepoint")
            request.connection, request.session = conn, session
            try:
                value = task(*args, **kwargs)
                if task.is_async:
                    value = _await(value)
                session.commit()
                return value
            finally:
                session.close()
                request.connection = request.session = None

    def _round_trip_result(self, value: Any) -> Any:
        """The value as a worker stores it and ``AsyncResult.get()`` reads it back."""
        task = self.task
        if task.ignore_result:
            return value
        conf = self.app.conf
        serializer = task.serializer or conf.result_serializer
        try:
            encoded = serialization.encode(value, serializer)
        except SerializationError as exc:
            raise SerializationError(
                f"the return value of {task.name} ({type(value).__name__}) cannot be serialized with "
                f"{serializer}: {exc.__cause__ or exc}; return plain data") from None
        return serialization.decode(encoded.content_type, encoded.text, encoded.data, conf.accept_content)

    def _failed(self, exc: BaseException, args: list[Any], kwargs: dict[str, Any], retries: int) -> EagerResult:
        """FAILURE before the task could run (its arguments would not decode in a worker)."""
        from .worker.execution import format_traceback

        einfo = format_traceback(exc)
        signals.task_failure.send(sender=self.task, task_id=self.task_id, exception=exc, args=args, kwargs=kwargs,
                                  traceback=exc.__traceback__, einfo=einfo)
        return EagerResult(self.task_id, exc, "FAILURE", app=self.app, task_name=self.task.name, traceback=einfo,
                           retries=retries)


def _await(coro: Any) -> Any:
    """Run an async task's coroutine to its end. In a thread whose event loop is running (an async
    test calling ``apply()``), it runs on a loop of its own in another thread, with this thread's
    context (so ``self.request`` is the same), since a running loop cannot be re-entered."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlq-eager") as pool:
        return pool.submit(context.run, asyncio.run, coro).result()



# workflows, run here -------------------------------------------------------------------------

_NOTHING = object()


def apply_canvas(item: Any, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                 **options: Any) -> AsyncResult | GroupResult:
    """Run a chain, chord, group or signature with callbacks here, with the database's semantics
    (``sqlq.workflows``): each step given the previous one's result first unless immutable; a step
    that does not succeed stops a chain and the later steps' results are FAILURE with its error; a
    chord's body gets the header's results in order, or fails with ChordError naming the first
    failed member; callbacks run after a success, errbacks after a failure (``(request, exc,
    traceback)``, or ``(task_id)`` for an errback taking one argument). Nothing is written; the
    returned result holds the outcome, ``.parent`` walks back as a sent workflow's does."""
    handle: AsyncResult | GroupResult = _run_item(item, tuple(args or ()), dict(kwargs or {}), dict(options),
                                                  _NOTHING)[0]
    return handle


def _run_item(item: Any, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
              value: Any) -> tuple[Any, list[Any]]:
    """(the result handle, the signatures the next step follows)."""
    from .canvas import Signature, chain, chord, group

    if isinstance(item, chord):
        return _run_chord(item, args, kwargs, options, value)
    if isinstance(item, chain):
        return _run_chain(item, args, kwargs, options, value)
    if isinstance(item, group):
        return _run_group(item, args, kwargs, options, value)
    if isinstance(item, Signature):
        return _run_signature(item, args, kwargs, options, value), [item]
    raise ConfigurationError(f"a workflow's steps are signatures (add.s(2, 2)), not {type(item).__name__}")


def _run_signature(sig: Any, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
                   value: Any) -> EagerResult:
    lead = (value,) if value is not _NOTHING and not sig.immutable else ()
    a, k, o = sig._merge(lead + args, kwargs, options)
    links, errbacks = o.pop("link", None) or [], o.pop("link_error", None) or []
    for key in ("group_id", "add_to_parent"):
        o.pop(key, None)
    result = apply(sig.type, a, k, throw=False, **o)
    if result.state == "SUCCESS":
        for callback in _listed(links):
            _run_item(_as_sig(callback, sig), (), {}, {}, result.result)
    elif result.state == "FAILURE":
        for errback in _listed(errbacks):
            _call_errback(_as_sig(errback, sig), result, a, k)
    return result


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, Mapping) else list(value)


def _as_sig(value: Any, owner: Any) -> Any:
    from .canvas import Signature

    return value if isinstance(value, Signature) else Signature.from_dict(value, app=owner._app)


def _call_errback(errback: Any, failed: EagerResult, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    from .workflows import _takes_request

    target = errback._local_task()
    if target is not None and _takes_request(target):
        request = task_module.Request(id=failed.id, task=failed.task_name, args=list(args), kwargs=dict(kwargs))
        errback(request, failed.result, failed.traceback)  # called, as Celery calls a new-style errback
    else:
        _run_item(errback.clone(immutable=False), (failed.id,), {}, {}, _NOTHING)


def _failed_like(sig: Any, cause: Any, app: App) -> EagerResult:
    """A step that did not run because ``cause`` (a result) did not succeed: FAILURE with its error."""
    from .enqueue import new_job_id

    return EagerResult(sig.options.get("task_id") or new_job_id(), cause.result, "FAILURE", app=app,
                       task_name=sig.name, traceback=cause.traceback)


def _run_chain(item: Any, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
               value: Any) -> tuple[Any, list[Any]]:
    from .canvas import Signature, chain, chord, group

    steps: list[Any] = []
    for t in item.tasks:
        steps.extend(t.tasks if isinstance(t, chain) and not t.options else [t])
    for i, step in enumerate(steps[:-1]):  # a group followed by steps is a chord (Celery's)
        if isinstance(step, group | chord):
            rest = steps[i + 1:]
            tail = rest[0] if len(rest) == 1 else chain(*rest, app=item.app)
            body = tail if isinstance(step, group) else chain(step.body, tail, app=item.app)
            steps = [*steps[:i], chord(step if isinstance(step, group) else step.tasks, body, app=item.app)]
            break
    chain_options = dict(item.options)
    errbacks = _listed(chain_options.pop("link_error", None) or [])
    links = _listed(chain_options.pop("link", None) or [])
    handle: Any = None
    follows: list[Any] = []
    for i, step in enumerate(steps):
        if errbacks and isinstance(step, Signature) and type(step) is Signature:
            step = step.clone()
            step["options"]["link_error"] = [*_listed(step["options"].get("link_error") or []), *errbacks]
        if links and i == len(steps) - 1 and type(step) is Signature:
            step = step.clone()
            step["options"]["link"] = [*_listed(step["options"].get("link") or []), *links]
        if handle is not None and not _succeeded(handle):
            failed = handle if isinstance(handle, AsyncResult) else _first_failed(handle)
            for rest in steps[i:]:
                marked = _failed_like(rest if isinstance(rest, Signature) else item, failed, item.app)
                marked._parent = handle
                handle = marked
            return handle, follows
        step_value = value if i == 0 else (handle.get(propagate=False) if handle is not None else _NOTHING)
        new, follows = _run_item(step, args if i == 0 else (), kwargs if i == 0 else {},
                                 {**chain_options, **options} if i == 0 else {}, step_value)
        if handle is not None:
            _set_parent(_head(new), handle)
        handle = new
    return handle, follows


def _head(handle: Any) -> Any:
    from .workflows import _head as head

    return head(handle)


def _set_parent(handle: Any, parent: Any) -> None:
    from .workflows import _set_parent as set_parent

    set_parent(handle, parent)


def _succeeded(handle: Any) -> bool:
    return bool(handle.successful())


def _first_failed(handle: GroupResult) -> Any:
    for r in handle._leaves():
        if not r.successful():
            return r
    return handle.results[0]


def _run_group(item: Any, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
               value: Any) -> tuple[EagerGroupResult, list[Any]]:
    group_id, calls = item._prepared(args, kwargs, options)
    results: list[Any] = []
    follows: list[Any] = []
    for member, a, k, o in calls:
        handle, member_follows = _run_member(member, a, k, o, value)
        results.append(handle)
        follows.extend(member_follows)
    return EagerGroupResult(group_id, results, item.app), follows


def _run_member(member: Any, a: Sequence[Any], k: Mapping[str, Any], o: Mapping[str, Any],
                value: Any) -> tuple[Any, list[Any]]:
    """A group member with its call already merged (``group._prepared``): run as it is."""
    from .canvas import Signature

    if type(member) is Signature:
        prepared = Signature(member.name, a, k, o, immutable=member.immutable, app=member._app)
        prepared._type = member._type
        return _run_item(prepared, (), {}, {}, value)
    return _run_item(member, (), {}, {}, value)


def _run_chord(item: Any, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any],
               value: Any) -> tuple[Any, list[Any]]:
    from .errors import ChordError

    header, _ = _run_group(item.tasks, args, kwargs, options, value)
    body = item.body
    failed = next((r for r in header._leaves() if not r.successful()), None)
    if failed is None:
        handle, follows = _run_item(body, (), {}, {}, header.get(propagate=False))
    else:
        error = ChordError(f"Dependency {failed.id} raised {type(failed.result).__name__}: {failed.result}")
        handle = EagerResult(new_job_id_for(body), error, "FAILURE", app=item.app, task_name=body.name)
        follows = [body]
        for errback in _listed(body.options.get("link_error") or []):
            _call_errback(_as_sig(errback, body), handle, (), {})
    _set_parent(_head(handle), header)
    return handle, follows


def new_job_id_for(sig: Any) -> str:
    from .enqueue import new_job_id

    return str(sig.options.get("task_id") or new_job_id())
