"""Revoked task ids in a worker, and stopping a job that runs in one of its threads.

A worker keeps the unexpired ids of the ``revoked`` table in memory (read at its start, again on
every ``revoke`` command and about every few seconds, at most ``MAX_REVOKED``), so that a job it
claims with a revoked id is recorded REVOKED without running, on a set look-up made only while
the set is not empty: nothing is added to a claim otherwise.

Terminating a running job (``revoke(terminate=True)``) depends on the pool:

* **prefork**: the parent signals the child that runs the job (``PreforkPool.terminate_job``); the
  child dies and the job is recorded REVOKED, "terminated by SIGTERM".
* **threads / solo**: a thread cannot be killed, so ``TaskTerminated`` is raised inside the task's
  thread, as the time limits' watchdog does (``sqlq.worker.time_limits``), and the job is recorded
  REVOKED. Best effort, like those limits: Python delivers the exception at the task's next
  bytecode, so a task blocked in C code (a long ``time.sleep``, a socket read without timeout)
  sees it only when that call returns, and an ``async`` task cannot be terminated this way (the
  command says so). Only the prefork pool stops a task at once.
"""

from __future__ import annotations

import ctypes
import signal as signal_module
import threading
from collections.abc import Callable, Iterable

from ..errors import ConfigurationError
from ..store import ClaimedJob, Outcome
from ..task import _current_request, task_uuid
from ..worker.time_limits import ThreadTimeLimits

#: The most revoked ids a worker keeps in memory (Celery's worker keeps 50,000).
MAX_REVOKED = 50000

#: What a terminated job's outcome names as its exception (Celery's exception for a revoked task).
REVOKED_TYPE = "sqlq.errors.TaskRevokedError"


class TaskTerminated(BaseException):  # noqa: N818 - Celery users know the word; a BaseException
    """Raised inside a task's thread to terminate it. A BaseException, so that a task's
    ``except Exception`` and ``autoretry_for`` do not swallow it (a process killed by a signal
    could not catch anything either)."""


def signal_number(name: str | int | None) -> int:
    """``'SIGTERM'``, ``'TERM'``, ``15`` → 15; None is SIGTERM (Celery's default). An unknown name
    is an error naming the accepted forms."""
    if name is None:
        return int(signal_module.SIGTERM)
    if isinstance(name, int) and not isinstance(name, bool):
        return int(signal_module.Signals(name))
    text = str(name).strip().upper()
    if text.isdigit():
        return int(signal_module.Signals(int(text)))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal_module.Signals[text])
    except KeyError:
        raise ConfigurationError(f"signal={name!r} is not a signal name; write one such as 'SIGTERM', "
                                 f"'SIGKILL' or 'SIGUSR1'") from None


def signal_name(signum: int) -> str:
    return signal_module.Signals(signum).name


def revoked_outcome(job: ClaimedJob, message: str) -> Outcome:
    return Outcome(id=job.id, attempt=job.attempt, state="REVOKED", exc_type=REVOKED_TYPE, exc_message=message)


class RevokedIds:
    """The revoked row ids this worker honours. Replaced whole on each read of the table, added to
    by each ``revoke`` command; read by the consumer (``drop``) without a lock: a set is replaced,
    never changed in place."""

    def __init__(self) -> None:
        self.ids: frozenset[str] = frozenset()

    def replace(self, ids: Iterable[str]) -> None:
        self.ids = frozenset(ids)

    def add(self, ids: Iterable[str]) -> None:
        self.ids = self.ids | frozenset(ids)

    def split(self, jobs: list[ClaimedJob]) -> tuple[list[ClaimedJob], list[ClaimedJob]]:
        """``jobs`` as (to run, revoked)."""
        ids = self.ids
        revoked = [j for j in jobs if j.id in ids]
        if not revoked:
            return jobs, []
        return [j for j in jobs if j.id not in ids], revoked


class TerminableLimits:
    """The ``TimeLimits`` of one executor of a threads or solo pool (one executor per thread), which
    also lets ``terminate`` raise ``TaskTerminated`` in that thread while it runs a given job: the
    job is noted between the limits' start and stop, which ``Executor`` calls right around the
    task's own code, and the exception is raised under the same lock as that window closes, so it
    never reaches a thread that has left the task. About half a microsecond per job."""

    def __init__(self, limits: ThreadTimeLimits | None = None) -> None:
        self.limits = limits or ThreadTimeLimits()
        self._lock = threading.Lock()
        self._ident: int | None = None  # the executor's thread, known from its first job
        self._task: str | None = None  # the running request's task id, between start and stop
        self._stop_limits: Callable[[], None] = _noop
        self._stop_bound = self._stop

    def start(self, soft: float | None, hard: float | None) -> Callable[[], None]:
        if self._ident is None:
            self._ident = threading.get_ident()
        request = _current_request.get(None)
        # (no lock to open the window: a terminate that reads it a moment early just misses)
        self._task = request.id if request is not None else None
        self._stop_limits = self.limits.start(soft, hard)
        return self._stop_bound

    def _stop(self) -> None:
        with self._lock:
            self._task = None
        self._stop_limits()

    def terminate(self, row_ids: set[str]) -> str | None:
        """Raise ``TaskTerminated`` in this executor's thread if it runs one of these jobs (row
        ids); returns the task id it reached."""
        with self._lock:
            task_id, ident = self._task, self._ident
            if task_id is None or ident is None or not (task_id in row_ids or task_uuid(task_id) in row_ids):
                return None
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(TaskTerminated))
            self._task = None  # (once: a second exception would hit its handling)
            return task_id


def _noop() -> None:
    return None
