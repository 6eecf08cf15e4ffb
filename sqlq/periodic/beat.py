"""``sqlq beat``: send each tick of each periodic task exactly once, however many beats run.

Run one beat or ten; there is no leader election and no lock file. Each pass of each beat:

1. claims the schedules whose cursor (``next_fire_at``) has come, with ``SELECT ... FOR UPDATE
   SKIP LOCKED``: a schedule being fired by another beat is skipped, not waited for;
2. for each, asks :mod:`sqlq.periodic.timing` which ticks are due, builds the jobs through the app's
   normal path (``App.build_job``), inserts one ``schedule_ticks`` row per tick ``ON CONFLICT DO
   NOTHING``, enqueues the jobs whose tick row is new, and moves the cursor past now;
3. commits: the tick rows, the jobs, the cursor and the workers' wake-up become visible together.

So a tick is sent at most once (its row's primary key; the row lock serializes beats on one
schedule) and at least once while any beat runs (a beat that dies before committing leaves the row
unchanged, and its lock goes with its connection, so the next beat's pass sends the tick). Time is
the database's clock unless a ``clock`` is injected (tests), never a beat host's.

Missed ticks (every beat was down): ``beat_catchup='latest'`` sends only the newest one;
``'backfill'`` sends each, at most ``beat_backfill_limit`` per schedule (the newest ones; older
ones are skipped with a warning), so a long outage cannot flood the queues.

A schedule that cannot be sent (invalid definition, task not registered in this app, a send that
fails) gets ``last_error`` and a log line naming it; the other schedules carry on.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from datetime import tzinfo as TzInfo
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import psycopg

from .. import signals
from ..errors import ConfigurationError, ScheduleError, SqlqError
from ..outage import Backoff, OutageLog, wait_for_database
from .definitions import Definition, SyncReport, build_periodic_job, check_registered, sync_config
from .timing import Schedule, due_ticks, next_fire, prev_fire

if TYPE_CHECKING:
    from ..app import App
    from ..store import ScheduleRow

log = logging.getLogger("sqlq.beat")

__all__ = ["Beat", "Fired"]

#: A schedule whose definition fails on this host (e.g. time zone data missing) is retried this late.
ERROR_RETRY = timedelta(seconds=60)
#: Tick rows older than this (before the newest tick sent) are pruned; the cursor never goes back.
TICK_RETENTION = timedelta(days=1)
#: Shortest sleep between passes, so beats never spin while another beat holds a due schedule.
MIN_WAIT = 0.02
#: After a failed pass (database unreachable), wait this long at most before the next attempt.
MAX_ERROR_WAIT = 5.0

_MICROSECOND = timedelta(microseconds=1)


class Fired(NamedTuple):
    """One tick sent: which schedule, which tick (UTC), and the id of the job it enqueued."""

    schedule: str
    tick: datetime
    job_id: str


class Beat:
    """The scheduler loop: ``Beat(app).run()``; tests drive it with ``run_once(now)``.

    ``clock`` returns the current time (aware); by default the database's clock. ``sleep(seconds)``
    waits between passes; by default an interruptible wait that :meth:`stop` cuts short.
    """

    def __init__(self, app: App, *, clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], Any] | None = None, name: str | None = None, batch: int = 100,
                 sync: bool = True, install_signal_handlers: bool = False):
        app.finalize(auto=True)  # include/imports, task_annotations, on_after_finalize (issue #12)
        conf = app.conf
        self.app = app
        self.store = app.store
        self.clock = clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.batch = max(1, int(batch))
        self.sync = sync
        self.install_signal_handlers = install_signal_handlers
        self.policy = conf.beat_catchup
        if self.policy not in ("latest", "backfill"):
            raise ConfigurationError(f"beat_catchup must be 'latest' or 'backfill', got {self.policy!r}")
        self.backfill_limit = conf.beat_backfill_limit
        if isinstance(self.backfill_limit, bool) or not isinstance(self.backfill_limit, int) or self.backfill_limit < 1:
            raise ConfigurationError(f"beat_backfill_limit must be a positive integer, got {self.backfill_limit!r}")
        self.interval = float(conf.beat_interval)
        if not self.interval > 0:
            raise ConfigurationError(f"beat_interval must be a positive number of seconds, got {self.interval!r}")
        self._stopping = threading.Event()
        self._sleep = sleep or self._stopping.wait
        self.outage = OutageLog(log, f"beat {self.name}")
        self.embedded = False  # run by start_thread (sqlq worker -B): beat_embedded_init, not beat_init

    # control -----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the current pass, then return from :meth:`run`."""
        self._stopping.set()

    def _handle_signal(self, signum: int, frame: Any) -> None:
        log.info("beat %s: stopping (signal %d)", self.name, signum)
        self.stop()

    def start_thread(self) -> threading.Thread:
        """Run in a daemon thread (``sqlq worker -B``); :meth:`stop` and join it to end."""
        self.embedded = True
        thread = threading.Thread(target=self._run_logged, name="sqlq-beat", daemon=True)
        thread.start()
        return thread

    def _run_logged(self) -> None:
        try:
            self.run()
        except Exception:
            log.exception("beat %s stopped by an error; periodic tasks are not sent from this process", self.name)

    # the loop ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Sync ``beat_schedule``, then send due ticks until stopped. Returns an exit code.

        Nothing the database does ends the loop: start-up waits for it (and its migrations), a failed
        pass is retried with backoff (reset by the next pass that succeeds), and the outage is
        logged once when it starts and once when it ends."""
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, self._handle_signal)
            signal.signal(signal.SIGINT, self._handle_signal)
        (signals.beat_embedded_init if self.embedded else signals.beat_init).send(sender=self)
        started = wait_for_database(self._start_up, outage=self.outage, what="the database and its migrations",
                                    timeout=self.app.conf.database_wait_timeout, stopped=self._stopping.is_set,
                                    sleep=self._stopping.wait)
        if started is None:
            log.info("beat %s stopped before the database could be reached", self.name)
            return 0
        backoff = Backoff(first=0.2, cap=MAX_ERROR_WAIT)
        while not self._stopping.is_set():
            try:
                self.run_once()
                wait = self.seconds_until_due()
            except Exception as exc:  # noqa: BLE001 - keep beating through anything; the next pass retries
                self.outage.failed(exc, "pass")
                wait = backoff.next()
            else:
                if backoff.failing:
                    backoff.reset()
                    self.outage.recovered()
            if not self._stopping.is_set():
                self._sleep(wait)
        log.info("beat %s stopped", self.name)
        return 0

    def _start_up(self) -> bool:
        self.app.require_migrated()
        if self.sync:
            report = self.sync_config()
            log.info("beat %s ready: %d schedule(s) from beat_schedule, %d in error; catch-up %s",
                     self.name, len(report.synced), len(report.errors), self.policy)
        return True

    def sync_config(self, now: datetime | None = None) -> SyncReport:
        """Write ``app.conf.beat_schedule`` to the schedules table (see :mod:`sqlq.periodic.definitions`)."""
        with self.app.connection() as conn:
            return sync_config(self.app, conn, now or self._clock_now())

    def run_once(self, now: datetime | None = None) -> list[Fired]:
        """One pass: send every due tick (as of ``now``, default the clock). Returns what was sent."""
        fired: list[Fired] = []
        with self.app.connection() as conn:
            while True:
                with conn.transaction():
                    current = now or self._now(conn)
                    rows = self.store.claim_due_schedules(conn, current, self.batch)
                    for row in rows:
                        fired.extend(self._fire(conn, row, current))
                if len(rows) < self.batch:
                    return fired

    def seconds_until_due(self) -> float:
        """How long the loop may sleep: until the earliest due schedule, at most ``beat_interval``
        (so schedules added meanwhile are seen), at least ``MIN_WAIT``."""
        with self.app.connection() as conn:
            db_now, due = self.store.schedule_next_due(conn)
        if due is None:
            return self.interval
        now = self.clock() if self.clock is not None else db_now
        return min(max((due - now).total_seconds(), MIN_WAIT), self.interval)

    def _now(self, conn: psycopg.Connection) -> datetime:
        return self.clock() if self.clock is not None else self.store.schedule_clock(conn)

    def _clock_now(self) -> datetime | None:
        return self.clock() if self.clock is not None else None

    # one schedule --------------------------------------------------------------------------------

    def _fire(self, conn: psycopg.Connection, row: ScheduleRow, now: datetime) -> list[Fired]:
        """Send one claimed schedule's due ticks and move its cursor; errors stay with this schedule."""
        definition = Definition.from_row(row)
        try:
            schedule, zone = definition.compile()
        except ScheduleError as exc:
            return self._failed(conn, definition, str(exc), now + ERROR_RETRY)
        try:
            upcoming: datetime | None = next_fire(schedule, now, zone)
        except ScheduleError as exc:
            return self._failed(conn, definition, f"schedule {definition.name!r}: {exc}", None)
        try:
            check_registered(self.app, definition)
        except ScheduleError as exc:
            return self._failed(conn, definition, f"{exc}; its due tick was skipped", upcoming)
        ticks = self._due(definition, schedule, zone, cast(datetime, row.next_fire_at), now)  # (claimed: due)
        try:
            with conn.transaction():  # a savepoint: a failed send undoes this schedule only
                fired = self._send(conn, definition, ticks)
                self.store.advance_schedule(conn, definition.name, next_fire_at=upcoming,
                                            last_fire_at=fired[-1].tick if fired else None, fired=len(fired),
                                            prune_before=ticks[0] - TICK_RETENTION if ticks else None)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise  # the connection is gone: the whole pass is retried, nothing was committed
        except Exception as exc:
            if not isinstance(exc, SqlqError | psycopg.Error):
                log.exception("schedule %r: unexpected error while sending", definition.name)
            message = f"schedule {definition.name!r}: cannot send task {definition.task!r}: {exc}"
            return self._failed(conn, definition, f"{message}; its due tick was skipped", upcoming)
        return fired

    def _due(self, definition: Definition, schedule: Schedule, zone: TzInfo, cursor: datetime,
             now: datetime) -> list[datetime]:
        """The ticks to send now: those at or after the cursor and at or before ``now``."""
        since = cursor - _MICROSECOND  # the cursor is itself the first unsent tick
        if self.policy == "latest":
            return due_ticks(schedule, since, now, zone, policy="latest")
        limit = self.backfill_limit
        ticks = due_ticks(schedule, since, now, zone, policy="backfill", limit=limit + 1)
        if len(ticks) <= limit:
            return ticks
        newest = [cast(datetime, prev_fire(schedule, now, zone))]  # (more than limit ticks are due)
        while len(newest) < limit:
            newest.append(cast(datetime, prev_fire(schedule, newest[-1] - _MICROSECOND, zone)))
        log.warning("schedule %r: more than %d ticks were missed since %s; sending the newest %d "
                    "(beat_backfill_limit) and skipping the older ones", definition.name, limit,
                    cursor.isoformat(), limit)
        return newest[::-1]

    def _send(self, conn: psycopg.Connection, definition: Definition, ticks: Sequence[datetime]) -> list[Fired]:
        """Tick rows and their jobs, in the caller's transaction; a tick that has a row is not resent."""
        if not ticks:
            return []
        specs = [build_periodic_job(self.app, definition, tick) for tick in ticks]
        new = self.store.insert_ticks(conn, definition.name, ticks, [s.id for s in specs], self.name)
        send = [s for s in specs if s.id in new]
        for spec in send:
            if spec.on_conflict == "error":  # a tick's job whose key is held is skipped, never a failed round
                spec.on_conflict = "skip"
        if send:
            for spec, result in zip(send, self.app.enqueue(send, connection=conn), strict=True):
                if result.id != spec.id:
                    log.info("schedule %r: tick sent no job: its unique key %r is held by job %s",
                             definition.name, spec.unique_key, result.id)
        fired = [Fired(definition.name, tick, spec.id) for tick, spec in zip(ticks, specs, strict=True)
                 if spec.id in new]
        for item in fired:
            log.info("schedule %r: sent %s[%s] for tick %s", item.schedule, definition.task, item.job_id,
                     item.tick.isoformat())
        if len(fired) < len(ticks):
            log.warning("schedule %r: %d tick(s) had already been sent and were not sent again",
                        definition.name, len(ticks) - len(fired))
        return fired

    def _failed(self, conn: psycopg.Connection, definition: Definition, message: str,
                next_fire_at: datetime | None) -> list[Fired]:
        """Record why a schedule sent nothing, and when to look at it again (None: never)."""
        log.error("%s", message)
        self.store.advance_schedule(conn, definition.name, next_fire_at=next_fire_at, last_error=message)
        return []
