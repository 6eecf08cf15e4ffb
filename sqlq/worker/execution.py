"""Run one claimed job and classify what happened. No SQL here, except through the one hook a
transactional task needs (its outcome must commit with its own writes).

The result of ``Executor.execute`` is an ``Outcome`` (a final state for the batched FINISH), a
``RetryRequest`` (back to the queue, later), an ``Unregistered`` (the task is not in this app: the
job is handed back for a worker that knows it), or ``None`` when a transactional task already
recorded its outcome in its own transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
import traceback as tb_module
from typing import TYPE_CHECKING, Any, cast

from .. import serialization, signals
from ..errors import (
    Ignore,
    InvalidJobError,
    NotRegistered,
    Reject,
    Retry,
    SerializationError,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    first_line,
)
from ..outage import is_outage
from ..serialization import db_text, safe_str
from ..store import ClaimedJob, Interrupted, Outcome, RetryRequest, Unregistered
from ..task import CALL_HEADER, ExceptionInfo, Request, Task, _as_datetime, _current_request, overridden_hooks
from .time_limits import ThreadTimeLimits, TimeLimits

if TYPE_CHECKING:
    import psycopg

    from ..app import App

log = logging.getLogger("sqlq.worker")

Result = Outcome | RetryRequest | Interrupted | Unregistered | None
#: A task's overridden hooks, hard and soft time limits, and ignore_result (``Executor._plan``).
_Plan = tuple[frozenset[str], float | None, float | None, bool]


def exception_type_name(exc: BaseException) -> str:
    """``module.QualName`` so the reader can import the type back; builtins keep their bare name.
    Always storable text (``db_text``), whatever a class sets as its ``__module__`` or name."""
    cls = type(exc)
    module, name = getattr(cls, "__module__", None), getattr(cls, "__qualname__", None) or cls.__name__
    if module == "builtins":
        return db_text(safe_str(name))
    return db_text(f"{safe_str(module)}.{safe_str(name)}")


def failure(job: ClaimedJob, exc: BaseException, traceback: str | None = None,
            serializer: str | None = None) -> Outcome:
    """FAILURE for ``exc``, with text PostgreSQL can store: NUL characters and lone surrogates are
    escaped (``\\x00``, ``\\udcxx``; see ``serialization.db_text``) and a ``__str__`` that raises gives
    a description instead. Never raises, so reporting a failure cannot fail.

    With ``serializer`` (the job's result serializer), ``exc.args`` also go in the row's ``result``
    column, as Celery's backends keep the args tuple as ``exc_message``: the reader rebuilds
    ``HttpError(404)`` with its int and not ``HttpError('404')`` (``sqlq.result.rebuild_exception``).
    Args that do not encode leave ``result`` NULL, and the reader falls back to the message."""
    outcome = Outcome(id=job.id, attempt=job.attempt, state="FAILURE", exc_type=exception_type_name(exc),
                      exc_message=db_text(safe_str(exc)), traceback=db_text(traceback))
    if serializer is not None:
        encoded = exception_args(exc, serializer)
        if encoded is not None:
            outcome.result, outcome.result_payload = encoded.text, encoded.data
            outcome.result_content_type = encoded.content_type
    return outcome


def exception_args(exc: BaseException, serializer: str) -> serialization.Encoded | None:
    """``exc.args`` as a list encoded with ``serializer``, or None when they cannot be (an object
    the serializer refuses, a NUL jsonb cannot store, an ``args`` or ``__reduce__`` that raises):
    recording the failure must not fail because its arguments are exotic."""
    try:
        args = exc.args
        if not isinstance(args, tuple):
            return None
        return serialization.encode(list(args), serializer)
    except Exception:  # noqa: BLE001 - any refusal means "message only", never a second failure
        return None


def format_traceback(exc: BaseException) -> str:
    """``exc``'s traceback as text; a traceback that cannot be formatted (a hostile ``__repr__`` in
    a note, a chain too deep) gives a line saying so instead of an error."""
    try:
        return "".join(tb_module.format_exception(exc))
    except BaseException as err:  # noqa: BLE001 - formatting must not turn one failure into another
        return (f"(the traceback could not be formatted: {type(err).__name__}: {safe_str(err)})\n"
                f"{exception_type_name(exc)}: {safe_str(exc)}\n")


def last_resort(job: ClaimedJob, exc: BaseException) -> Outcome:
    """The job's FAILURE for an exception that escaped the executor's own handling (a signal
    receiver raising a BaseException, a time limit arriving between two steps, a header that does
    not decode): the worker, the pool thread or the prefork child goes on with its next job."""
    try:
        log.error("job %s[%s] failed outside its task: %s: %s", job.task, job.id,
                  exception_type_name(exc), db_text(safe_str(exc)))
        return failure(job, exc, format_traceback(exc))
    except BaseException:  # noqa: BLE001 - e.g. a second time-limit exception during the first
        return Outcome(id=job.id, attempt=job.attempt, state="FAILURE", exc_type=exception_type_name(exc),
                       exc_message="the job failed, and describing its exception failed too")


#: The largest ``attempt`` or ``retries`` a waiting row may hold: CLAIM adds one to ``attempt`` and
#: RETRY to ``retries`` (int4 columns). The store's QUARANTINE uses the same bounds.
MAX_COUNTER = 2147483646


def invalid_row_reason(job: ClaimedJob) -> str | None:
    """Why a claimed job's row is impossible (sqlq never writes such values: a row written by hand
    or by another tool), in the words QUARANTINE uses, naming the column and the value as it was
    before the claim added one to ``attempt``; None for a row that can run."""
    bad = []
    if not 0 <= job.attempt - 1 <= MAX_COUNTER:
        bad.append(f"attempt = {job.attempt - 1}")
    if not 0 <= job.retries <= MAX_COUNTER:
        bad.append(f"retries = {job.retries}")
    if not bad:
        return None
    return (f"the job row holds a value no worker can run: {', '.join(bad)} (each must be from 0 to "
            f"{MAX_COUNTER}; was the row written by hand?); it was set aside without running")


class _TakenAway(Exception):  # noqa: N818 - internal control flow, never recorded
    """A transactional task finished, but its job had been rescued from this worker meanwhile."""


class _ConnectionLost(Exception):  # noqa: N818 - internal control flow, never recorded
    """A transactional task's connection broke: its transaction, outcome included, is gone."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _connection_broke(exc: BaseException) -> bool:
    """An outage error anywhere in ``exc``'s chain (sqlalchemy wraps psycopg's as ``.orig``)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        orig = getattr(cause, "orig", None)
        if is_outage(cause) or (isinstance(orig, BaseException) and is_outage(orig)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False



def _explain_time_limit(task: Task, request: Request, exc: BaseException) -> BaseException:
    """The watchdog can only raise a bare exception class; give the record a message that says
    which limit passed."""
    if not isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded) or safe_str(exc):
        return exc
    soft = isinstance(exc, SoftTimeLimitExceeded)
    limit = request.timelimit[1] if soft else request.timelimit[0]
    explained = type(exc)(f"task {task.name} ran past its {'soft ' if soft else ''}time limit ({limit} s)")
    return explained.with_traceback(exc.__traceback__)


_loops = threading.local()


def _event_loop() -> asyncio.AbstractEventLoop:
    """One event loop per thread, reused: async tasks run on it in every pool."""
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _loops.loop = loop
    return loop


class Executor:
    """Runs jobs for one worker process (or one prefork child)."""

    def __init__(self, app: App, worker_id: str, hostname: str, limits: TimeLimits | None = None):
        self.app = app
        self.worker_id = worker_id
        self.hostname = hostname
        self.limits = limits or ThreadTimeLimits()
        self.accept = list(app.conf.accept_content)
        self.result_serializer = app.conf.result_serializer  # read once: settings come from env too
        # the app's defaults for tasks that set none of their own (read once, as above)
        self.time_limit: float | None = app.conf.task_time_limit
        self.soft_time_limit: float | None = app.conf.task_soft_time_limit
        self.ignore_result: bool = bool(app.conf.task_ignore_result)
        self._plans: dict[Task, _Plan] = {}  # per task, made at its first job (_plan)
        self._app_path: str | None = None  # how -A names the app, found at the first unknown task

    def execute(self, job: ClaimedJob) -> Result:
        """Run ``job``; always returns its result, whatever the job, its task or a signal receiver
        raises (only KeyboardInterrupt, Ctrl-C in a solo worker without signal handlers, passes)."""
        try:
            return self._execute(job)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - one bad job never stops the pool
            if signals.task_internal_error.has_receivers:
                self._internal_error(job, exc)
            return last_resort(job, exc)

    def _internal_error(self, job: ClaimedJob, exc: BaseException) -> None:
        """``task_internal_error``: an error outside the task's code (a receiver, a time limit
        between two steps, a header that does not decode)."""
        request = signals.job_request(job, self.hostname, self.worker_id, self.accept)
        signals.task_internal_error.send(sender=self.app.tasks.get(job.task), task_id=job.id, args=request.args,
                                         kwargs=request.kwargs, request=request, exception=exc,
                                         traceback=exc.__traceback__, einfo=format_traceback(exc))

    def _execute(self, job: ClaimedJob) -> Result:
        reason = invalid_row_reason(job)
        if reason is not None:
            if signals.task_rejected.has_receivers:
                signals.task_rejected.send(sender=self, message=job, exc=InvalidJobError(reason))
            return Outcome(id=job.id, attempt=job.attempt, state="FAILURE", exc_type="sqlq.errors.InvalidJobError",
                           exc_message=reason)
        if job.expired:
            if signals.task_revoked.has_receivers:  # Celery's signal for an expired task
                signals.task_revoked.send(sender=self.app.tasks.get(job.task) or job.task, terminated=False,
                                          signum=None, expired=True, request=signals.job_request(
                                              job, self.hostname, self.worker_id, self.accept))
            return Outcome(id=job.id, attempt=job.attempt, state="EXPIRED", exc_type="sqlq.errors.TaskExpiredError",
                           exc_message="the job's expires time passed before a worker started it; it was not run")
        task = self.app.tasks.get(job.task)
        if task is None:
            return self._unknown(job)
        try:
            args, kwargs = serialization.decode_call(job.content_type, job.args, job.kwargs, job.payload,
                                                     self.accept)
        except SerializationError as exc:
            # keep the subclass (ContentDisallowed) so the reader sees why the job was refused; the
            # decoder's traceback says where in the arguments it gave up
            refused = type(exc)(f"cannot decode the arguments of {job.task}[{job.id}]: {exc}")
            if signals.task_rejected.has_receivers:
                signals.task_rejected.send(sender=self, message=job, exc=refused)
            return failure(job, refused, format_traceback(exc))
        except Exception as exc:  # noqa: BLE001 - any decoder error (RecursionError too) means unusable
            refused = SerializationError(
                f"cannot decode the arguments of {job.task}[{job.id}]: {type(exc).__name__}: {safe_str(exc)}")
            if signals.task_rejected.has_receivers:
                signals.task_rejected.send(sender=self, message=job, exc=refused)
            return failure(job, refused, format_traceback(exc))
        return self._run(task, job, args, kwargs)

    def _unknown(self, job: ClaimedJob) -> Unregistered:
        """A job whose task this app does not register: said at ERROR (the task, the job, the app
        this worker runs), and handed back (the worker's HAND_BACK) for a live worker of the queue
        that knows the task, or failed NotRegistered when none does."""
        if self._app_path is None:
            from ..loading import app_path

            self._app_path = app_path(self.app) or f"{self.app.main or '(an unnamed app)'}"
        unknown = NotRegistered(
            f"task {job.task!r} is not registered on worker {self.hostname} (-A {self._app_path}); start the "
            f"worker with the app that defines it (sqlq -A module worker) or check the task name")
        log.error("job %s of queue %r: task %r is not registered in this worker's app (-A %s); handing it back "
                  "for a worker that registers it (it fails NotRegistered if no live worker of the queue does)",
                  job.id, job.queue, job.task, self._app_path)
        if signals.task_unknown.has_receivers:
            signals.task_unknown.send(sender=self, name=job.task, id=job.id, message=job, exc=unknown)
        return Unregistered(id=job.id, attempt=job.attempt, task=job.task)

    def _run(self, task: Task, job: ClaimedJob, args: list[Any], kwargs: dict[str, Any]) -> Result:
        """Run the task; an outcome says when it started and for how long it ran (the events'
        task-started and runtime: measured here, where the task runs, prefork child included)."""
        started, clock = time.time(), time.perf_counter()
        result = self._run_task(task, job, args, kwargs)
        if type(result) is Outcome:
            result.started = started
            result.runtime = time.perf_counter() - clock
        return result

    def _run_task(self, task: Task, job: ClaimedJob, args: list[Any], kwargs: dict[str, Any]) -> Result:
        plan = self._plans.get(task)
        if plan is None:
            plan = self._plans[task] = self._plan(task)
        hooks, hard, soft, ignore = plan
        headers = serialization.json_loads(job.headers) if job.headers and job.headers != "{}" else {}
        if headers and CALL_HEADER in headers:
            request = self._called(task, job, args, kwargs, headers, plan)
        else:
            request = Request(id=job.id, task=task.name, args=args, kwargs=kwargs, retries=job.retries,
                              attempt=job.attempt, queue=job.queue, priority=job.priority, headers=headers,
                              group=job.group_id, hostname=self.hostname, worker_id=self.worker_id,
                              is_eager=False, timelimit=(hard, soft), ignore_result=ignore)
        task_id = request.id or job.id
        token = _current_request.set(request)
        if signals.task_prerun.has_receivers:
            try:
                signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs)
            except BaseException:  # a receiver's BaseException: execute() records it as the FAILURE
                _current_request.reset(token)
                raise
        state, retval, started = "FAILURE", None, time.monotonic()
        einfo: ExceptionInfo | None = None
        ended: Any = None  # after_return's retval: the value, or the exception the job ended with
        result: Outcome | None
        try:
            try:
                if hooks and "before_start" in hooks:
                    task.before_start(task_id, args, kwargs)  # (raising fails the job, as in Celery)
                if task.transactional:
                    result, retval = self._run_transactional(task, job, args, kwargs, request)
                else:
                    retval = self._call(task, args, kwargs, request)
                    result = self._encode_result(task, job, retval, request.ignore_result)
                state = "SUCCESS" if result is None else result.state
                ended = retval
                if state == "SUCCESS":
                    if log.isEnabledFor(logging.INFO):  # (the repr only when the line is written)
                        log.info("Task %s[%s] succeeded in %.4fs: %s", request.shadow or task.name, task_id,
                                 time.monotonic() - started, short_repr(retval))
                    if hooks and "on_success" in hooks:
                        _hook(task, request, "on_success", retval, task_id, args, kwargs)
                    if signals.task_success.has_receivers:
                        signals.task_success.send(sender=task, result=retval)
                return result
            except _TakenAway:
                state = "IGNORED"  # rescued from us meanwhile: whoever holds it now records the outcome
                return None
            except _ConnectionLost as lost:
                state = "INTERRUPTED"  # its transaction rolled back: nothing was done, so run it again
                log.warning("task %s[%s]: its database connection broke (%s); its writes were rolled back "
                            "and the job will run again", request.shadow or task.name, task_id, lost.reason)
                return Interrupted(id=job.id, attempt=job.attempt, reason=lost.reason)
            except Retry as retry:
                state, ended = "RETRY", retry
                text = format_traceback(retry)
                if hooks:
                    einfo = ExceptionInfo(retry, text)
                return self._retry(task, job, request, retry.when or 0.0, retry.exc or retry, einfo, hooks, text)
            except Ignore as ignored:  # Celery's IGNORED: no hooks but task_postrun, no failure signal
                state = "IGNORED"
                return self._ignored(task, job, request, ignored)
            except Reject as rejected:  # Celery's REJECTED: likewise
                state = "REJECTED"
                return self._rejected(task, job, request, rejected)
            except BaseException as exc:  # noqa: BLE001 - every failure is recorded, never lost
                if isinstance(exc, KeyboardInterrupt):
                    raise
                if task.autoretry_for and task.autoretries(exc, job.retries):
                    state, ended = "RETRY", exc
                    text = format_traceback(exc)
                    if hooks:
                        einfo = ExceptionInfo(exc, text)
                    return self._retry(task, job, request, task.backoff_delay(job.retries), exc, einfo, hooks,
                                       text)
                exc = _explain_time_limit(task, request, exc)
                ended = exc
                outcome = self._failure(task, job, request, args, kwargs, exc)
                if hooks:
                    einfo = ExceptionInfo(exc, outcome.traceback)
                    if "on_failure" in hooks:
                        _hook(task, request, "on_failure", exc, task_id, args, kwargs, einfo)
                return outcome
        finally:
            try:
                if hooks and "after_return" in hooks and state in _RETURNED:
                    _hook(task, request, "after_return", state, ended, task_id, args, kwargs, einfo)
                if signals.task_postrun.has_receivers:
                    signals.task_postrun.send(sender=task, task_id=task_id, task=task, args=args, kwargs=kwargs,
                                              retval=retval, state=state)
            finally:
                _current_request.reset(token)

    def _plan(self, task: Task) -> _Plan:
        """What ``_run`` needs of a task at every job, found at its first job (after the app was
        finalized, so what ``task_annotations`` set counts): the hooks it overrides, and its time
        limits and ignore_result, the app's settings where the task has none."""
        hard = task.time_limit if task.time_limit is not None else self.time_limit
        soft = task.soft_time_limit if task.soft_time_limit is not None else self.soft_time_limit
        ignore = bool(task.ignore_result if task.ignore_result is not None else self.ignore_result)
        return overridden_hooks(task), hard, soft, ignore

    def _called(self, task: Task, job: ClaimedJob, args: list[Any], kwargs: dict[str, Any],
                headers: dict[str, Any], plan: _Plan) -> Request:
        """The request of a job whose call gave options (the reserved header, taken out of the
        headers the task sees): they win over the task's."""
        call = headers.pop(CALL_HEADER)
        if not isinstance(call, dict):
            raise InvalidJobError(f"the job's {CALL_HEADER!r} header is {type(call).__name__}, not the object "
                                  f"sqlq writes there (was the row written by hand?); it was not run")
        _, hard, soft, ignore = plan
        return Request(id=str(call.get("id") or job.id), task=task.name, args=args, kwargs=kwargs,
                       retries=job.retries, attempt=job.attempt, queue=job.queue, priority=job.priority,
                       headers=headers, group=job.group_id, hostname=self.hostname, worker_id=self.worker_id,
                       is_eager=False, timelimit=(call.get("time_limit", hard), call.get("soft_time_limit", soft)),
                       ignore_result=bool(call.get("ignore_result", ignore)), shadow=call.get("shadow"),
                       parent_id=call.get("parent_id"), root_id=call.get("root_id"),
                       argsrepr=call.get("argsrepr"), kwargsrepr=call.get("kwargsrepr"))

    def _call(self, task: Task, args: list[Any], kwargs: dict[str, Any], request: Request) -> Any:
        hard, soft = request.timelimit
        if task.is_async:
            # asyncio enforces an async task's limit by cancelling it; an exception thrown into the
            # event loop's machinery by the watchdog or SIGALRM would leave the loop broken
            return self._await(task, task(*args, **kwargs), soft, hard)
        stop = self.limits.start(soft, hard)
        try:
            return task(*args, **kwargs)
        finally:
            stop()

    @staticmethod
    def _await(task: Task, coro: Any, soft: float | None, hard: float | None) -> Any:
        loop = _event_loop()
        limit = soft or hard
        if not limit:
            return loop.run_until_complete(coro)
        timeout: asyncio.Timeout | None = None

        async def limited() -> Any:
            nonlocal timeout
            async with asyncio.timeout(limit) as timeout:
                return await coro

        try:
            return loop.run_until_complete(limited())
        except TimeoutError:
            if timeout is None or not timeout.expired():
                raise  # the task's own TimeoutError (a network call, say): an ordinary failure
            kind = SoftTimeLimitExceeded if soft else TimeLimitExceeded
            raise kind(f"async task {task.name} ran past its {'soft ' if soft else ''}"
                       f"time limit ({limit} s) and was cancelled") from None

    def _encode_result(self, task: Task, job: ClaimedJob, value: Any, ignore_result: bool) -> Outcome:
        outcome = Outcome(id=job.id, attempt=job.attempt, state="SUCCESS")
        if ignore_result:
            return outcome
        serializer = task.serializer or self.result_serializer
        if value is None and serializer == "json":  # most tasks return nothing: skip the encoder
            outcome.result, outcome.result_content_type = "null", serialization.JSON
            return outcome
        try:
            encoded = serialization.encode(value, serializer)
        except SerializationError as exc:  # a failure like any other: logged, signalled, recorded
            raise SerializationError(
                f"the return value of {task.name} ({type(value).__name__}) cannot be serialized with "
                f"{serializer}: {exc.__cause__ or exc}; return plain data") from None
        outcome.result, outcome.result_payload = encoded.text, encoded.data
        outcome.result_content_type = encoded.content_type
        return outcome

    def _run_transactional(self, task: Task, job: ClaimedJob, args: list[Any], kwargs: dict[str, Any],
                           request: Request) -> tuple[None, Any]:
        """The task's writes and its SUCCESS commit in one transaction, or neither does.

        If the connection breaks (a restart, a failover, a terminated backend) the server rolls the
        transaction back: the task's writes and its outcome are gone together, so the attempt did
        nothing and the job runs again (``Interrupted``), whatever the task raised on top of it."""
        from sqlalchemy.orm import Session

        try:
            conn = self.app.engine.connect()
        except Exception as exc:
            if _connection_broke(exc):
                raise _ConnectionLost(first_line(exc, with_type=True)) from exc
            raise
        with conn:
            raw = cast("psycopg.Connection", conn.connection.driver_connection)
            try:
                with conn.begin() as transaction:
                    session = Session(bind=conn, join_transaction_mode="create_savepoint")
                    request.connection, request.session = conn, session
                    try:
                        value = self._call(task, args, kwargs, request)
                        # release the session's savepoint into the job's transaction: left open, close()
                        # would roll back the task's session writes and the FINISH run after it
                        session.commit()
                        outcome = self._encode_result(task, job, value, request.ignore_result)
                        recorded = self.app.store.finish(raw, self.worker_id, [outcome])
                        if not recorded:
                            log.warning("task %s[%s]: job was taken back from this worker; its writes are "
                                        "rolled back", request.shadow or task.name, request.id)
                            transaction.rollback()
                            raise _TakenAway
                    finally:
                        session.close()
                        request.connection = request.session = None
            except Exception as exc:
                if raw.closed or raw.broken:  # (not an error of some other connection the task uses)
                    conn.invalidate()
                    raise _ConnectionLost(first_line(exc, with_type=True)) from exc
                raise
        return None, value

    def _retry(self, task: Task, job: ClaimedJob, request: Request, when: float | dt.datetime,
               reason: BaseException, einfo: ExceptionInfo | None, hooks: frozenset[str],
               traceback: str | None) -> RetryRequest:
        eta: float | None
        if isinstance(when, dt.datetime):
            when = _as_datetime(when, self.app.conf)  # naive: as in apply_async(eta=)
            eta = when.timestamp()
            delay = max(eta - time.time(), 0.0)  # only for the log and the worker's wake-up
            log.info("Task %s[%s] retry: Retry at %s: %s", request.shadow or task.name, request.id,
                     when.isoformat(), short_repr(reason))
        else:
            eta, delay = None, float(when)
            log.info("Task %s[%s] retry: Retry in %ss: %s", request.shadow or task.name, request.id,
                     f"{delay:g}", short_repr(reason))
        signals.task_retry.send(sender=task, request=request, reason=reason)
        if "on_retry" in hooks and einfo is not None:
            _hook(task, request, "on_retry", reason, request.id, request.args, request.kwargs, einfo)
        return RetryRequest(id=job.id, attempt=job.attempt, delay=delay,
                            error=db_text(f"{exception_type_name(reason)}: {safe_str(reason)}"), eta=eta,
                            traceback=db_text(traceback))

    def _ignored(self, task: Task, job: ClaimedJob, request: Request, exc: Ignore) -> Outcome:
        """``raise Ignore()``: Celery stores nothing; a sqlq job must end recorded, so it ends REVOKED
        with the type ``Ignore`` (the reader's ``get()`` says the task ignored itself)."""
        log.info("task %s[%s] ignored (it raised Ignore%s)", request.shadow or task.name, request.id,
                 f": {db_text(safe_str(exc))}" if exc.args else "")
        message = f"the task raised Ignore: {safe_str(exc)}" if exc.args else "the task raised Ignore"
        return Outcome(id=job.id, attempt=job.attempt, state="REVOKED", exc_type=exception_type_name(exc),
                       exc_message=db_text(message))

    def _rejected(self, task: Task, job: ClaimedJob, request: Request, exc: Reject) -> Outcome | RetryRequest:
        """``raise Reject(reason, requeue=...)``: requeued, the job waits again at once (counted as a
        retry: past ``max_retries`` it is failed instead, so a job rejected for ever cannot go
        round for ever); not requeued, FAILURE ``Reject`` with the reason and the traceback."""
        name = request.shadow or task.name
        text = format_traceback(exc)
        if exc.requeue and (task.max_retries is None or job.retries < task.max_retries):
            log.info("task %s[%s] rejected and requeued: %s", name, request.id, db_text(safe_str(exc)))
            return RetryRequest(id=job.id, attempt=job.attempt, delay=0.0, traceback=db_text(text),
                                error=db_text(f"{exception_type_name(exc)}: {safe_str(exc)}"))
        if exc.requeue:
            log.warning("task %s[%s] rejected with requeue for the %d time, past max_retries=%s: recorded as "
                        "FAILURE: %s", name, request.id, job.retries + 1, task.max_retries, db_text(safe_str(exc)))
        else:
            log.warning("task %s[%s] rejected: %s", name, request.id, db_text(safe_str(exc)))
        return failure(job, exc, text, task.serializer or self.result_serializer)

    def _failure(self, task: Task, job: ClaimedJob, request: Request, args: list[Any], kwargs: dict[str, Any],
                 exc: BaseException) -> Outcome:
        text = format_traceback(exc)
        if task.throws and isinstance(exc, task.throws):  # expected (Celery's throws): no alarm, no traceback
            log.info("Task %s[%s] raised expected: %s: %s", request.shadow or task.name, request.id,
                     exception_type_name(exc), db_text(safe_str(exc)))
        else:  # Celery's line, with the traceback the result keeps (escaped as it is stored: a lone
            # surrogate in it would make a UTF-8 log handler drop the line with a "Logging error")
            log.error("Task %s[%s] raised unexpected: %s\n%s", request.shadow or task.name, request.id,
                      short_repr(exc), db_text(text.rstrip()))
        signals.task_failure.send(sender=task, task_id=request.id, exception=exc, args=args, kwargs=kwargs,
                                  traceback=exc.__traceback__, einfo=text)
        return failure(job, exc, text, task.serializer or self.result_serializer)


def short_repr(value: Any, limit: int = 1024) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a log line (Celery's ``saferepr``): a huge
    result or a ``__repr__`` that raises must not cost or break the line."""
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ is the task's, not the log's
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}..."


#: The ends after which ``after_return`` is called (not a job taken away or interrupted: those run again).
_RETURNED = frozenset({"SUCCESS", "FAILURE", "RETRY"})


def _hook(task: Task, request: Request, hook: str, *args: Any) -> None:
    """Call one of the task's hooks; one that raises is logged with its traceback and does not
    change the job's outcome (as Celery logs an on_failure that raises)."""
    try:
        getattr(task, hook)(*args)
    except Exception:  # noqa: BLE001 - a hook's bug must not change what the job did
        log.exception("task %s[%s]: its %s hook raised; the job's outcome stands", request.shadow or task.name,
                      request.id, hook)

