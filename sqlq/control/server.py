"""The control channel, worker side: a thread that handles the commands addressed to this worker
and writes its replies, off the consumer thread.

It wakes on the worker's LISTEN connection (the listener thread that waits for jobs also listens
on the control channel, so an idle worker answers within milliseconds), when that connection comes
back (a notification may have been missed while it was down), and at least every ``POLL`` seconds
(``BURST_POLL`` in a burst worker, which has no LISTEN connection). A busy worker
answers as soon as: nothing here waits for the claim loop, and nothing is added to a claim or a
finish but a look at the revoked ids while there are any.

What each command does is ``sqlq.control.commands``; the revoked ids and termination are
``sqlq.control.revocation``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from .. import signals
from ..outage import Backoff
from ..serialization import json_dumps, json_loads
from ..store import ClaimedJob, Outcome
from .revocation import MAX_REVOKED, RevokedIds, TerminableLimits, revoked_outcome, signal_number

if TYPE_CHECKING:
    from ..worker.execution import Result
    from ..worker.worker import Worker

log = logging.getLogger("sqlq.worker")

#: Seconds between two looks for commands (and at the revoked ids) when no NOTIFY came: a backstop,
#: so it is long (every idle worker's look costs the server a statement).
POLL = 5.0
#: The same for a burst worker, which listens to nothing: its polls are how commands reach it.
BURST_POLL = 1.0

#: Seconds between two reads of the revoked table (a revoke reaches a worker by its command at
#: once; this catches one sent while the worker's connections were down).
REVOKED_REFRESH = 5.0

#: Seconds maintenance keeps a command past its expiry (``sqlq inspect`` may still read it).
KEEP = 60.0


class WorkerControl:
    """One worker's side of the control channel: its commands, its revoked ids, its terminations."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.revoked = RevokedIds()
        #: row id → signal name, for jobs being terminated in a thread (threads and solo pools)
        self.terminating: dict[str, str] = {}
        self.thread_limits: list[TerminableLimits] = []  # one per executor (threads, solo)
        self.started_at = time.time()
        self._since: dt.datetime | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_revoked = 0.0
        self._stopped = False

    # wiring into the worker -------------------------------------------------------------------

    def new_limits(self) -> TerminableLimits:
        """The time limits of one executor of a threads or solo pool, able to terminate its job."""
        limits = TerminableLimits()
        self.thread_limits.append(limits)
        return limits

    def prepare(self, conn: psycopg.Connection) -> None:
        """At start, before claiming: this worker handles the commands sent from now on, and the
        ids revoked so far (the clock is read first, so a revoke in between is seen either way)."""
        self._since = self.worker.store.control_clock(conn)
        self._read_revoked(conn)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlq-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def notified(self) -> None:
        """A command was announced (called on the listener thread: only wakes this one)."""
        self._wake.set()

    # the consumer's and pool's side (cheap: called per claim, per outcome) ----------------------

    def drop_revoked(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """The claimed jobs to run; the revoked ones are recorded REVOKED without running."""
        run, revoked = self.revoked.split(jobs)
        for job in revoked:
            log.info("task %s[%s] is revoked: not run", job.task, job.id)
            self.worker._on_result(job, revoked_outcome(job, "revoked before it started"))
        return run

    def terminated(self, job: ClaimedJob, result: Result) -> Result:
        """A job this worker was terminating ended: the exception raised in its thread becomes
        REVOKED; an outcome it reached first stands."""
        name = self.terminating.pop(job.id, None)
        if name is None or type(result) is not Outcome:
            return result
        if result.state == "FAILURE" and result.exc_type is not None and result.exc_type.endswith(".TaskTerminated"):
            result = revoked_outcome(job, f"terminated by {name} (revoke with terminate=True)")
        elif result.state != "REVOKED":  # (prefork: the pool recorded the child's death as REVOKED)
            return result  # it ended before the termination reached it
        if signals.task_revoked.has_receivers:  # Celery's signal, in the worker, for a terminated task
            signals.task_revoked.send(sender=self.worker.app.tasks.get(job.task) or job.task, terminated=True,
                                      signum=signal_number(name), expired=False, request=signals.job_request(
                                          job, self.worker.hostname, self.worker.id,
                                          self.worker.app.conf.accept_content))
        return result

    # the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff()
        worker = self.worker
        wait = 0.0  # (at once: a command may have come while the worker started)
        while not self._stopped:
            self._wake.wait(wait)
            self._wake.clear()
            wait = BURST_POLL if worker.burst else POLL
            if self._stopped:
                return
            try:
                with worker.app.connection() as conn:
                    self._serve(conn)
            except Exception as exc:  # noqa: BLE001 - control never ends a worker; retried after a backoff
                worker.outage.failed(exc, "handling control commands")
                wait = backoff.next()
                continue
            if backoff.failing:
                backoff.reset()
                worker.outage.recovered()

    def _serve(self, conn: psycopg.Connection) -> None:
        from .commands import handle

        worker = self.worker
        if self._since is None:
            self._since = worker.store.control_clock(conn)
        if time.monotonic() >= self._next_revoked:
            self._read_revoked(conn)
        if not worker.app.conf.worker_enable_remote_control:
            return  # (Celery's setting: no command is answered; revoked ids are still honoured)
        for command in worker.store.control_pending(conn, worker.id, worker.hostname, self._since):
            try:
                arguments = json_loads(command.arguments)
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                reply: Any = {"error": "the command's arguments are not a JSON object"}
                after: Callable[[], None] | None = None
            else:
                reply, after = handle(self, conn, command.command, arguments)
            try:
                text = json_dumps(reply)
            except ValueError as exc:
                text = json_dumps({"error": f"the reply could not be encoded: {exc}"})
            worker.store.control_reply(conn, command.id, worker.id, worker.hostname, text)
            if after is not None:
                after()

    def _read_revoked(self, conn: psycopg.Connection) -> None:
        self.revoked.replace(self.worker.store.revoked_ids(conn, MAX_REVOKED))
        self._next_revoked = time.monotonic() + REVOKED_REFRESH

    # facts for the commands -------------------------------------------------------------------

    def uptime(self) -> float:
        return time.time() - self.started_at

    @staticmethod
    def pid() -> int:
        return os.getpid()
