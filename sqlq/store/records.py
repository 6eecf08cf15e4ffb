"""What goes into the store and what comes out of it, as named records.

What a caller hands in to be written is a dataclass. Every row a ``Store`` method returns is a
NamedTuple here whose field order is the column order of the statement that produces it: callers
read ``row.state``, never ``row[0]`` (the records still unpack like the tuples they replace).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, final


class ClaimedJob(NamedTuple):
    """A job as CLAIM hands it to a worker: arguments and headers stay text (the worker decodes them
    where it runs them, a prefork child included), and ``attempt`` is the guard every later write of
    the worker for this job must match."""

    id: str
    seq: int
    task: str
    queue: str
    priority: int
    args: str | None
    kwargs: str | None
    payload: bytes | None
    content_type: str
    headers: str | None
    expired: bool
    attempt: int
    retries: int
    acks_late: bool
    group_id: str | None


@final  # (the prefork wire format tells them apart by exact type)
@dataclass(slots=True)
class Outcome:
    """What happened to one claimed job, ready for the batched FINISH."""

    id: str
    attempt: int
    state: str  # SUCCESS | FAILURE | EXPIRED | REVOKED
    result: str | None = None  # JSON text
    result_payload: bytes | None = None
    result_content_type: str | None = None
    exc_type: str | None = None
    exc_message: str | None = None
    traceback: str | None = None
    # when the task started (seconds since the epoch) and how long it ran: the executor's, for
    # the task-started and task-succeeded/failed events (None: the task never ran)
    started: float | None = None
    runtime: float | None = None


@final  # (the prefork wire format tells them apart by exact type)
@dataclass(slots=True)
class RetryRequest:
    """Run the job again ``delay`` seconds after RETRY is recorded (the database's clock), or at
    ``eta`` (seconds since the epoch, UTC) when ``retry(eta=)`` named a moment, as apply_async's eta
    does: then the worker's clock plays no part."""

    id: str
    attempt: int
    delay: float
    error: str | None
    eta: float | None = None
    traceback: str | None = None  # the attempt's, kept until the next one (AsyncResult.traceback)


@final  # (the prefork wire format tells them apart by exact type)
@dataclass(slots=True)
class Interrupted:
    """The attempt was cut off and did nothing (a transactional task whose connection broke: its
    writes rolled back), so the job runs again, counted like an attempt lost to a crash (LOST)."""

    id: str
    attempt: int
    reason: str


@final  # (the prefork wire format tells them apart by exact type)
@dataclass(slots=True)
class Unregistered:
    """The job's task is not registered in this worker's app: nothing ran, and the job is handed
    back for a worker that knows the task, or failed NotRegistered when none does (HAND_BACK)."""

    id: str
    attempt: int
    task: str


@dataclass(slots=True)
class JobSpec:
    """One job to enqueue, as the store needs it (already encoded)."""

    id: str
    task: str
    queue: str
    priority: int
    content_type: str
    args: str | None
    kwargs: str | None
    payload: bytes | None
    headers: str
    eta: dt.datetime | None = None
    countdown: float | None = None
    expires_at: dt.datetime | None = None
    expires_in: float | None = None
    acks_late: bool = True
    group_id: str | None = None
    # Routed through an exchange (PUBLISH picks the queues in SQL; ``queue`` is then unused).
    exchange: str | None = None
    routing_key: str | None = None
    # The row ids of the first job of the line and of the job that sent this one (a job sent from a
    # running task); None for a job sent from outside any task.
    root_id: str | None = None
    parent_id: str | None = None
    # The key the task's concurrency_key computed for this call (sqlq.concurrency_limits); None
    # for a task without one.
    concurrency_key: str | None = None
    # Unique jobs (store/unique.py): the key, the seconds it stays held from the enqueue, and what a
    # call whose key is held does ('skip', 'replace' or 'error'); a job without a key takes none of it.
    unique_key: str | None = None
    unique_for: float | None = None
    on_conflict: str = "skip"

    def due_now(self) -> bool:
        """No countdown, eta or expiry and not routed: the row can be written as it is (COPY)."""
        return (self.eta is None and self.countdown is None and self.expires_at is None
                and self.expires_in is None and self.exchange is None)

    def copies_lean(self) -> bool:
        """Whether every column COPY_JOBS_LEAN leaves out has its default (JSON arguments, priority 0,
        no headers, acks_late, no payload, no group)."""
        return (self.priority == 0 and self.content_type == "application/json" and self.headers == "{}"
                and self.acks_late is True and self.payload is None and self.group_id is None
                and self.parent_id is None and self.concurrency_key is None)

    def params(self) -> dict[str, Any]:
        """The parameters of the one-job statements (ENQUEUE, ENQUEUE_NOW, PUBLISH_ONE)."""
        return {
            "id": self.id, "task": self.task, "queue": self.queue, "priority": self.priority,
            "content_type": self.content_type, "args": self.args, "kwargs": self.kwargs,
            "payload": self.payload, "headers": self.headers, "eta": self.eta, "countdown": self.countdown,
            "expires_at": self.expires_at, "expires_in": self.expires_in, "acks_late": self.acks_late,
            "group_id": self.group_id, "exchange": self.exchange, "routing_key": self.routing_key,
            "root_id": self.root_id, "parent_id": self.parent_id, "concurrency_key": self.concurrency_key,
        }

    @staticmethod
    def batch_params(jobs: Sequence[JobSpec]) -> dict[str, list[Any]]:
        """The parameters of the batch statements (ENQUEUE_MANY, ENQUEUE_REWRITE; PUBLISH adds the
        exchanges and routing keys): ``params()`` as one array per column, kept beside it so that a
        column is added to both."""
        return {
            "ids": [j.id for j in jobs], "tasks": [j.task for j in jobs], "queues": [j.queue for j in jobs],
            "priorities": [j.priority for j in jobs], "args": [j.args for j in jobs],
            "kwargs": [j.kwargs for j in jobs], "payloads": [j.payload for j in jobs],
            "content_types": [j.content_type for j in jobs], "headers": [j.headers for j in jobs],
            "etas": [j.eta for j in jobs], "countdowns": [j.countdown for j in jobs],
            "expires_ats": [j.expires_at for j in jobs], "expires_ins": [j.expires_in for j in jobs],
            "acks_lates": [j.acks_late for j in jobs], "group_ids": [j.group_id for j in jobs],
            "root_ids": [j.root_id for j in jobs], "parent_ids": [j.parent_id for j in jobs],
            "concurrency_keys": [j.concurrency_key for j in jobs],
        }


class UniqueRow(NamedTuple):
    """A job UNIQUE_ENQUEUE or UNIQUE_ENQUEUE_REPLACE wrote or replaced (``woken``: NOTIFYs sent;
    ``window_job``: the job whose unique_for window the statement saw, if any)."""

    id: str
    state: str
    woken: int
    window_job: str | None


class UniqueBatchRow(NamedTuple):
    """A job UNIQUE_ENQUEUE_MANY wrote, with the window it saw for its key (``woken``: NOTIFYs sent)."""

    id: str
    window_job: str | None
    woken: int


class UniqueHolder(NamedTuple):
    """The job that holds a unique key (UNIQUE_HOLDER)."""

    id: str
    state: str


class UniqueWindow(NamedTuple):
    """The job whose ``unique_for`` window holds a key (UNIQUE_WINDOW_TAKE, UNIQUE_WINDOW_HOLDER)."""

    job_id: str


class UniqueWrite(NamedTuple):
    """What a keyed enqueue did: ``id`` is the job that holds the key now (this call's when
    ``written``); ``replaced``: the waiting holder took this call's arguments and run_at."""

    id: str
    written: bool
    replaced: bool


class ScheduleRow(NamedTuple):
    """One row of ``schedules``, as SCHEDULE_GET, SCHEDULE_LIST and SCHEDULE_CLAIM_DUE select it."""

    name: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    cron: str | None
    interval_seconds: float | None
    anchor: dt.datetime | None
    timezone: str
    enabled: bool
    source: str
    next_fire_at: dt.datetime | None
    last_fire_at: dt.datetime | None
    total_run_count: int
    last_error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    owner: str | None


class ForeignSchedule(NamedTuple):
    """A config schedule that another app declared (or none: written before owners existed)."""

    name: str
    owner: str | None
    declared_here: bool  # this app's beat_schedule names it too: this sync takes it over


class JobState(NamedTuple):
    """What a result handle sees of a job (FETCH_STATE): its results row once it finished, else the
    waiting or running job in Celery's state names (PENDING, STARTED, RETRY), with only ``task``,
    ``retries``, ``group_id`` and, for a job waiting to run again, its last error in
    ``exc_message``. A running job that reported a state (``update_state``) has that state, and
    its meta as JSON text in ``result``; a running job names its worker's process id and hostname."""

    state: str
    result: str | None  # JSON text
    result_payload: bytes | None
    result_content_type: str | None
    exc_type: str | None
    exc_message: str | None
    traceback: str | None
    finished_at: dt.datetime | None
    task: str
    retries: int
    group_id: str | None
    worker_pid: int | None = None
    worker_hostname: str | None = None


class EagerResultRow(NamedTuple):
    """An eager call's outcome as STORE_EAGER_RESULT writes it (its parameters by name): the call's
    encoded arguments and the outcome's columns as a worker's FINISH would record them."""

    id: str  # the row id (task_uuid of the task id)
    task: str
    queue: str
    priority: int
    state: str  # SUCCESS | FAILURE | REVOKED
    args: str | None
    kwargs: str | None
    payload: bytes | None
    content_type: str
    result: str | None
    result_payload: bytes | None
    result_content_type: str | None
    exc_type: str | None
    exc_message: str | None
    traceback: str | None
    started_at: dt.datetime
    retries: int


class QueueDepth(NamedTuple):
    """One queue's jobs by state (QUEUE_DEPTHS)."""

    queue: str
    waiting: int
    scheduled: int
    running: int


class WaitingJob(NamedTuple):
    """A job that has not started yet, as WAITING_JOBS reads it for ``sqlq.testing.assert_enqueued``:
    arguments and headers stay text (decoded by the caller with the app's ``accept_content``)."""

    id: str
    task: str
    queue: str
    priority: int
    state: str  # available | scheduled
    content_type: str
    args: str | None
    kwargs: str | None
    payload: bytes | None
    headers: str | None
    run_at: dt.datetime
    retries: int


class WorkerRow(NamedTuple):
    """One registered worker (WORKERS)."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    pool: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    silent_for: float  # seconds since its last heartbeat, by the database's clock
    state: str  # 'online', 'lost' (lock free or heartbeat late: about to be rescued) or 'dead'
    tasks: list[str] | None  # the task names its app registers (None: a dead worker, an older sqlq)
    died_at: dt.datetime | None  # when RESCUE found it dead ('dead' only)


class EventRow(NamedTuple):
    """One row of the events table as a tail reads it (EVENTS_AFTER): one event (Celery's names
    for the columns; ``fields`` holds the rest of its fields), or, ``type`` 'batch', a statement's
    events in ``batch`` (``[type, task id, task name, seconds since the epoch, fields]`` each)."""

    id: int
    type: str
    uuid: str | None
    name: str | None
    hostname: str | None
    timestamp: float  # seconds since the epoch
    fields: dict[str, Any]
    batch: list[list[Any]] | None


class PausedQueue(NamedTuple):
    """A paused queue (PAUSED_QUEUES)."""

    queue: str
    paused_at: dt.datetime


class QueueConsumers(NamedTuple):
    """How many other live workers consume a queue (QUEUE_CONSUMERS)."""

    queue: str
    others: int  # live workers other than the one asking


class HandedBack(NamedTuple):
    """What HAND_BACK did with jobs whose task the worker does not know."""

    handed_back: int  # waiting again, for a worker that knows the task
    failed: int  # recorded as FAILURE NotRegistered: no live worker of the queue knows it


class LostJobs(NamedTuple):
    """What RESCUE or LOST did with the jobs of a lost worker or attempt."""

    requeued: int  # back in the queue, to run again
    failed: int  # recorded as FAILURE WorkerLostError


class PublishRow(NamedTuple):
    """One message of a publish (PUBLISH, PUBLISH_ONE, PUBLISH_REWRITE), in the order sent. A
    message that names an unknown exchange (``exchange_exists`` false) or reaches no queue
    (``queue_count`` 0) made the whole publish write nothing."""

    ord: int
    exchange_exists: bool
    queue_count: int
    job_ids: list[str] | None  # one per queue reached, in the order of ``queues``
    queues: list[str] | None
    group_id: str | None  # shared by the jobs of a message that reached several queues
    notified: int  # the queues woken (PUBLISH_REWRITE wakes none: there, the jobs it inserted)


class DeclaredRoutes(NamedTuple):
    """What DECLARE_ROUTES did: nothing at all when there are conflicts."""

    exchanges: int  # exchanges written (new or updated)
    bindings: int  # bindings added
    conflicts: list[str] | None  # an exchange declared with a type other than its stored one


class PrunedBroadcasts(NamedTuple):
    """What BROADCAST_PRUNE did: per-worker broadcast queues unbound, their waiting copies revoked,
    live workers' queues bound again."""

    queues: int
    revoked: int
    rebound: int  # live workers' queues bound again (they had been pruned while presumed dead)
    notified: Any  # (pg_notify's void, or NULL when nothing was revoked)


class RouteRow(NamedTuple):
    """An exchange and one of its bindings (LIST_ROUTES); the binding's fields are None for an
    exchange without any."""

    exchange: str
    type: str
    alternate_queue: str | None
    binding_key: str | None
    queue: str | None


class NextDue(NamedTuple):
    """How long a beat may sleep (SCHEDULE_NEXT_DUE)."""

    now: dt.datetime  # the database's time
    next_fire_at: dt.datetime | None  # the earliest cursor of an enabled schedule


class RateLimitedClaim(NamedTuple):
    """What CLAIM_RATE_LIMITED gives: the jobs claimed (ordered as CLAIM's), and ``retry_in``, the
    seconds until the task's bucket holds a whole token again when jobs were left waiting for one
    (None: none were, or the bucket had tokens to spare)."""

    jobs: list[ClaimedJob]
    retry_in: float | None


class ConcurrencyLimitedClaim(NamedTuple):
    """What CLAIM_CONCURRENCY_LIMITED (or _KEYED) gives: the jobs claimed (ordered as CLAIM's), and
    ``waiting``: whether jobs of the task now wait for a free slot (the limit is full, or for a keyed
    task, jobs of a full key were left in the queue)."""

    jobs: list[ClaimedJob]
    waiting: bool


class ConcurrencyLimitRow(NamedTuple):
    """A row of CONCURRENCY_LIMITS: a limited task, the key value the row is for (None: the task's
    limit, for each key value of a keyed task), the limit, the jobs running under it now, and when
    it was last changed."""

    task: str
    key: str | None
    limit: int
    running: int
    updated_at: dt.datetime


class RateLimitRow(NamedTuple):
    """A row of RATE_LIMITS: a limited task's rate (tasks per second), its bucket's capacity, the
    tokens the bucket holds now, and when the limit was last changed."""

    task: str
    rate: float
    capacity: float
    tokens: float
    updated_at: dt.datetime


class DeclaredLimits(NamedTuple):
    """RATE_LIMITS_DECLARE's counts: rows written (new or changed rates) and rows deleted."""

    written: int
    deleted: int


class JobRecord(NamedTuple):
    """One job whole (JOB_RECORD): its results row once it finished (``state`` SUCCESS, FAILURE,
    REVOKED, EXPIRED), else its jobs row (``state`` available, scheduled, running; a job waiting to
    run again has its last error, ``"type: message"``, in ``exc_message``). Arguments and result
    are JSON text, or a payload in another content type."""

    id: str
    state: str
    task: str
    queue: str
    priority: int
    args: str | None
    kwargs: str | None
    content_type: str
    payload: bytes | None
    result: str | None
    result_payload: bytes | None
    result_content_type: str | None
    exc_type: str | None
    exc_message: str | None
    traceback: str | None
    enqueued_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: int
    retries: int
    worker_id: str | None


class FailedJob(NamedTuple):
    """What an errback is told of the job that failed (WORKFLOW_FAILED): arguments as JSON text."""

    task: str
    args: str | None
    kwargs: str | None
    group_id: str | None


class WorkflowRow(NamedTuple):
    """One job of a workflow (WORKFLOW_TREE): its parent, group, task and Celery state, and how
    many steps it is from the first job."""

    id: str
    parent_id: str | None
    group_id: str | None
    task: str
    state: str
    depth: int


class ChildJob(NamedTuple):
    """A job another sent (WORKFLOW_CHILDREN)."""

    id: str
    task: str


class JobParent(NamedTuple):
    """The job (or, for a chord's body, the header's group) whose outcome sent a job (WORKFLOW_PARENT)."""

    parent_id: str
    is_group: bool


class ControlSent(NamedTuple):
    """What CONTROL_SEND did: the command's id, and the ids of the live workers it addresses."""

    id: int
    notified: Any  # (pg_notify's void)
    expected: list[str]


class ControlCommand(NamedTuple):
    """A command a worker has to handle (CONTROL_PENDING); ``arguments`` is JSON text."""

    id: int
    command: str
    arguments: str
    reply: bool


class ControlReply(NamedTuple):
    """One worker's answer to a command (CONTROL_REPLIES); ``reply`` is JSON text."""

    worker_id: str
    hostname: str
    reply: str


class ScheduledJob(NamedTuple):
    """A job waiting for its eta in one of a worker's queues (CONTROL_SCHEDULED)."""

    id: str
    task: str
    queue: str
    priority: int
    args: str | None
    kwargs: str | None
    content_type: str
    run_at: dt.datetime
