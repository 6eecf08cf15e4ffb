"""A worker's events (``sqlq worker -E``): built from what the worker already has in hand and
written by the finisher, one statement at most every ``FLUSH_INTERVAL`` for whatever was queued
meanwhile, one JSON array in one row (EVENTS_BATCH).

* a claim batch: ``task-received`` for each claimed job, from the claimed rows the worker holds
  (queued by the consumer before the pool has the jobs, so every task-received comes before its
  job's other events; the claim itself runs nothing more);
* a finished batch: the outcomes become ``task-started`` (the executor's start time) and
  ``task-succeeded``/``task-failed``/``task-revoked``/``task-rejected``, retries
  ``task-retried``, jobs handed back ``task-rejected``;
* the heartbeat: ``worker-online`` with the first one, ``worker-heartbeat`` after it, and
  ``worker-offline`` at shutdown.

The JSON is assembled from text the worker already has (a claimed job's arguments are JSON text,
an outcome's result too), so an event costs the worker a string format, not an encoding. Events
never hold an outcome back: a batch PostgreSQL refuses for its data is dropped with a warning
rather than retried for ever.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from .. import __version__
from ..control.revocation import REVOKED_TYPE
from ..store import ClaimedJob, Outcome, RetryRequest, Unregistered
from ..worker.execution import Result

if TYPE_CHECKING:
    from ..app import App
    from ..store import Store

log = logging.getLogger("sqlq.worker")

#: Queued events are written once the oldest waited this long (seconds), or at once when there are
#: FLUSH_EVENTS of them: a statement per finished batch cost a drain one round trip per batch.
FLUSH_INTERVAL = 0.1
FLUSH_EVENTS = 5000

#: The prefix of a columnar element's type: the events of many jobs, one list per field
#: (``sqlq.events.expand`` splits it).
COLUMNS = "*"
_JOIN_IDS = '","'

#: A JSON string, cached: task and queue names repeat in every batch.
_text = functools.lru_cache(maxsize=4096)(json.dumps)


def exception_repr(exc_type: str | None, message: str | None) -> str:
    """Celery's ``exception`` field, the exception's repr: ``ValueError('boom')``."""
    short = (exc_type or "Exception").rpartition(".")[2]
    return f"{short}({message!r})" if message else f"{short}()"


def quiet_tasks(app: App) -> frozenset[str]:
    """The tasks whose jobs send no events (``@app.task(send_events=False)``, Celery's option)."""
    return frozenset(name for name, task in app.tasks.items() if not getattr(task, "send_events", True))


def _event(kind: str, job: ClaimedJob, at: float, fields: str) -> str:
    """One element of a batch: ``[type, task id, task name, epoch seconds, fields]`` (``fields``
    JSON object text)."""
    return f'["{kind}","{job.id}",{_text(job.task)},{at!r},{fields}]'


class WorkerEvents:
    """The events of one worker: what to write for a claim, a finished batch, a heartbeat."""

    def __init__(self, store: Store, hostname: str, heartbeat_interval: float, quiet: frozenset[str]):
        self.store = store
        self.hostname = hostname
        self.heartbeat_interval = heartbeat_interval
        self.quiet = quiet  # tasks that opted out (send_events=False); usually empty
        self.online = False  # worker-online was written (the next heartbeats are worker-heartbeat)
        self.pid = os.getpid()
        # events waiting for the finisher's next write (consumer and finisher append, in order)
        self.queued: collections.deque[str] = collections.deque()
        self.queued_since: float | None = None  # (time.monotonic()) when the oldest was queued

    def received(self, jobs: Sequence[ClaimedJob]) -> None:
        """A claim batch's task-received events, queued for the finisher (the consumer calls this
        before the pool has the jobs, so each comes before its job's other events in the queue).
        Celery's fields: args, kwargs, retries; the time is the claim's."""
        quiet = self.quiet
        if quiet:
            jobs = [j for j in jobs if j.task not in quiet]
        if not jobs:
            return
        # one columnar element for the whole claim (expand() gives each job's event back): joins
        # of the text the claim returned, instead of a format per job
        self.queued.append(
            f'["{COLUMNS}task-received",null,null,{time.time()!r},{{'
            f'"uuid":["{_JOIN_IDS.join([j.id for j in jobs])}"],'
            f'"name":[{",".join([_text(j.task) for j in jobs])}],'
            f'"args":[{",".join([j.args or "null" for j in jobs])}],'
            f'"kwargs":[{",".join([j.kwargs or "null" for j in jobs])}],'
            f'"retries":[{",".join([str(j.retries) for j in jobs])}]}}]')
        if self.queued_since is None:
            self.queued_since = time.monotonic()

    def queue(self, events: Sequence[str]) -> None:
        """A recorded batch's events, written with the next flush."""
        if events:
            self.queued.extend(events)
            if self.queued_since is None:
                self.queued_since = time.monotonic()

    def due_in(self) -> float | None:
        """Seconds until the queued events should be written (0: now); None when none is queued."""
        since = self.queued_since
        if since is None:
            return None
        if len(self.queued) >= FLUSH_EVENTS:
            return 0.0
        return max(since + FLUSH_INTERVAL - time.monotonic(), 0.0)

    def flush(self, conn: psycopg.Connection, more: Sequence[str] = ()) -> None:
        """Write the queued events, then ``more``, in one statement (the finisher's). Taken from
        the queue first: events the consumer queues meanwhile wait for the next flush."""
        queued = self.queued
        taken: list[str] = []
        self.queued_since = None
        while queued:
            taken.append(queued.popleft())
        taken.extend(more)
        self.write(conn, taken)

    def finished(self, batch: Iterable[tuple[ClaimedJob, Result]]) -> tuple[list[str], list[str]]:
        """A finished batch's events, in two parts: those of jobs that go back to wait (retries,
        hand-backs), to be written before the batch is recorded, since once it is another claim
        may take them again and write their next task-received; and the rest, written after the
        outcomes, so that a reader who sees task-succeeded finds the result already there."""
        back: list[str] = []
        done: list[str] = []
        quiet = self.quiet
        now = time.time()
        pid = self.pid
        succeeded: list[tuple[ClaimedJob, Outcome]] = []  # the common case, one columnar element
        for job, result in batch:
            if quiet and job.task in quiet:
                continue
            if isinstance(result, Outcome):
                if result.state == "SUCCESS" and result.started is not None and result.result_payload is None:
                    succeeded.append((job, result))
                else:
                    _outcome_events(done, job, result, now, pid)
            elif isinstance(result, RetryRequest):
                back.append(_event("task-retried", job, now, json.dumps(
                    {"exception": result.error, "traceback": result.traceback, "retries": job.retries + 1})))
            elif isinstance(result, Unregistered):
                back.append(_event("task-rejected", job, now, json.dumps(
                    {"requeue": True, "exception": f"NotRegistered({job.task!r})"})))
            # (Interrupted: it runs again, and its next attempt has its own events)
        if succeeded:
            done.append(
                f'["{COLUMNS}task-succeeded",null,null,null,{{"pid":{pid},'
                f'"uuid":["{_JOIN_IDS.join([j.id for j, _ in succeeded])}"],'
                f'"name":[{",".join([_text(j.task) for j, _ in succeeded])}],'
                f'"started":[{",".join([repr(o.started) for _, o in succeeded])}],'
                f'"runtime":[{",".join([repr(o.runtime) for _, o in succeeded])}],'
                f'"result":[{",".join([o.result or "null" for _, o in succeeded])}]}}]')
        return back, done

    def heartbeat(self, conn: psycopg.Connection, active: int, processed: int) -> None:
        """worker-online the first time, worker-heartbeat after it."""
        kind = "worker-heartbeat" if self.online else "worker-online"
        self.worker_event(conn, kind, active, processed)
        self.online = True

    def offline(self, conn: psycopg.Connection, active: int, processed: int) -> None:
        self.worker_event(conn, "worker-offline", active, processed)

    def worker_event(self, conn: psycopg.Connection, kind: str, active: int, processed: int) -> None:
        loadavg = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        fields = {"freq": self.heartbeat_interval, "active": active, "processed": processed, "pid": self.pid,
                  "loadavg": loadavg, "sw_ident": "sqlq", "sw_ver": __version__, "sw_sys": platform.system()}
        self.write(conn, [json.dumps([kind, None, None, time.time(), fields])])

    def write(self, conn: psycopg.Connection, events: Sequence[str]) -> None:
        """Write built events in one statement. An outage propagates (the caller's thread retries
        as for its own statements); events refused for their data are dropped, saying so, since
        retrying them would block the worker's outcomes behind them."""
        if events:
            self._guarded(lambda: self.store.events_batch(conn, self.hostname, "[" + ",".join(events) + "]"),
                          len(events))

    def _guarded(self, write: Callable[[], Any], count: int) -> None:
        try:
            write()
        except psycopg.DataError as exc:
            log.warning("%d event(s) not written: PostgreSQL refused them (%s); the jobs' outcomes are "
                        "recorded as usual", count, exc)


def _outcome_events(events: list[str], job: ClaimedJob, result: Outcome, now: float, pid: int) -> None:
    """The events of one outcome (Celery's fields)."""
    started, runtime = result.started, result.runtime
    ended = started + runtime if started is not None and runtime is not None else now
    state = result.state
    if state == "SUCCESS":
        shown = (result.result or "null") if result.result_payload is None \
            else _text(f"<{result.result_content_type} result>")
        # (the task-started event rides in "started": expand() gives it back before this one,
        # which saves a third of a drain's event bytes)
        events.append(_event("task-succeeded", job, ended,
                             f'{{"runtime":{runtime!r},"result":{shown},"started":{started!r},"pid":{pid}}}'
                             if started is not None else f'{{"runtime":{runtime!r},"result":{shown}}}'))
    elif state == "FAILURE":
        exception = exception_repr(result.exc_type, result.exc_message)
        if (result.exc_type or "").endswith(".Reject"):
            fields: dict[str, Any] = {"requeue": False, "exception": exception}
            kind = "task-rejected"
        else:
            fields = {"runtime": runtime, "exception": exception, "traceback": result.traceback}
            kind = "task-failed"
        if started is not None:
            fields.update(started=started, pid=pid)
        events.append(_event(kind, job, ended, json.dumps(fields)))
    elif state == "EXPIRED":
        events.append(_event("task-revoked", job, now, '{"terminated":false,"expired":true}'))
    elif state == "REVOKED" and result.exc_type == REVOKED_TYPE:
        terminated = "true" if "terminated" in (result.exc_message or "") else "false"
        events.append(_event("task-revoked", job, now, f'{{"terminated":{terminated},"expired":false}}'))
