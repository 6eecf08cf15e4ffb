"""A worker's events (``sqlq worker -E``): built from what the worker already has in hand, one
statement per batch.

* a claim batch: ``task-received`` for each claimed job, read by EVENTS_RECEIVED from the rows the
  claim just wrote (the consumer runs it right after the claim, on the claiming connection);
* a finished batch: the outcomes the finisher recorded become ``task-started`` (the executor's
  start time) and ``task-succeeded``/``task-failed``/``task-revoked``, retries ``task-retried``,
  jobs handed back ``task-rejected``, all in one EVENTS_RECORD after the batch's FINISH;
* the heartbeat: ``worker-online`` with the first one, ``worker-heartbeat`` after it, and
  ``worker-offline`` at shutdown.

Events never hold an outcome back: a batch's events are written after its outcomes are, and events
PostgreSQL refuses for their data are dropped with a warning rather than retried for ever.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from .. import __version__
from ..control.revocation import REVOKED_TYPE
from ..store import ClaimedJob, EventBatch, Outcome, RetryRequest, Unregistered
from ..worker.execution import Result

if TYPE_CHECKING:
    from ..app import App
    from ..store import Store

log = logging.getLogger("sqlq.worker")


def exception_repr(exc_type: str | None, message: str | None) -> str:
    """Celery's ``exception`` field, the exception's repr: ``ValueError('boom')``."""
    short = (exc_type or "Exception").rpartition(".")[2]
    return f"{short}({message!r})" if message else f"{short}()"


def quiet_tasks(app: App) -> frozenset[str]:
    """The tasks whose jobs send no events (``@app.task(send_events=False)``, Celery's option)."""
    return frozenset(name for name, task in app.tasks.items() if not getattr(task, "send_events", True))


class WorkerEvents:
    """The events of one worker: what to write for a claim, a finished batch, a heartbeat."""

    def __init__(self, store: Store, hostname: str, heartbeat_interval: float, quiet: frozenset[str]):
        self.store = store
        self.hostname = hostname
        self.heartbeat_interval = heartbeat_interval
        self.quiet = quiet  # tasks that opted out (send_events=False); usually empty
        self.online = False  # worker-online was written (the next heartbeats are worker-heartbeat)

    def received(self, conn: psycopg.Connection, jobs: Sequence[ClaimedJob]) -> None:
        """A claim batch's task-received events (one statement)."""
        quiet = self.quiet
        ids = [j.id for j in jobs if j.task not in quiet] if quiet else [j.id for j in jobs]
        self._guarded(lambda: self.store.events_received(conn, self.hostname, ids), len(ids))

    def finished(self, batch: Iterable[tuple[ClaimedJob, Result]]) -> tuple[EventBatch, EventBatch]:
        """A finished batch's events, in two parts: those of jobs that go back to wait (retries,
        hand-backs), to be written before the batch is recorded, since once it is another claim
        may take them again and write their next task-received; and the rest, written after the
        outcomes, so that a reader who sees task-succeeded finds the result already there."""
        back, done = EventBatch(), EventBatch()
        quiet = self.quiet
        for job, result in batch:
            if quiet and job.task in quiet:
                continue
            _add_result(back if isinstance(result, RetryRequest | Unregistered) else done, job, result)
        return back, done

    def write(self, conn: psycopg.Connection, events: EventBatch) -> None:
        """Write built events (one statement)."""
        self._guarded(lambda: self.store.events_record(conn, self.hostname, events), len(events.types))

    def heartbeat(self, conn: psycopg.Connection, active: int, processed: int) -> None:
        """worker-online the first time, worker-heartbeat after it."""
        kind = "worker-heartbeat" if self.online else "worker-online"
        self.worker_event(conn, kind, active, processed)
        self.online = True

    def offline(self, conn: psycopg.Connection, active: int, processed: int) -> None:
        self.worker_event(conn, "worker-offline", active, processed)

    def worker_event(self, conn: psycopg.Connection, kind: str, active: int, processed: int) -> None:
        events = EventBatch()
        loadavg = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        events.add(kind, extra=json.dumps({
            "freq": self.heartbeat_interval, "active": active, "processed": processed, "pid": os.getpid(),
            "loadavg": loadavg, "sw_ident": "sqlq", "sw_ver": __version__, "sw_sys": platform.system()}))
        self._guarded(lambda: self.store.events_record(conn, self.hostname, events), 1)

    def _guarded(self, write: Any, count: int) -> None:
        """Run one events statement. An outage propagates (the caller's thread retries as for
        its own statements); events refused for their data are dropped, saying so, since
        retrying them would block the worker's outcomes behind them."""
        if not count:
            return
        try:
            write()
        except psycopg.DataError as exc:
            log.warning("%d event(s) not written: PostgreSQL refused them (%s); the jobs' outcomes are "
                        "recorded as usual", count, exc)


def _add_result(events: EventBatch, job: ClaimedJob, result: Result) -> None:
    """The events of one job's result (Celery's fields; ``extra`` holds those only some types have)."""
    if isinstance(result, Outcome):
        if result.started is not None:
            events.add("task-started", job.id, job.task, result.started, extra=_PID)
        ended = result.started + result.runtime if result.started is not None and result.runtime is not None \
            else None
        state = result.state
        if state == "SUCCESS":
            shown = result.result if result.result_payload is None else f"<{result.result_content_type} result>"
            events.add("task-succeeded", job.id, job.task, ended, runtime=result.runtime, result=shown)
        elif state == "FAILURE":
            if (result.exc_type or "").endswith(".Reject"):
                events.add("task-rejected", job.id, job.task, ended, exception=exception_repr(
                    result.exc_type, result.exc_message), extra='{"requeue": false}')
            else:
                events.add("task-failed", job.id, job.task, ended, runtime=result.runtime,
                           exception=exception_repr(result.exc_type, result.exc_message),
                           traceback=result.traceback)
        elif state == "EXPIRED":
            events.add("task-revoked", job.id, job.task, extra='{"terminated": false, "expired": true}')
        elif state == "REVOKED" and result.exc_type == REVOKED_TYPE:
            terminated = "terminated" in (result.exc_message or "")
            events.add("task-revoked", job.id, job.task,
                       extra=f'{{"terminated": {"true" if terminated else "false"}, "expired": false}}')
    elif isinstance(result, RetryRequest):
        events.add("task-retried", job.id, job.task, exception=result.error, traceback=result.traceback,
                   extra=json.dumps({"retries": job.retries + 1}))
    elif isinstance(result, Unregistered):
        events.add("task-rejected", job.id, job.task, exception=f"NotRegistered({job.task!r})",
                   extra='{"requeue": true}')
    # (Interrupted: it runs again, and its next attempt has its own events)


_PID = json.dumps({"pid": os.getpid()})
