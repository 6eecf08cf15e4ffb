"""What a worker does for each control command, one function per command, and the shapes of the
replies, Celery's: ``{'ok': ...}`` or ``{'error': ...}`` for a control command, the data itself
(a list, a dict) for an inspect command. A command a pool cannot carry out replies with an error
that says so, never a silent ok.

Each handler runs on the worker's control thread (``sqlq.control.server``) with that thread's
connection, and returns its reply and, optionally, what to do once the reply is written (a
shutdown stops the worker only after saying so).
"""

from __future__ import annotations

import inspect
import logging
import resource
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import psycopg

from .. import serialization
from ..errors import SqlqError
from ..names import validate_queue
from ..store import ClaimedJob
from ..task import CALL_HEADER, task_uuid
from .revocation import revoked_outcome, signal_name, signal_number

if TYPE_CHECKING:
    from .server import WorkerControl

log = logging.getLogger("sqlq.worker")

Reply = Any
After = Callable[[], None] | None
Handler = Callable[..., "tuple[Reply, After] | Reply"]

#: The most scheduled jobs ``inspect scheduled`` lists per worker.
SCHEDULED_LIMIT = 1000


def ok(message: str) -> dict[str, str]:
    return {"ok": message}


def error(message: str) -> dict[str, str]:
    return {"error": message}


# request descriptions (Celery's Request.info()) ---------------------------------------------------

def task_id_of(job: ClaimedJob) -> str:
    """The job's task id: the row id, or the id a caller gave that is not a UUID (kept in the
    job's call header)."""
    if job.headers and CALL_HEADER in job.headers:
        try:
            headers = serialization.json_loads(job.headers)
            call = headers.get(CALL_HEADER) if isinstance(headers, dict) else None
            if isinstance(call, dict) and call.get("id"):
                return str(call["id"])
        except ValueError:
            pass
    return job.id


def _arguments(content_type: str, args: str | None, kwargs: str | None, payload: bytes | None,
               accept: Iterable[str]) -> tuple[Any, Any]:
    try:
        return serialization.decode_call(content_type, args, kwargs, payload, accept)
    except Exception:  # noqa: BLE001 - what cannot be decoded is shown as stored
        return args, kwargs


def request_info(control: WorkerControl, job: ClaimedJob, time_start: float | None = None,
                 pid: int | None = None) -> dict[str, Any]:
    worker = control.worker
    args, kwargs = _arguments(job.content_type, job.args, job.kwargs, job.payload, worker.app.conf.accept_content)
    return {"id": task_id_of(job), "name": job.task, "args": args, "kwargs": kwargs, "type": job.task,
            "hostname": worker.hostname, "time_start": time_start, "acknowledged": True,
            "delivery_info": {"exchange": "", "routing_key": job.queue, "priority": job.priority,
                              "redelivered": job.attempt > 1},
            "worker_pid": pid}


def _active(control: WorkerControl, conn: psycopg.Connection) -> list[dict[str, Any]]:
    worker = control.worker
    running = worker.pool.running()
    started = worker.store.control_started(conn, worker.id, [j.id for j in running]) if running else {}
    pids = worker.pool.job_pids() if hasattr(worker.pool, "job_pids") else {}
    return [request_info(control, j, started.get(j.id), pids.get(j.id, control.pid())) for j in running]


def _reserved(control: WorkerControl) -> list[dict[str, Any]]:
    return [request_info(control, j) for j in control.worker.pool.reserved()]


def _scheduled(control: WorkerControl, conn: psycopg.Connection) -> list[dict[str, Any]]:
    worker = control.worker
    out = []
    for row in worker.store.control_scheduled(conn, worker.queues, SCHEDULED_LIMIT):
        args, kwargs = _arguments(row.content_type, row.args, row.kwargs, None, worker.app.conf.accept_content)
        out.append({"eta": row.run_at.isoformat(), "priority": row.priority, "request": {
            "id": row.id, "name": row.task, "args": args, "kwargs": kwargs, "type": row.task,
            "hostname": worker.hostname, "time_start": None, "acknowledged": False,
            "delivery_info": {"exchange": "", "routing_key": row.queue, "priority": row.priority,
                              "redelivered": False},
            "worker_pid": None}})
    return out


# inspect commands ---------------------------------------------------------------------------------

def ping(control: WorkerControl, conn: psycopg.Connection) -> Reply:
    return ok("pong")


def active(control: WorkerControl, conn: psycopg.Connection, safe: Any = None) -> Reply:
    return _active(control, conn)


def reserved(control: WorkerControl, conn: psycopg.Connection, safe: Any = None) -> Reply:
    return _reserved(control)


def scheduled(control: WorkerControl, conn: psycopg.Connection, safe: Any = None) -> Reply:
    return _scheduled(control, conn)


def registered(control: WorkerControl, conn: psycopg.Connection, taskinfoitems: Any = None,
               builtins: bool = False) -> Reply:
    """Task names, sorted; with ``taskinfoitems`` (attribute names), ``'name [attr=value ...]'``."""
    tasks = control.worker.app.tasks
    names = sorted(n for n in tasks if builtins or not n.startswith(("sqlq.", "celery.")))
    if not taskinfoitems:
        return names
    out = []
    for name in names:
        fields = [f"{item}={getattr(tasks[name], item)}" for item in taskinfoitems
                  if getattr(tasks[name], item, None) is not None]
        out.append(f"{name} [{' '.join(fields)}]" if fields else name)
    return out


def revoked(control: WorkerControl, conn: psycopg.Connection) -> Reply:
    return sorted(control.revoked.ids)


def stats(control: WorkerControl, conn: psycopg.Connection) -> Reply:
    worker = control.worker
    usage = resource.getrusage(resource.RUSAGE_SELF)
    info = conn.info
    return {
        "total": dict(sorted(worker.totals.items())),
        "pid": control.pid(),
        "uptime": int(control.uptime()),
        "pool": {"implementation": worker.pool_name, "max-concurrency": worker.concurrency,
                 "processes": worker.pool.processes() if hasattr(worker.pool, "processes") else [control.pid()],
                 "max-tasks-per-child": worker.max_tasks_per_child or "N/A",
                 "timeouts": [worker.app.conf.task_soft_time_limit or 0, worker.app.conf.task_time_limit or 0],
                 **({"autoscaler": worker.autoscaler.info()} if worker.autoscaler is not None else {})},
        "broker": {"transport": "postgresql", "hostname": info.host, "port": info.port,
                   "virtual_host": info.dbname, "userid": info.user, "insist": False, "ssl": False,
                   "connect_timeout": 10, "heartbeat": worker.heartbeat_interval, "login_method": None,
                   "transport_options": {"schema": worker.store.schema}, "uri_prefix": None},
        "prefetch_count": worker.capacity,
        "rusage": {"utime": usage.ru_utime, "stime": usage.ru_stime, "maxrss": usage.ru_maxrss,
                   "minflt": usage.ru_minflt, "majflt": usage.ru_majflt, "nvcsw": usage.ru_nvcsw,
                   "nivcsw": usage.ru_nivcsw, "inblock": usage.ru_inblock, "oublock": usage.ru_oublock},
        "worker_id": worker.id,
        "queues": list(worker.queues),
        "processed": worker.processed,
    }


def active_queues(control: WorkerControl, conn: psycopg.Connection) -> Reply:
    """kombu's ``Queue.as_dict()`` keys, as Celery replies: a sqlq queue is a name on job rows, with
    no exchange of its own (routed queues get theirs from the routes: ``sqlq routes list``)."""
    return [{"name": q, "exchange": {"name": "", "type": "direct", "arguments": None, "durable": True,
                                     "passive": False, "auto_delete": False, "delivery_mode": None,
                                     "no_declare": False},
             "routing_key": q, "queue_arguments": None, "binding_arguments": None, "consumer_arguments": None,
             "durable": True, "exclusive": False, "auto_delete": False, "no_ack": False, "alias": None,
             "bindings": [], "no_declare": None, "expires": None, "message_ttl": None, "max_length": None,
             "max_length_bytes": None, "max_priority": None} for q in control.worker.queues]


def query_task(control: WorkerControl, conn: psycopg.Connection, ids: Any = None) -> Reply:
    """``{task_id: [state, request]}`` for those of ``ids`` this worker holds: 'active' (running)
    or 'reserved' (claimed, not started)."""
    wanted: set[str] = set()
    for task_id in ids if isinstance(ids, list) else [ids]:
        if task_id:
            wanted.update({str(task_id), task_uuid(str(task_id))})
    out: dict[str, Any] = {}
    for info in _active(control, conn):
        if info["id"] in wanted or task_uuid(info["id"]) in wanted:
            out[info["id"]] = ["active", info]
    for info in _reserved(control):
        if info["id"] in wanted or task_uuid(info["id"]) in wanted:
            out[info["id"]] = ["reserved", info]
    return out


def conf(control: WorkerControl, conn: psycopg.Connection, with_defaults: bool = False) -> Reply:
    """The worker's settings: those its app set (all of them ``with_defaults``), as JSON; the
    database URLs with their passwords masked, as Celery masks the broker's."""
    settings = control.worker.app.conf
    out: dict[str, Any] = {}
    for key, value in settings.as_dict().items():
        if not with_defaults and not settings.was_set(key):
            continue
        if isinstance(value, str) and "://" in value:
            value = _mask(value)
        try:
            serialization.json_dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        out[key] = value
    return out


def _mask(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":**@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# control commands ---------------------------------------------------------------------------------

def shutdown(control: WorkerControl, conn: psycopg.Connection, **_: Any) -> Reply:
    log.warning("worker %s: shutdown asked through the control channel", control.worker.hostname)
    return ok("shutting down"), lambda: control.worker.stop(cold=False)


def rate_limit(control: WorkerControl, conn: psycopg.Connection, task_name: str = "",
               rate_limit: Any = None, **_: Any) -> Reply:
    """The sender changed the table (``Control.rate_limit``: a limit is one bucket shared by every
    worker); a worker reads it again now rather than within its next second, and says whether it
    enforces the limit."""
    worker = control.worker
    if task_name not in worker.app.tasks:
        return error("unknown task")
    if not worker.rate_limits_enabled:
        return error("rate limits disabled")
    worker._read_rate_limits(conn)
    if not rate_limit:
        return ok("rate limit disabled successfully")
    return ok("new rate limit set successfully")


def concurrency_limit(control: WorkerControl, conn: psycopg.Connection, task_name: str = "", limit: Any = None,
                      key: str | None = None, **_: Any) -> Reply:
    """The sender changed the table (``Control.concurrency_limit``: a limit is one row every worker's
    claims read); a worker reads which tasks are limited now, rather than within its next second
    (the limit itself is read by each claim), and says whether it runs the task."""
    worker = control.worker
    if task_name not in worker.app.tasks:
        return error("unknown task")
    worker._read_concurrency_limits(conn)
    what = f"concurrency limit of {task_name}" + (f" for key {key!r}" if key is not None else "")
    if not limit:
        return ok(f"{what} removed")
    return ok(f"{what} set to {limit}")


def time_limit(control: WorkerControl, conn: psycopg.Connection, task_name: str = "", soft: Any = None,
               hard: Any = None, **_: Any) -> Reply:
    """This worker's limits for one task, as Celery's (per worker, until it restarts): the task's
    attributes, which executors read again, and the prefork children are told."""
    worker = control.worker
    task = worker.app.tasks.get(task_name)
    if task is None:
        return error("unknown task")
    try:
        soft_s = None if soft in (None, "") else float(soft)
        hard_s = None if hard in (None, "") else float(hard)
    except (TypeError, ValueError):
        return error(f"time limits must be numbers of seconds (soft={soft!r}, hard={hard!r})")
    task.soft_time_limit = soft_s
    task.time_limit = hard_s
    for executor in worker.executors:
        executor._plans.pop(task, None)  # (its plan caches the limits: made again at the next job)
    if hasattr(worker.pool, "set_time_limits"):
        worker.pool.set_time_limits(task_name, soft_s, hard_s)
    log.info("new time limits for tasks of type %s: soft=%s hard=%s", task_name, soft_s, hard_s)
    return ok("time limits set successfully")


def pool_grow(control: WorkerControl, conn: psycopg.Connection, n: Any = 1, **_: Any) -> Reply:
    return _resize(control, n, grow=True)


def pool_shrink(control: WorkerControl, conn: psycopg.Connection, n: Any = 1, **_: Any) -> Reply:
    return _resize(control, n, grow=False)


def _resize(control: WorkerControl, n: Any, grow: bool) -> Reply:
    worker = control.worker
    try:
        count = int(n)
    except (TypeError, ValueError):
        return error(f"n must be a whole number of pool processes or threads, not {n!r}")
    if count < 1:
        return error(f"n must be 1 or more, not {count}")
    if not hasattr(worker.pool, "resize"):
        return error(f"the {worker.pool_name} pool has a fixed size of {worker.concurrency}: it cannot "
                     f"{'grow' if grow else 'shrink'}; run a threads or prefork worker (-P threads, -P prefork)")
    target = worker.concurrency + count if grow else worker.concurrency - count
    if target < 1:
        return error(f"the pool has {worker.concurrency}; it cannot shrink by {count} (1 is the least)")
    worker.pool.resize(target)
    worker.resized(target)
    return ok("pool will grow" if grow else "pool will shrink")


def add_consumer(control: WorkerControl, conn: psycopg.Connection, queue: str = "", exchange: Any = None,
                 exchange_type: Any = None, routing_key: Any = None, **_: Any) -> Reply:
    worker = control.worker
    try:
        validate_queue(queue)
    except SqlqError as exc:
        return error(str(exc))
    if exchange or routing_key:
        return error("add_consumer takes a queue name only: sqlq queues get their bindings from the routes "
                     "(task_queues, `sqlq routes add`), not from a consumer")
    if queue in worker.queues:
        return ok(f"already consuming from {queue}")
    worker.set_queues([*worker.queues, queue])
    worker.store.worker_set_queues(conn, worker.id, worker.queues)
    log.info("worker %s: started consuming from %s", worker.hostname, queue)
    return ok(f"add consumer {queue}")


def cancel_consumer(control: WorkerControl, conn: psycopg.Connection, queue: str = "", **_: Any) -> Reply:
    worker = control.worker
    if queue not in worker.queues:
        return ok(f"no longer consuming from {queue}")
    if len(worker.queues) == 1:
        return error(f"{queue} is the only queue this worker consumes; a worker without a queue would do "
                     f"nothing: add another queue first, or shut the worker down")
    worker.set_queues([q for q in worker.queues if q != queue])
    worker.store.worker_set_queues(conn, worker.id, worker.queues)
    log.info("worker %s: no longer consuming from %s", worker.hostname, queue)
    return ok(f"no longer consuming from {queue}")


def revoke(control: WorkerControl, conn: psycopg.Connection, task_id: Any = None, terminate: bool = False,
           signal: Any = None, **_: Any) -> Reply:
    """Flag the ids (the sender wrote them to the table too); jobs this worker holds unstarted are
    recorded REVOKED now; with ``terminate``, the running ones are stopped (see
    ``sqlq.control.revocation``) and recorded REVOKED."""
    worker = control.worker
    task_ids = [str(t) for t in (task_id if isinstance(task_id, list) else [task_id]) if t]
    rows = {task_uuid(t) for t in task_ids}
    control.revoked.add(rows)
    for job in worker.pool.discard_unstarted(rows):
        log.info("task %s[%s] revoked before it started", job.task, job.id)
        worker._on_result(job, revoked_outcome(job, "revoked before it started"))
    if not terminate:
        log.info("tasks flagged as revoked: %s", ", ".join(task_ids))
        return ok(f"tasks {', '.join(task_ids)} flagged as revoked")
    try:
        signum = signal_number(signal)
    except SqlqError as exc:
        return error(str(exc))
    name = signal_name(signum)
    running = {j.id: j for j in worker.pool.running() if j.id in rows}
    if not running:
        return ok("terminate: tasks unknown")
    terminated: list[str] = []
    if hasattr(worker.pool, "terminate_job"):
        for job in running.values():
            control.terminating[job.id] = name
            if worker.pool.terminate_job(job.id, signum):
                terminated.append(task_id_of(job))
            else:
                control.terminating.pop(job.id, None)
    else:
        for job_id in running:
            control.terminating[job_id] = name
        reached = [t for limits in list(control.thread_limits) if (t := limits.terminate(set(running)))]
        for job_id in set(running) - {task_uuid(t) for t in reached}:
            control.terminating.pop(job_id, None)
        terminated = reached
        if not reached:
            return error(f"cannot terminate {', '.join(task_id_of(j) for j in running.values())} in the "
                         f"{worker.pool_name} pool: an async task, or one between two steps, cannot be "
                         f"interrupted in a thread; it was flagged revoked (use -P prefork to stop tasks at once)")
    log.info("terminating %s (%s)", ", ".join(terminated), name)
    return ok(f"terminate: {', '.join(terminated)}")


HANDLERS: dict[str, Handler] = {
    "ping": ping, "active": active, "reserved": reserved, "scheduled": scheduled, "registered": registered,
    "revoked": revoked, "stats": stats, "active_queues": active_queues, "query_task": query_task, "conf": conf,
    "shutdown": shutdown, "rate_limit": rate_limit, "concurrency_limit": concurrency_limit, "time_limit": time_limit, "pool_grow": pool_grow,
    "pool_shrink": pool_shrink, "add_consumer": add_consumer, "cancel_consumer": cancel_consumer,
    "revoke": revoke,
}


def handle(control: WorkerControl, conn: psycopg.Connection, name: str,
           arguments: dict[str, Any]) -> tuple[Reply, After]:
    """The reply to command ``name`` and what to do after replying. An unknown command, or
    arguments it does not take, get an error reply: the worker goes on."""
    handler = HANDLERS.get(name)
    if handler is None:
        return error(f"No such control command: {name}"), None
    try:
        inspect.signature(handler).bind(control, conn, **arguments)
    except TypeError as exc:
        return error(f"{name}: {exc}"), None
    try:
        result = handler(control, conn, **arguments)
    except psycopg.Error:
        raise  # (the control thread retries after the outage)
    except Exception as exc:  # noqa: BLE001 - a command never ends a worker
        log.exception("control command %s failed", name)
        return error(f"{name} failed: {type(exc).__name__}: {exc}"), None
    if isinstance(result, tuple) and len(result) == 2 and (result[1] is None or callable(result[1])):
        return result[0], result[1]
    return result, None

