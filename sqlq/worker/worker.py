"""The worker's main loop: claim in batches, hand jobs to the pool, record outcomes in batches.

Threads in a worker process:

* the **consumer** (``Worker.run``'s thread): claims up to the free prefetch capacity with one
  statement per queue and feeds the pool (the solo pool runs the jobs right here). It sleeps on an
  event that is set by NOTIFY, by freed capacity, or by the poll timer.
* the **finisher**: records finished outcomes with one statement per batch, on its own
  connection, so PostgreSQL writes one batch while the pool runs the next.
* the **listener** (``notify.Listener``): LISTEN on the jobs channel; sets the event when one of
  our queues gets work.
* the **housekeeper**: heartbeat, promotion of due scheduled jobs, rescue of dead workers' jobs,
  expiry of old results — the cluster-wide parts one worker at a time (advisory lock) — and a read
  of the rate limits and of the paused queues about once a second (sqlq.rate_limits, ``sqlq
  queues pause``). Its connection is the worker's own
  for its lifetime and holds the worker's **liveness lock** (a session-level advisory lock): when
  the process dies the server frees the lock, and the other workers rescue its jobs about a second
  later instead of waiting for ``worker_lost_timeout``.

The listener and the housekeeper keep session state, so they connect to ``listen_database_url``
(unset: ``database_url``); behind a transaction pooler, the claims and outcomes go through it.

No database error ends a worker: each thread retries with backoff (``sqlq.outage``), prefetched
jobs keep running and their outcomes wait in memory until they can be recorded.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import psycopg

from .. import concurrency_limits, rate_limits, signals
from ..control.server import KEEP as CONTROL_KEEP
from ..control.server import WorkerControl
from ..db import usable
from ..errors import ConfigurationError, SqlqCompatibilityWarning
from ..events.worker import WorkerEvents, quiet_tasks
from ..log import job_fields
from ..names import validate_queue
from ..outage import Backoff, OutageLog, is_outage, wait_for_database
from ..store import ClaimedJob, Interrupted, Outcome, RetryRequest, Unregistered
from .autoscale import Autoscaler, parse_autoscale
from .execution import Executor, Result
from .pools import POOL_NAMES, BasePool, pool_class
from .prefetch import BASE_MULTIPLIER, Prefetch, fair_share
from .recording import Recorder
from .request import RequestHooks

if TYPE_CHECKING:
    from ..app import App
    from .pools import SoloPool

log = logging.getLogger("sqlq.worker")

#: Seconds between two looks at the workers' liveness locks, cluster-wide: each worker looks about
#: every LIVENESS_INTERVAL x the number of registered workers (``_spread``), so that one look is made
#: per interval however many workers there are, not one per worker.
LIVENESS_INTERVAL = 0.5
#: The housekeeper looks at its own session's socket this often (a poll, no round trip): a session
#: the server ended frees the worker's liveness lock, and the other workers count a lock free for
#: a second as a dead worker, so it is made again and the lock taken back within this.
HOUSE_POLL = 0.1

#: Seconds between two reads of the paused queues: a backstop, as a pause's NOTIFY makes the read at
#: once, and so does the LISTEN connection coming back (a NOTIFY may have been missed while it was down).
PAUSES_INTERVAL = 5.0


def spread(interval: float, workers: int) -> float:
    """The wait before a worker's next turn at a cluster-wide chore that one worker per ``interval``
    suffices for (liveness looks, maintenance, the scheduled jobs' backstop promotion): ``interval``
    times the registered workers, drawn between half and one and a half of that, so that the
    workers' turns interleave instead of falling together. With one worker it is about ``interval``."""
    return interval * max(1, workers) * random.uniform(0.5, 1.5)

#: A job handed back for want of its task waits this many seconds per hand-back so far, at most
#: ``UNKNOWN_TASK_MAX_DELAY``, so that the worker that does not know it does not take it straight back.
UNKNOWN_TASK_DELAY = 0.2
UNKNOWN_TASK_MAX_DELAY = 5.0


#: Why each of Celery's ``without_*`` worker switches means nothing here (one warning each).
_WITHOUT_REASONS = {
    "without_heartbeat": ("sqlq's heartbeat is not Celery's event heartbeat: it is the worker's row in "
                          "PostgreSQL that proves it alive, and without it its jobs would be rescued as a "
                          "dead worker's, so it always runs"),
    "without_mingle": ("mingle is Celery workers exchanging state (revoked ids, clocks) through the broker "
                       "at start-up; sqlq workers share that state in PostgreSQL, so there is nothing to sync"),
    "without_gossip": ("gossip is Celery workers watching each other through broker events; sqlq has no "
                       "broker events, and workers see each other's rows in PostgreSQL instead"),
}


def _celery_arguments(shutdown_grace: float | None, shutdown_timeout: float | None,
                      **switches: bool) -> float | None:
    """The warm-shutdown grace from sqlq's ``shutdown_grace`` or Celery's ``shutdown_timeout`` (the
    same thing under Celery's name; both given and different is an error, since one would be
    ignored), after warning once per ``without_*`` switch set: accepted so that Celery's worker
    parameters run unchanged, but said to have no effect rather than skipped in silence."""
    for name, given in switches.items():
        if given:
            warnings.warn(f"Worker({name}=True) has no effect in sqlq: {_WITHOUT_REASONS[name]}",
                          SqlqCompatibilityWarning, stacklevel=3)
    if shutdown_timeout is None:
        return shutdown_grace
    if shutdown_grace is not None and float(shutdown_grace) != float(shutdown_timeout):
        raise ConfigurationError(
            f"shutdown_grace={shutdown_grace!r} and shutdown_timeout={shutdown_timeout!r} differ: they are the "
            f"same setting (shutdown_timeout is Celery's name for it); give one")
    return shutdown_timeout


def _log_received(jobs: Sequence[ClaimedJob]) -> None:
    """Celery's ``Task NAME[ID] received`` (DEBUG here: a line per job at INFO would cost the drain)."""
    for job in jobs:
        log.debug("Task %s[%s] received", job.task, job.id, extra=job_fields(job.id, job.task, job.queue))


def conf_log_format(app: App) -> str:
    """The ``log_format`` setting (``--log-format`` sets it), which the prefork children follow."""
    return str(app.conf.log_format)


def _consumed_queues(queues: Sequence[str], exclude_queues: Sequence[str] | None) -> list[str]:
    """The queues to consume: ``queues`` (or the default queue) without ``exclude_queues`` (Celery's
    ``-X``). A sqlq worker consumes only the queues it is given, never every declared queue, so
    excluding removes from that list; excluding all of them leaves nothing to do, which is an error
    rather than an idle worker."""
    names = [validate_queue(q) for q in queues]
    if not exclude_queues:
        return names
    if isinstance(exclude_queues, str):
        exclude_queues = [q.strip() for q in exclude_queues.split(",") if q.strip()]
    excluded = {validate_queue(q) for q in exclude_queues}
    kept = [q for q in names if q not in excluded]
    if not kept:
        raise ConfigurationError(
            f"exclude_queues={sorted(excluded)} excludes every queue this worker would consume ({', '.join(names)}); "
            f"a sqlq worker consumes only the queues given in queues= (default: the default_queue setting), "
            f"so name the queues to consume there")
    return kept


class Worker:
    """``sqlq worker`` as an object (tests and embedding use it directly)."""

    def __init__(self, app: App, *, queues: Sequence[str] | None = None, concurrency: int | None = None,
                 pool: str | None = None, hostname: str | None = None, prefetch_multiplier: int | None = None,
                 max_tasks_per_child: int | None = None, burst: bool = False, app_path: str | None = None,
                 poll_interval: float | None = None, shutdown_grace: float | None = None,
                 install_signal_handlers: bool = False, exclude_queues: Sequence[str] | None = None,
                 shutdown_timeout: float | None = None, without_heartbeat: bool = False,
                 without_mingle: bool = False, without_gossip: bool = False,
                 autoscale: str | tuple[int, int] | None = None, max_memory_per_child: int | None = None,
                 task_events: bool | None = None):
        # exclude_queues, shutdown_timeout and without_*: Celery's worker arguments, which Celery's
        # pytest fixtures pass through celery_worker_parameters (issue #12); see _celery_arguments
        app.finalize(auto=True)  # include/imports, task_annotations, on_after_finalize (issue #12)
        self._adopt_main_twin(app)
        conf = app.conf
        self.app = app
        shutdown_grace = _celery_arguments(shutdown_grace, shutdown_timeout, without_heartbeat=without_heartbeat,
                                           without_mingle=without_mingle, without_gossip=without_gossip)
        self.queues = _consumed_queues(queues or [conf.default_queue], exclude_queues)
        self.pool_name = pool or conf.worker_pool
        if self.pool_name not in POOL_NAMES:
            raise ConfigurationError(f"unknown pool {self.pool_name!r}; choose one of: {', '.join(POOL_NAMES)}")
        self.concurrency = int(concurrency or conf.worker_concurrency or os.cpu_count() or 1)
        if self.pool_name == "solo":
            self.concurrency = 1
        self.autoscale = parse_autoscale(autoscale)
        if self.autoscale is not None:
            if self.pool_name == "solo":
                raise ConfigurationError("--autoscale needs a pool that can grow: the solo pool runs one job at a "
                                         "time; use -P threads or -P prefork")
            self.concurrency = self.autoscale[1]  # (Celery's: the pool starts at MIN)
        self.max_memory_per_child = max_memory_per_child or conf.worker_max_memory_per_child
        if self.max_memory_per_child and self.pool_name != "prefork":
            log.warning("--max-memory-per-child (worker_max_memory_per_child=%s KiB) applies to the prefork "
                        "pool only: a %s worker runs its jobs in its own process, which it cannot replace; "
                        "use -P prefork, or restart the worker from your process manager", self.max_memory_per_child,
                        self.pool_name)
        # explicit (argument, flag, setting or its variable): a fixed prefetch; else adaptive (worker/prefetch.py)
        if not prefetch_multiplier and conf.was_set("worker_prefetch_multiplier"):
            prefetch_multiplier = conf.worker_prefetch_multiplier
        fixed = max(1, int(prefetch_multiplier)) if prefetch_multiplier else None
        self.prefetch_multiplier = fixed or BASE_MULTIPLIER
        self._prefetch = Prefetch(self.concurrency, fixed)
        self.max_tasks_per_child = max_tasks_per_child or conf.worker_max_tasks_per_child
        self.burst = burst
        self.app_path = app_path
        self.poll_interval = min(float(poll_interval or conf.worker_poll_interval), 2.0)
        self.shutdown_grace = float(conf.worker_shutdown_grace if shutdown_grace is None else shutdown_grace)
        # a heartbeat slower than a third of the lost timeout would get a live worker declared dead
        self.heartbeat_interval = min(float(conf.worker_heartbeat_interval), float(conf.worker_lost_timeout) / 3)
        self._housekeeping_wake = threading.Event()
        self.install_signal_handlers = install_signal_handlers
        self.id = str(uuid.uuid4())
        # (routing) a Broadcast name in the queues means this worker's own queue of that broadcast
        from ..routing.declarations import WorkerBroadcasts

        self.broadcasts = WorkerBroadcasts(conf.task_queues, self.queues, self.id)
        self.queues = self.broadcasts.queues
        # the second key of this worker's liveness lock (a clash with another worker's only makes
        # both of them judged by their heartbeats)
        self.lock_key = None if burst else random.randint(-(1 << 31), (1 << 31) - 1)
        self.hostname = hostname or f"sqlq@{socket.gethostname()}"
        self.outage = OutageLog(log, f"worker {self.hostname}")
        self.store = app.store
        self._wake = threading.Event()
        self._done: collections.deque[tuple[ClaimedJob, Result]] = collections.deque()
        self._lost: collections.deque[ClaimedJob] = collections.deque()
        self._in_flight = 0
        # the ids of the jobs counted in _in_flight: added when claimed (the consumer), taken out
        # when their outcome is recorded or they are handed back; what RELEASE_UNKNOWN keeps
        self._holding: set[str] = set()
        # a claim failed: it may have committed and its reply been lost (RELEASE_UNKNOWN is due)
        self._claim_unknown = False
        self._flushing = 0  # outcomes the finisher took from _done and is recording now
        self._count_lock = threading.Lock()
        self._finish_wake = threading.Event()
        self._stop_mode: str | None = None  # None while running, then "warm" or "cold"
        self._stopped = threading.Event()
        self._stopping = threading.Event()  # set by stop(): cuts a backoff wait short
        self._claim_backoff = Backoff()
        self._unregistered = False
        self._registered_workers = 1  # how many workers the table holds, as of this one's last heartbeat
        self._queue_cursor = 0
        self.processed = 0
        # remote control (sqlq.control): commands, revoked ids, termination; per-task counts for stats
        self.control = WorkerControl(self)
        self._terminating = self.control.terminating  # (read per outcome: one attribute, not two)
        self.totals: collections.Counter[str] = collections.Counter()
        self.executors: list[Executor] = []
        # tasks' own request classes (Task.Request, sqlq.worker.request): their hooks run here, in
        # this process, for every pool, and only for failures (a task registered after the worker
        # started included: looked up at its first failure)
        self._request_hooks = RequestHooks(app, self.hostname, self.id, list(conf.accept_content))
        if signals.celeryd_init.has_receivers:  # Celery's first worker signal: before the pool exists
            signals.celeryd_init.send(sender=self.hostname, instance=self, conf=conf, options={
                "queues": self.queues, "concurrency": self.concurrency, "pool": self.pool_name, "burst": burst,
                "prefetch_multiplier": self.prefetch_multiplier, "max_tasks_per_child": self.max_tasks_per_child})
        # Rate limits (sqlq.rate_limits): the code's, declared at start; then the limited tasks this
        # app registers as the table names them, re-read by the housekeeper. Empty (the common
        # case): every claim is a plain CLAIM, and nothing else is done per claim.
        self.rate_limits_enabled = not conf.worker_disable_rate_limits
        self._declared_limits = rate_limits.declared_rate_limits(app) if self.rate_limits_enabled else {}
        self._limited: tuple[str, ...] = ()
        # when (time.monotonic()) to claim again for a limited task (its jobs wait for a token, or
        # a look for its jobs was put off: _claim_limited)
        self._token_due: float | None = None
        # (queue, task) → until when (time.monotonic()) the consumer claims none of its jobs: they
        # wait for a token, or there were none (rate_limits.IDLE_RECHECK). Consumer thread only;
        # emptied after each read of the table (_limits_read), so a changed rate applies at once.
        self._limit_skip: dict[tuple[str, str], float] = {}
        self._limits_read = False
        # Concurrency limits (sqlq.concurrency_limits): the code's, declared at start; then the
        # limited tasks this app registers as the table names them, re-read with the rate limits.
        # Their jobs are claimed by CLAIM_CONCURRENCY_LIMITED (_claim_limited), the other tasks' by
        # CLAIM_UNLIMITED, which leaves out every task of _not_unlimited. A claim that left a task's
        # jobs waiting for a slot is not repeated until this worker records an outcome of that task
        # (_slots_freed: the finisher's flag, which it sets before waking the consumer) or a poll
        # passes (another worker's outcome freed it: that worker claims at once after its flush).
        self._declared_concurrency = concurrency_limits.declared_concurrency_limits(app)
        self._concurrency_limited: tuple[str, ...] = ()
        self._concurrency_set: frozenset[str] = frozenset()
        self._not_unlimited: tuple[str, ...] = ()
        self._slots_freed = False
        self._both_limited: frozenset[str] = frozenset()  # (logged once: _read_rate_limits)
        # queue → until when (time.monotonic()) CLAIM_UNLIMITED is not run there: its last run found
        # nothing, and finding nothing walks past every waiting job of the limited tasks (a backlog
        # of them makes that the most of a claim round). A NOTIFY for the queue (new, promoted or
        # rescued jobs) ends the wait at once (_on_notify); else it lasts rate_limits.IDLE_RECHECK.
        self._unlimited_skip: dict[str, float] = {}
        # Paused queues (sqlq queues pause): the consumer claims from _claimable, which is
        # self.queues without them (the same list when none is paused: nothing is added per claim)
        self._paused: frozenset[str] = frozenset()
        self._unchecked: frozenset[str] = frozenset()  # queues added (add_consumer) since the last read
        self._queues_lock = threading.Lock()  # (set_queues: control thread; _read_paused: housekeeper)
        self._pauses_due = False  # set by a pause's NOTIFY: the housekeeper reads them at once
        self._queues_channel = self.store.queues_channel
        self._claimable: list[str] = self.queues
        # Task and worker events (sqlq.events, `-E`; Celery's task_events): None when off, so that
        # a worker without them tests one attribute per batch and writes nothing more
        self.events: WorkerEvents | None = None
        if conf.worker_send_task_events if task_events is None else task_events:
            self.events = WorkerEvents(self.store, self.hostname, self.heartbeat_interval, quiet_tasks(app))
        self.pool: BasePool = self._make_pool()
        self.autoscaler = Autoscaler(self, *self.autoscale) if self.autoscale is not None else None

    @property
    def capacity(self) -> int:
        """Jobs claimed ahead at most now: fixed, or the adaptive prefetch's current size."""
        return self._prefetch.capacity

    # construction ------------------------------------------------------------------------------

    @staticmethod
    def _adopt_main_twin(app: App) -> None:
        """``python -m proj.celery worker``: the tasks that ``proj.tasks`` registered on the second
        copy of ``proj.celery``'s app run here too (``loading.adopt_main_twin``)."""
        from ..loading import adopt_main_twin

        twin = adopt_main_twin(app)
        if twin is not None and twin[1]:
            log.info("this app runs as __main__; the %d task(s) its modules registered on %s "
                     "(imported again by name) run here too", len(twin[1]), twin[0])

    def _make_pool(self) -> BasePool:
        cls = pool_class(self.pool_name)
        kwargs: dict[str, Any] = {}
        if self.pool_name == "prefork":
            from ..loading import app_path as find_app_path

            path = self.app_path or find_app_path(self.app)
            if path is None:
                raise ConfigurationError(
                    "the prefork pool starts child processes that import your app by its module name, but "
                    "this app is not found at module level of any imported module (defined in __main__, or "
                    "inside a function or a fixture?); run `sqlq -A module:app worker`, or use -P threads"
                )
            kwargs = {"app_path": path, "worker_id": self.id, "hostname": self.hostname,
                      "max_tasks_per_child": self.max_tasks_per_child, "task_limits": self._hard_limit,
                      "max_memory_per_child": self.max_memory_per_child, "log_format": conf_log_format(self.app)}
        return cls(self._new_executor, self.concurrency, self._on_result, self._on_lost, **kwargs)

    def _new_executor(self) -> Executor:
        # (threads and solo: limits that can also terminate the job, for revoke(terminate=True))
        executor = Executor(self.app, self.id, self.hostname, limits=self.control.new_limits())
        self.executors.append(executor)
        return executor

    def _hard_limit(self, task_name: str) -> float | None:
        """A prefork job's hard limit, which the parent enforces: the task's own, else the app's
        ``task_time_limit`` (``--time-limit``)."""
        task = self.app.tasks.get(task_name)
        own = task.time_limit if task is not None else None
        return own if own is not None else self.app.conf.task_time_limit

    # callbacks from the pool (any thread) ------------------------------------------------------

    def _on_result(self, job: ClaimedJob, result: Result) -> None:
        if self._terminating:  # (empty but while a revoke terminates a running job)
            result = self.control.terminated(job, result)
        self._done.append((job, result))
        # Event.set takes the event's lock, contended by every pool thread and the finisher: skip it
        # while the finisher is already woken. Safe, because the finisher clears the event before it
        # empties the queue, so an outcome appended before that clear is still taken by that round.
        if not self._finish_wake.is_set():
            self._finish_wake.set()
        # half the prefetch buffer has run: the consumer may claim the next batch (see _claim)
        if not self._wake.is_set() and self._held() <= self.capacity // 2:
            self._wake.set()
        if type(result) is Outcome and result.state == "FAILURE":  # (after the outcome is handed on)
            self._request_hooks.outcome(job, result)

    def _on_lost(self, job: ClaimedJob) -> None:
        self._lost.append(job)
        self._finish_wake.set()

    # control -----------------------------------------------------------------------------------

    def set_queues(self, queues: Sequence[str]) -> None:
        """Consume these queues from the next claim on (add_consumer / cancel_consumer). Pauses
        still hold: the queues known to be paused stay out of the claims, and the housekeeper reads
        the pauses again at once for a queue just added."""
        with self._queues_lock:
            added = frozenset(queues) - frozenset(self.queues)
            self.queues = list(queues)
            self._paused = self._paused & frozenset(self.queues)
            # a queue just added is claimed once the pauses were read with it (it may be paused)
            self._unchecked = self._unchecked | added
            held = self._paused | self._unchecked
            self._claimable = [q for q in self.queues if q not in held] if held else self.queues
            self._queue_cursor = 0
        self._on_pause_notice()
        self._wake.set()

    def resized(self, concurrency: int) -> None:
        """The pool now runs ``concurrency`` jobs at once (pool_grow / pool_shrink): claim for that."""
        self.concurrency = concurrency
        self._prefetch.resized(concurrency, None if self._prefetch.adaptive else self.prefetch_multiplier)
        self._wake.set()

    def reload(self) -> None:
        """Celery's ``celery_worker.reload()``, which makes a worker see tasks registered after it
        started. Here the registry needs no reloading: a worker's threads (pools threads and solo)
        look each job's task up in ``app.tasks`` when they run it, so a task registered after the
        start runs at once. What the registry does hold that the worker read at its start is the
        tasks' rate limits, so this reads them again and declares them as a start does (a limit
        changed live with ``set_rate_limit`` gives way to the code's, as on a restart), and the task
        names the worker publishes (the other workers' hand-backs of unknown tasks read them).
        Prefork children import the app when they start, so they know only the tasks the app module
        registers on import, with or without reload()."""
        if self.events is not None:
            self.events.quiet = quiet_tasks(self.app)
        with self.app.connection() as conn:
            self._register(conn)  # (its row exists: this only publishes the task names again)
            self._declared_concurrency = concurrency_limits.declared_concurrency_limits(self.app)
            self.store.concurrency_limits_declare(conn, self._declared_concurrency)
            self._read_concurrency_limits(conn)
            if not self.rate_limits_enabled:
                return
            self._declared_limits = rate_limits.declared_rate_limits(self.app)
            self.store.rate_limits_declare(conn, self._declared_limits)
            self._read_rate_limits(conn)

    def stop(self, cold: bool = False) -> None:
        """Warm: stop claiming, hand back unstarted jobs, let running ones finish. Cold: stop now."""
        # The mode is set before the log line: a second signal can arrive while the first handler is
        # still logging (its handler then runs nested, in the middle of this one), and someone who
        # saw "warm shutdown" and pressed Ctrl-C again must get the cold one.
        if cold or self._stop_mode == "warm":
            was, self._stop_mode = self._stop_mode, "cold"
            if was != "cold":
                log.warning("cold shutdown: running jobs are handed back to be run again")
        elif self._stop_mode is None:
            self._stop_mode = "warm"
            log.warning("warm shutdown: finishing running jobs (up to %.0fs), no new ones", self.shutdown_grace)
        self._stopping.set()
        self._wake.set()

    def _handle_signal(self, signum: int, frame: Any) -> None:
        self.stop(cold=False)

    # the run -----------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or, with ``burst``, until nothing is due). Returns an exit code."""
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, self._handle_signal)
            signal.signal(signal.SIGINT, self._handle_signal)
        signals.worker_init.send(sender=self)
        from ..notify import Listener

        # Start-up waits for the database and its migrations (a worker on an old schema would fail
        # later, job by job), so that the order in which a deployment starts things does not matter.
        # (a burst worker is a one-shot command, run by scripts and CI: unless told to wait, it says
        # at once what is wrong instead of hanging)
        wait = self.app.conf.database_wait_timeout
        # The pool starts first: prefork children import the app while this process checks the
        # database and registers, rather than after, when the first claimed jobs would wait for them.
        self.pool.start()
        try:
            house = wait_for_database(self._start_up, outage=self.outage, what="the database and its migrations",
                                      timeout=wait if wait is not None or not self.burst else 0,
                                      stopped=self._stopping.is_set, sleep=self._stopping.wait)
        except BaseException:
            self.pool.join(0.0)  # (nothing was claimed: this only stops the children or threads)
            raise
        if house is None:
            self.pool.join(0.0)
            log.info("worker %s stopped before the database could be reached", self.hostname)
            return 0
        # A burst worker needs no LISTEN: it only runs what is due now, and it waits only for its own
        # outcomes (the finisher wakes it). The connection would only cost its start and its exit.
        listener = None if self.burst else Listener(self.app.listen_database_url,
                                                    [self.store.listen_control, self.store.listen_queues,
                                                     self.store.listen_jobs],
                                                    self._on_notify, self._on_listen_reconnect, name="sqlq-listen",
                                                    outage=self.outage).start()
        housekeeper = threading.Thread(target=self._housekeeping, args=(house,), name="sqlq-housekeeping",
                                       daemon=True)
        finisher = threading.Thread(target=self._finishing, name="sqlq-finisher", daemon=True)
        housekeeper.start()
        finisher.start()
        self.control.start()
        if self.autoscaler is not None:
            self.autoscaler.start()
        log.info("worker %s ready: queues=%s pool=%s concurrency=%d prefetch=%s", self.hostname,
                 ",".join(self.queues), self.pool_name, self.concurrency,
                 f"adaptive ({self.capacity}-{self._prefetch.cap})" if self._prefetch.adaptive else self.capacity)
        signals.worker_ready.send(sender=self)
        try:
            self._loop()
            self._shut_down()
        finally:
            self._stopped.set()
            if self.autoscaler is not None:
                self.autoscaler.stop()
            self._finish_wake.set()
            self._housekeeping_wake.set()
            if listener is not None:
                listener.stop()
            self.control.stop()
            housekeeper.join(timeout=5)
            finisher.join(timeout=5)
            signals.worker_shutdown.send(sender=self)
        return 0

    def _start_up(self) -> psycopg.Connection:
        """What must succeed before claiming: the schema is current, routes are declared, and this
        worker is registered and holds its liveness lock. Returns the housekeeping connection."""
        self.app.require_migrated()
        self.app.apply_routes()  # task_queues' exchanges and bindings (idempotent; none: no query)
        conn = self._connect_housekeeping()
        try:
            # (routing) bind this worker's broadcast queues, now that its registered row names them
            self.broadcasts.bind(self.app, conn)
            self.store.concurrency_limits_declare(conn, self._declared_concurrency)
            self._read_concurrency_limits(conn)  # (first: the rate limits' read leaves these tasks out)
            if self.rate_limits_enabled:
                self.store.rate_limits_declare(conn, self._declared_limits)
                self._read_rate_limits(conn)
            self.control.prepare(conn)  # (the revoked ids, before the first claim)
            self._read_paused(conn)
            self._read_consumers(conn)
            self._warn_shared_hostname(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _read_paused(self, conn: psycopg.Connection) -> None:
        """Which of this worker's queues are paused now (at start, about once a second, and at once
        when a pause or resume is announced): the consumer claims from the others only."""
        unchecked = self._unchecked
        every = frozenset(p.queue for p in self.store.paused_queues(conn))
        with self._queues_lock:
            paused = every & frozenset(self.queues)
            if paused == self._paused and not unchecked:
                return
            resumed = self._paused - paused
            self._paused = paused
            self._unchecked = self._unchecked - unchecked
            held = paused | self._unchecked
            self._claimable = [q for q in self.queues if q not in held] if held else self.queues
        if paused:
            log.info("paused queue(s), their jobs left waiting: %s", ", ".join(sorted(paused)))
        if resumed:
            log.info("resumed queue(s): %s", ", ".join(sorted(resumed)))
            self._wake.set()  # claim their jobs now

    def _read_consumers(self, conn: psycopg.Connection) -> None:
        """How many other live workers consume each of this worker's queues (read with the paused
        queues, every PAUSES_INTERVAL): an adaptive prefetch claims no more than its share of a
        shared queue's backlog (_fair)."""
        if self._prefetch.adaptive:
            rows = self.store.queue_consumers(conn, self.id, self.queues, float(self.app.conf.worker_lost_timeout))
            self._prefetch.others = {r.queue: r.others for r in rows}

    def _warn_shared_hostname(self, conn: psycopg.Connection) -> None:
        """Two live workers under one name cannot be told apart by name (``sqlq status``, Celery's
        ``-d`` destinations): say so at start, naming how to tell them apart."""
        twins = [w for w in self.store.workers(conn, float(self.app.conf.worker_lost_timeout))
                 if w.state == "online" and w.hostname == self.hostname and w.id != self.id]
        if twins:
            log.warning("another live worker is named %s (pid %s, id %s); give each worker its own name "
                        "with -n NAME", self.hostname,
                        ", ".join(str(w.pid) for w in twins), ", ".join(w.id for w in twins))

    def _on_pause_notice(self) -> None:
        """A pause or resume was announced (listener thread): the housekeeper reads them now."""
        self._pauses_due = True
        self._housekeeping_wake.set()

    def _read_rate_limits(self, conn: psycopg.Connection) -> None:
        """Which of this app's tasks the table limits now (the housekeeper calls this about once a
        second, so a limit changed live applies without a restart). A task this app does not register
        is left out: its jobs fail as unregistered here, limit or not."""
        limited = tuple(t for t in self.store.rate_limited_tasks(conn) if t in self.app.tasks)
        both = self._concurrency_set.intersection(limited)  # (written by two deploys: the code refuses both)
        if both and both != self._both_limited:
            log.error("tasks with both a rate limit and a concurrency limit: %s; only the concurrency limit is "
                      "enforced: remove one (sqlq rate-limits, sqlq concurrency-limits)", ", ".join(sorted(both)))
        self._both_limited = both
        if both:
            limited = tuple(t for t in limited if t not in both)
        self._limits_read = True  # (a rate may have changed: the consumer's waits start over)
        if limited != self._limited:
            if limited or self._limited:
                log.info("rate-limited tasks: %s", ", ".join(limited) or "none")
            self._limited = limited
            self._not_unlimited = limited + self._concurrency_limited
            self._wake.set()  # claim at once under the new limits

    def _read_concurrency_limits(self, conn: psycopg.Connection) -> None:
        """Which of this app's tasks have a concurrency limit now (with the rate limits, about once a
        second). Only the names: the limits themselves are read by each claim, under their lock."""
        limited = tuple(t for t in self.store.concurrency_limited_tasks(conn) if t in self.app.tasks)
        self._limits_read = True  # (a limit may have changed: the consumer's waits start over)
        if limited != self._concurrency_limited:
            if limited or self._concurrency_limited:
                log.info("concurrency-limited tasks: %s", ", ".join(limited) or "none")
            self._concurrency_limited = limited
            self._concurrency_set = frozenset(limited)
            self._not_unlimited = self._limited + limited
            self._wake.set()

    def _connect_housekeeping(self) -> psycopg.Connection:
        """The worker's own connection (not pooled): it holds the liveness lock, so the lock lives
        exactly as long as this session; (re)registering or a heartbeat follows the lock, never
        precedes it, so a fresh heartbeat always means a held lock."""
        conn = self.app.direct_connection()  # (a session: not through a transaction pooler)
        try:
            if self.lock_key is not None and not self.store.take_worker_lock(conn, self.lock_key):
                log.warning("worker %s: another session holds this worker's liveness lock (an old session "
                            "of ours the server has not dropped yet); rescue of its jobs falls back to "
                            "worker_lost_timeout until it is free", self.hostname)
            self._heartbeat(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _on_listen_reconnect(self) -> None:
        """The LISTEN connection is (back) up: whatever was announced while it was down is looked at
        now (jobs, pauses, control commands), rather than at each one's backstop poll."""
        self._wake.set()
        self._on_pause_notice()
        self.control.notified()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == self.store.control_channel:
            self.control.notified()
        elif channel == self._queues_channel:
            self._on_pause_notice()
        elif payload in self.queues:
            if self._unlimited_skip:
                self._unlimited_skip.pop(payload, None)
            self._wake.set()

    def _loop(self) -> None:
        """Serve until stopped. No failure ends it: a lost database, a failing claim, anything, is
        retried with backoff (reset by the first claim that succeeds) while the pool goes on running
        what it holds."""
        backoff = self._claim_backoff
        while self._stop_mode is None:
            try:
                with self.app.connection() as conn, self._claiming(conn):
                    self._serve(conn)
                return
            except Exception as exc:  # noqa: BLE001 - see the docstring
                self._claim_unknown = True
                self.outage.failed(exc, "claiming jobs")
                self._stopping.wait(backoff.next())

    @contextlib.contextmanager
    def _claiming(self, conn: psycopg.Connection) -> Iterator[None]:
        """The claiming session: claims commit without waiting for the WAL flush (why, and why it
        is safe: Store's CLAIM_SESSION_BEGIN). The pooled connection is given back with the server's
        setting, or closed: a producer must never get one whose commits do not wait."""
        self.store.begin_claiming(conn, per_transaction=self.app.pooled)
        try:
            yield
        finally:
            self.store.end_claiming(conn)  # (or closes it: the pool drops a closed connection)

    def _serve(self, conn: psycopg.Connection) -> None:
        if self._claim_unknown:
            self._release_unknown(conn)
        while self._stop_mode is None:
            self._wake.clear()
            # Read before claiming: when nothing was in flight, every outcome (a retry or a lost job
            # put back as 'available' too) was committed before this claim looked, so an empty claim
            # plus nothing to promote means the burst is over: no second round, no sleep.
            idle = self._in_flight == 0
            claimed = self._claim(conn)
            if self._claim_backoff.failing:  # the first claim since a failure: the database is back
                self._claim_backoff.reset()
                self.outage.recovered()
            if self.pool.inline:
                cast("SoloPool", self.pool).run_pending(lambda: self._stop_mode is not None)  # (the inline pool)
            if claimed:
                continue
            if self.burst and idle:
                if self._due_soon(conn):
                    continue  # due scheduled jobs were just made available: claim them now
                # An empty claim and an empty PROMOTE do not prove there is nothing to do: the
                # housekeeper (or another worker) may have promoted due jobs in between, or be
                # promoting them now (SKIP LOCKED hid them). Only then does the burst end.
                if not self.store.any_due(conn, self._claimable):  # (a paused queue's jobs wait)
                    log.info("burst: nothing left to run; exiting")
                    return
            # burst: woken by the finisher as soon as outcomes are recorded; the timeout is a backstop
            timeout = self.poll_interval if not self.burst else 0.05
            due = self._token_due
            if due is not None:  # jobs wait for a rate limit's next token: claim then (once: a claim
                self._token_due = None  # that finds them still waiting sets it again)
                timeout = min(timeout, max(due - time.monotonic(), 0.001))
            self._wake.wait(timeout)

    def _release_unknown(self, conn: psycopg.Connection) -> None:
        """After a failed claim: jobs a claim took whose reply never came are handed back (the
        consumer claims nothing meanwhile, so every other job of this worker's is in _holding)."""
        released = self.store.release_unknown(conn, self.id, set(self._holding))
        self._claim_unknown = False
        if released:
            log.warning("worker %s: %d job(s) claimed by a statement whose reply was lost with the "
                        "connection are handed back", self.hostname, released)

    def _due_soon(self, conn: psycopg.Connection) -> bool:
        """In burst mode, scheduled jobs that are already due count as work (promote them now)."""
        return self.store.promote(conn) > 0

    def _held(self) -> int:
        """Claimed jobs that have not run yet (or are running): what the prefetch capacity bounds.
        (Read without a lock: each writer orders its updates so that a read in between can only
        over-count, which delays a claim a little, never lets one exceed the capacity.)"""
        return self._in_flight - len(self._done) - len(self._lost) - self._flushing

    def _claim(self, conn: psycopg.Connection) -> int:
        """Fill free prefetch capacity; each queue gets one claim statement, starting round-robin.

        Outcomes waiting for the finisher do not count against the capacity: they hold no job back
        from other workers, and waiting for their FINISH before claiming again would serialize
        the two statements. They are bounded by a second capacity should the finisher fall behind:
        twice the prefetch, and at least 64, so that a small buffer (4 per slot: a fixed default, or
        an idle adaptive prefetch) keeps claiming while a FINISH or two are on their way."""
        in_flight = self._in_flight
        held = self._held()
        free = min(self.capacity - held, max(2 * self.capacity, 64) - in_flight)
        # claim in batches: wait until at least half the buffer is free, unless we are (nearly) idle
        if free <= 0 or (free < self.capacity // 2 and held > self.concurrency):
            return 0
        if self._not_unlimited:
            total = self._claim_limited(conn, free)
            self._prefetch.claimed(free, (), total, idle=in_flight == 0, finished=self.processed,
                                   now=time.monotonic())
            return total
        total = 0
        queues = self._claimable
        n = len(queues)
        last: list[ClaimedJob] = []
        for i in range(n):
            queue = queues[(self._queue_cursor + i) % n]
            jobs = self.store.claim(conn, self.id, queue, self._fair(conn, queue, free - total))
            if jobs:
                last = jobs
                total += len(jobs)
                self._count(len(jobs))
                self._hand_over(jobs)
            if total >= free:
                break
        self._queue_cursor = (self._queue_cursor + 1) % max(n, 1)
        self._prefetch.claimed(free, last, total, idle=in_flight == 0, finished=self.processed,
                               now=time.monotonic())
        return total

    def _fair(self, conn: psycopg.Connection, queue: str, want: int) -> int:
        """``want``, or less when other live workers consume ``queue``: an adaptive prefetch takes
        at most its share of what waits there (worker/prefetch.py), counted only for a claim larger
        than the base prefetch, which any worker may always take."""
        others = self._prefetch.shared(queue)
        if not others or want <= self._prefetch.floor:
            return want
        waiting = self.store.waiting_upto(conn, queue, want * (others + 1))
        return min(want, fair_share(waiting, others + 1, self._prefetch.floor))

    def _claim_limited(self, conn: psycopg.Connection, free: int) -> int:
        """``_claim`` when some of this app's tasks have a rate or concurrency limit: per queue, each
        rate-limited task's jobs as its bucket allows (CLAIM_RATE_LIMITED, which takes the tokens),
        each concurrency-limited task's as its free slots allow (CLAIM_CONCURRENCY_LIMITED), then the
        other tasks' jobs (CLAIM_UNLIMITED). Limited tasks come first because their tokens bound what they take,
        so they cannot crowd the others out, while a backlog of other jobs would crowd them out if
        they came last; a limited task waiting for tokens holds none of the others back.

        A limited task is not claimed again in a queue before its next token when its jobs there
        were left waiting for one, nor for ``rate_limits.IDLE_RECHECK`` when it had none there (that
        claim walks the queue); ``_token_due`` then tells the consumer when to claim again, rather
        than at the next poll.

        Within a queue, priority and FIFO order hold among each task's jobs and among the unlimited
        tasks' jobs; a limited job waiting for its token is passed by later jobs of other tasks."""
        limited = self._limited
        bounded = self._concurrency_limited
        skip = self._limit_skip
        if self._limits_read:
            self._limits_read = False
            skip.clear()
        elif self._slots_freed:  # an outcome of a concurrency-limited task: its waiting jobs may go
            self._slots_freed = False
            for key in [k for k in skip if k[1] in self._concurrency_set]:
                del skip[key]
        now = time.monotonic()
        due: float | None = None

        def held_off(queue: str, task: str) -> bool:
            """Whether (queue, task) is not to be claimed yet; its time then counts toward ``due``."""
            nonlocal due
            until = skip.get((queue, task))
            if until is None:
                return False
            if until > now:
                due = until if due is None else min(due, until)
                return True
            del skip[queue, task]
            return False

        total = 0
        queues = self._claimable
        n = len(queues)
        for i in range(n):
            queue = queues[(self._queue_cursor + i) % n]
            for task in limited:
                if total >= free:
                    break
                if held_off(queue, task):
                    continue
                claim = self.store.claim_rate_limited(conn, self.id, queue, task, free - total)
                if claim.jobs:
                    total += len(claim.jobs)
                    self._count(len(claim.jobs))
                    self._hand_over(claim.jobs)
                if claim.retry_in is not None:
                    until = skip[queue, task] = now + claim.retry_in
                    due = until if due is None else min(due, until)
                elif not claim.jobs:
                    skip[queue, task] = now + rate_limits.IDLE_RECHECK
            for task in bounded:
                if total >= free:
                    break
                if held_off(queue, task):
                    continue
                definition = self.app.tasks.get(task)
                keyed = definition is not None and definition.concurrency_key is not None
                bound = self.store.claim_concurrency_limited(conn, self.id, queue, task, free - total, keyed)
                if bound.jobs:
                    total += len(bound.jobs)
                    self._count(len(bound.jobs))
                    self._hand_over(bound.jobs)
                if bound.waiting:  # no free slot: claimed again when one frees (see _slots_freed)
                    until = skip[queue, task] = now + self.poll_interval
                    due = until if due is None else min(due, until)
                elif not bound.jobs:
                    skip[queue, task] = now + rate_limits.IDLE_RECHECK
            if total < free:
                resume = self._unlimited_skip.get(queue)
                if resume is not None and resume > now:
                    due = resume if due is None else min(due, resume)
                    continue
                jobs = self.store.claim_unlimited(conn, self.id, queue, free - total, self._not_unlimited)
                if jobs:
                    self._unlimited_skip.pop(queue, None)
                    total += len(jobs)
                    self._count(len(jobs))
                    self._hand_over(jobs)
                else:
                    self._unlimited_skip[queue] = now + rate_limits.IDLE_RECHECK
            if total >= free:
                break
        self._queue_cursor = (self._queue_cursor + 1) % max(n, 1)
        self._token_due = due
        return total

    def _hand_over(self, jobs: list[ClaimedJob]) -> None:
        """Claimed jobs to the pool, by whichever claim statement took them: the revoked ones are
        recorded REVOKED instead of run; task-received events (before the pool has them, so received
        comes before started), Celery's task_received signal and the DEBUG lines, once per batch."""
        self._holding.update(job.id for job in jobs)
        if self.control.revoked.ids:
            jobs = self.control.drop_revoked(jobs)
        if self.events is not None:
            self.events.received(jobs)
            self._finish_wake.set()  # (the finisher writes them within FLUSH_INTERVAL)
        if signals.task_received.has_receivers:
            signals.send_task_received(self, jobs)
        if log.isEnabledFor(logging.DEBUG):
            _log_received(jobs)
        self.pool.submit(jobs)

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._in_flight += delta
            if delta < 0:
                self.processed -= delta

    def _finishing(self) -> None:
        """The finisher thread: flush outcomes as they come, until the worker has stopped. While the
        database is away they wait in memory; recorded late, the guards still make them safe."""
        backoff = Backoff()
        while not self._stopped.is_set():
            if not backoff.failing:
                due = self._events_due()
                self._finish_wake.wait(self.poll_interval if due is None else min(due, self.poll_interval))
            self._finish_wake.clear()
            due = self._events_due()
            if not (self._done or self._lost or due == 0.0):
                continue
            try:
                with self.app.connection() as conn:
                    while self._done or self._lost:
                        self._flush(conn)
                    if self._events_due() == 0.0:
                        self._write_events(conn)
            except Exception as exc:  # noqa: BLE001 - outcomes stay queued; retried after the backoff
                self.outage.failed(exc, "recording outcomes")
                self._stopped.wait(backoff.next())
                continue
            if backoff.failing:
                backoff.reset()
                self.outage.recovered()

    def _flush(self, conn: psycopg.Connection) -> None:
        """Record every finished outcome: one FINISH and at most one RETRY statement per batch.

        If a statement fails, the batch goes back in the queue to be recorded on the next try
        (the worker's guard makes a repeated FINISH harmless)."""
        batch = []
        while self._done:
            batch.append(self._done.popleft())
        lost = []
        while self._lost:
            lost.append(self._lost.popleft())
        if not batch and not lost:
            return
        # Being recorded, these no longer hold capacity: counting them until their FINISH returned
        # made the consumer wait for every FINISH when the buffer is small (the default prefetch).
        self._flushing = len(batch) + len(lost)
        outcomes = [r for _, r in batch if type(r) is Outcome]  # (final classes: type() is isinstance)
        retries: list[RetryRequest] = []
        interrupted: list[Interrupted] = []
        unregistered: list[Unregistered] = []
        if len(outcomes) < len(batch):  # the rest, sorted only when there is a rest
            retries = [r for _, r in batch if type(r) is RetryRequest]
            interrupted = [r for _, r in batch if type(r) is Interrupted]
            unregistered = [r for _, r in batch if type(r) is Unregistered]
        late: list[str] = []
        if self.events is not None and batch:
            early, late = self.events.finished(batch)
            if early:  # (retries, hand-backs: before they can be claimed again, after their received)
                self._write_events(conn, early)
        try:
            self._record(conn, outcomes, retries, interrupted, lost, unregistered)
        except BaseException:
            self._flushing = 0
            self._done.extendleft(reversed(batch))
            self._lost.extendleft(reversed(lost))
            raise
        self._flushing = 0
        if late:
            assert self.events is not None
            self.events.queue(late)
        self.totals.update([job.task for job, _ in batch])  # (inspect stats' per-task counts)
        if self._concurrency_set:
            bounded = self._concurrency_set
            if any(job.task in bounded for job, _ in batch) or any(job.task in bounded for job in lost):
                self._slots_freed = True  # (before the wake: the consumer's next claim sees it)
        holding = self._holding
        for job, _ in batch:
            holding.discard(job.id)
        for job in lost:
            holding.discard(job.id)
        self._count(-(len(batch) + len(lost)))
        self._wake.set()  # capacity freed: the consumer may claim again

    def _worker_event(self, conn: psycopg.Connection, offline: bool = False) -> None:
        """worker-online/heartbeat/offline; a failure is logged and never stops the heartbeat or
        the shutdown it rides on."""
        assert self.events is not None
        try:
            if offline:
                self.events.offline(conn, self._in_flight, self.processed)
            else:
                self.events.heartbeat(conn, self._in_flight, self.processed)
        except Exception as exc:  # noqa: BLE001 - the heartbeat itself is what keeps the worker alive
            self.outage.failed(exc, "writing a worker event")

    def _write_events(self, conn: psycopg.Connection, more: Sequence[str] = ()) -> None:
        """The queued events, then ``more``, in one statement: a failure here (an outage) costs
        these events, never an outcome, which is recorded (or retried) as without events."""
        assert self.events is not None
        try:
            self.events.flush(conn, more)
        except Exception as exc:  # noqa: BLE001 - the outcomes stand; the finisher's next round reconnects
            self.outage.failed(exc, "writing task events")

    def _events_due(self) -> float | None:
        """Seconds until the finisher writes the queued events (None: none, or events off)."""
        return self.events.due_in() if self.events is not None else None

    def _record(self, conn: psycopg.Connection, outcomes: Sequence[Outcome], retries: Sequence[RetryRequest],
                interrupted: Sequence[Interrupted], lost: Sequence[ClaimedJob],
                unregistered: Sequence[Unregistered] = ()) -> None:
        """FINISH, RETRY and LOST (for interrupted attempts, rerun: they did nothing; for jobs lost
        here, as the task's acks_late says) for one flush. A statement refused for its data is split until
        the poison outcomes are alone, and those are recorded as FAILURE saying why
        (worker/recording.py), so one of them never blocks the others; a connection error
        propagates (the batch is kept and recorded after the outage)."""
        recorder = Recorder(self.store, conn, self.id)
        if outcomes:
            recorder.finish(outcomes)
        if retries:
            recorder.retry(retries)
            if any(r.delay < self.poll_interval for r in retries):
                self._housekeeping_wake.set()  # promote soon-due retries without waiting a poll
        max_lost = self.app.conf.worker_lost_max_attempts
        if interrupted:
            requeued, failed = recorder.lost(interrupted, max_lost, rerun=True)
            log.warning("%d job(s) whose connection broke mid-task: %d handed back to run again, %d failed "
                        "after too many interrupted attempts", len(interrupted), requeued, failed)
        if lost:
            requeued, failed = recorder.lost(lost, max_lost)
            log.warning("%d interrupted job(s): %d handed back, %d failed after too many lost workers",
                        len(lost), requeued, failed)
        if unregistered:
            self._hand_back(conn, unregistered)

    def _hand_back(self, conn: psycopg.Connection, jobs: Sequence[Unregistered]) -> None:
        """Jobs of tasks this app does not register (the executor logged each at ERROR): back to
        wait for a live worker of their queue that registers the task, else FAILURE NotRegistered
        (HAND_BACK decides, from the task names the workers publish)."""
        conf = self.app.conf
        back, failed = self.store.hand_back(conn, self.id, [(j.id, j.attempt) for j in jobs],
                                            timeout=float(conf.worker_lost_timeout),
                                            max_handbacks=int(conf.worker_unknown_task_handbacks),
                                            delay=UNKNOWN_TASK_DELAY, max_delay=UNKNOWN_TASK_MAX_DELAY)
        if back:
            self._housekeeping_wake.set()  # (promote them when due, not a poll later)
        if failed:
            log.error("%d job(s) of task(s) %s recorded as FAILURE NotRegistered: no live worker of their queue "
                      "registers the task (or they were handed back worker_unknown_task_handbacks=%s times)",
                      failed, ", ".join(sorted({repr(j.task) for j in jobs})), conf.worker_unknown_task_handbacks)

    def _shut_down(self) -> None:
        """Hand back, finish and record what this worker holds. A database that is away at shutdown
        is waited for until the shutdown grace has passed; what is still unrecorded then is left to
        the other workers' rescue (the jobs run again: at-least-once), and the worker exits."""
        deadline = time.monotonic() + (self.shutdown_grace if self._stop_mode != "cold" else 2.0)
        backoff = Backoff()
        while True:
            try:
                with self.app.connection() as conn:
                    self._shutdown(conn)
                self.outage.recovered()
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline, then given up
                self.outage.failed(exc, "shutting down")
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(backoff.next(), max(deadline - time.monotonic(), 0.0)))
        if self.pool.running():
            self.pool.terminate()
        log.error("worker %s: the database stayed unavailable through the shutdown; %d job(s) not "
                  "recorded here will be rescued and run again by another worker", self.hostname,
                  self._in_flight)

    def _shutdown(self, conn: psycopg.Connection) -> None:
        unstarted = self.pool.take_unstarted()
        if unstarted:
            self.store.release(conn, self.id, [(j.id, j.attempt) for j in unstarted])
            self._holding.difference_update(j.id for j in unstarted)
            with self._count_lock:
                self._in_flight -= len(unstarted)
            log.info("handed back %d prefetched job(s) that had not started", len(unstarted))
        if self._stop_mode != "cold":
            deadline = time.monotonic() + self.shutdown_grace
            while self.pool.running() and self._stop_mode != "cold" and time.monotonic() < deadline:
                self._flush(conn)
                self._wake.wait(0.05)
                self._wake.clear()
        if self.pool.running():
            interrupted = self.pool.terminate()
            self._flush(conn)
            if interrupted:
                self._record(conn, [], [], [], interrupted)
        else:
            self.pool.join(1.0)
        self._flush(conn)
        if self.events is not None:
            self._write_events(conn)  # (what is queued: the last outcomes' events)
        self._unregistered = True  # (the housekeeper must not register this worker again)
        self.store.unregister_worker(conn, self.id)
        if self.events is not None:
            self._worker_event(conn, offline=True)
        log.info("worker %s stopped (%s shutdown); %d job(s) processed", self.hostname,
                 self._stop_mode or "burst", self.processed)

    # housekeeping ------------------------------------------------------------------------------

    def _housekeeping(self, conn: psycopg.Connection | None) -> None:
        """Heartbeat, liveness checks, maintenance and promotion on the worker's own connection.
        When that connection breaks it is made again (taking the liveness lock back first)."""
        conf = self.app.conf
        backoff = Backoff()
        # registering wrote the first heartbeat; maintenance runs at once (jobs of dead workers are due)
        next_beat, next_liveness, next_maintenance = time.monotonic() + self.heartbeat_interval, 0.0, 0.0
        next_promote = 0.0  # when the next scheduled job is due, or this worker's backstop turn
        # (start-up read the limits: the concurrency limits always, the rate limits if this worker enforces them)
        next_limits = time.monotonic() + rate_limits.REFRESH_INTERVAL
        next_pauses = time.monotonic() + PAUSES_INTERVAL  # (start-up read them)
        try:
            while not self._stopped.is_set():
                try:
                    # (usable: a session the server ended, a terminated backend say, is seen at once
                    # from its socket, so the liveness lock is taken back well within its grace)
                    if conn is None or conn.closed or conn.broken or not usable(conn):
                        if conn is not None:
                            conn.close()
                        conn = None
                        conn = self._connect_housekeeping()
                        next_beat = time.monotonic() + self.heartbeat_interval
                    now = time.monotonic()
                    if now >= next_beat:
                        self._heartbeat(conn)
                        next_beat = now + self.heartbeat_interval
                    workers = self._registered_workers
                    if now >= next_liveness:
                        self._check_liveness(conn)
                        next_liveness = now + spread(LIVENESS_INTERVAL, workers)
                    if now >= next_maintenance:
                        self._maintain(conn)
                        next_maintenance = now + spread(float(conf.worker_maintenance_interval), workers)
                    if now >= next_limits:
                        self._read_concurrency_limits(conn)
                        if self.rate_limits_enabled:
                            self._read_rate_limits(conn)
                        next_limits = now + rate_limits.REFRESH_INTERVAL
                    if now >= next_pauses or self._pauses_due:
                        self._pauses_due = False
                        self._read_paused(conn)
                        self._read_consumers(conn)
                        next_pauses = now + PAUSES_INTERVAL
                    if now >= next_promote:
                        next_promote = self._promote(conn, workers)
                except Exception as exc:  # noqa: BLE001 - keep housekeeping alive through anything
                    self.outage.failed(exc, "housekeeping")
                    if is_outage(exc) and conn is not None:
                        conn.close()
                    self._stopped.wait(backoff.next())
                    continue
                if backoff.failing:
                    backoff.reset()
                    self.outage.recovered()
                soonest = min(next_beat, next_liveness, next_maintenance, next_limits, next_pauses,
                              next_promote) - time.monotonic()
                # (in slices of HOUSE_POLL at most: the session is looked at between them)
                if self._housekeeping_wake.wait(min(max(soonest, 0.001), HOUSE_POLL)):  # set by short retries, pauses, stop
                    next_promote = 0.0  # (a retry due soon: promote it when due, not at the backstop)
                self._housekeeping_wake.clear()
        finally:
            if conn is not None:
                conn.close()  # the liveness lock goes with the session

    def _promote(self, conn: psycopg.Connection, workers: int) -> float:
        """Promote the due scheduled jobs; returns when to do it next: when the next scheduled job is
        due, or at this worker's backstop turn (``spread`` over the poll interval: a job scheduled
        since, by a producer, is promoted by whichever worker's turn comes first, and that worker then
        knows when the next one is due), or at once when a full batch leaves more due."""
        limit = 5000
        promoted = self.store.promote(conn, limit)
        now = time.monotonic()
        if promoted >= limit:
            return now
        due_in = self.store.next_scheduled_in(conn)
        backstop = now + spread(self.poll_interval, workers)
        return backstop if due_in is None else min(now + max(due_in, 0.001), backstop)

    def _register(self, conn: psycopg.Connection) -> None:
        self.store.register_worker(conn, id=self.id, hostname=self.hostname, pid=os.getpid(),
                                   queues=self.queues, concurrency=self.concurrency, pool=self.pool_name,
                                   lock_key=self.lock_key, tasks=sorted(self.app.tasks))

    def _heartbeat(self, conn: psycopg.Connection) -> None:
        workers = self.store.heartbeat(conn, self.id)
        if workers is not None:
            self._registered_workers = workers
        elif not self._unregistered:
            # Its jobs went back to the queue (or were failed): those it has not started are no longer
            # its to run, and running them too would run them twice. The running ones end here, and
            # their outcomes are refused by FINISH's guard.
            dropped = self.pool.take_buffered()
            if dropped:
                # (guarded by worker and attempt: a no-op for the rescued; the row may also have gone
                # another way, before any RESCUE, and then this hands the jobs back)
                self.store.release(conn, self.id, [(j.id, j.attempt) for j in dropped])
                self._holding.difference_update(j.id for j in dropped)
                with self._count_lock:
                    self._in_flight -= len(dropped)
            if self.processed or self._in_flight or dropped:
                log.warning("this worker was presumed dead (heartbeat row gone) and its jobs rescued; "
                            "%d prefetched job(s) it had not started are left to the queue; registering "
                            "again", len(dropped))
            self._register(conn)
        if self.events is not None:
            self._worker_event(conn)
        if signals.heartbeat_sent.has_receivers:
            signals.heartbeat_sent.send(sender=self)

    def _check_liveness(self, conn: psycopg.Connection) -> None:
        """About every half second one worker (their turns are ``spread``) looks at the liveness
        locks; a worker whose lock stayed free for a second is dead, and its jobs are rescued at once."""
        conf = self.app.conf
        with conn.transaction():
            if not self.store.try_xact_lock(conn, self.store.lock_key("liveness")):
                return
            if not self.store.workers_liveness(conn, float(conf.worker_lost_timeout)):
                return
            requeued, failed = self.store.rescue(conn, float(conf.worker_lost_timeout),
                                                 int(conf.worker_lost_max_attempts))
        if requeued or failed:
            log.warning("rescued jobs of dead workers: %d handed back, %d failed", requeued, failed)

    def _maintain(self, conn: psycopg.Connection) -> None:
        """Cluster-wide chores, done by whichever worker holds the advisory lock this round."""
        conf = self.app.conf
        with conn.transaction():
            if not self.store.try_xact_lock(conn, self.store.lock_key("maintenance")):
                return
            requeued, failed = self.store.rescue(conn, float(conf.worker_lost_timeout),
                                                 int(conf.worker_lost_max_attempts))
            expired = self.store.expire_results(conn, float(conf.result_expires))
            self.store.control_prune(conn, CONTROL_KEEP)
            self.store.unique_prune(conn)
            self.store.expire_dead_workers(conn, float(conf.worker_dead_retention))
            dropped = self.store.expire_events(conn, float(conf.events_retention))
        if dropped:
            log.debug("deleted %d event(s) older than %ss", dropped, conf.events_retention)
        if requeued or failed:
            log.warning("rescued jobs of lost workers: %d handed back, %d failed", requeued, failed)
        if expired:
            log.info("deleted %d result(s) older than %ss", expired, conf.result_expires)
