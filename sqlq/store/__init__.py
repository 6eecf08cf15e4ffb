"""The only place that runs SQL on sqlq's queue tables.

Each statement is named, described and written out whole in a ``.sql`` file of this package, as a
template over the configured schema (the registry: store/statements.py). A ``Store`` renders them
for its schema (identifiers quoted by psycopg, never formatted raw) and runs
them on whatever connection it is handed: a pooled autocommit connection, or the caller's own
connection inside the caller's transaction.

Batching is the rule on the hot path: one statement claims many jobs, one statement finishes many,
one statement enqueues many. Every write a worker makes to a claimed job is guarded by
``id AND worker_id AND attempt``, so a job rescued from a worker presumed dead cannot be finished a
second time by that worker if it turns out to be alive.

NOTIFY is sent from the same statement as the write, once per queue (or once per finished batch),
never from a trigger; inside a transaction PostgreSQL delivers it at commit, so a rolled-back
enqueue never wakes anyone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from ..errors import InvalidJobError
from ..migrate import VERSION_TABLE
from ..names import validate_identifier
from . import binary, fast
from .records import ClaimedJob, ForeignSchedule, Interrupted, JobSpec, Outcome, RetryRequest, ScheduleRow
from .statements import SCHEMA_GROUPS, STATEMENTS

__all__ = ["ClaimedJob", "ForeignSchedule", "Interrupted", "JobSpec", "Outcome", "RetryRequest", "ScheduleRow",
           "Store"]

#: Seconds a worker's liveness lock must stay free before the worker is presumed dead: a live
#: worker whose session was cut (a terminated backend) reconnects and takes it back well within it.
LIVENESS_GRACE = 1.0


#: FINISH's and FINISH_OK's twins with ON CONFLICT (Store.finish).
_UPSERT = {"FINISH": "FINISH_UPSERT", "FINISH_OK": "FINISH_OK_UPSERT"}


def _publish_row(res: psycopg.pq.abc.PGresult) -> tuple:
    """PUBLISH_ONE's one row, read from its text form as psycopg would have typed it."""
    ord_, exists, count, ids, queues, group_id, notified = (res.get_value(0, i) for i in range(7))
    return (int(ord_), exists == b"t", int(count), fast.parse_text_array(ids), fast.parse_text_array(queues),
            None if group_id is None else group_id.decode(), int(notified))


def _finish_ok_params(conn: psycopg.Connection, worker_id: str, outcomes: Sequence[Outcome]) -> dict | None:
    """FINISH_OK's parameters as binary arrays, or None when they cannot be (a connection whose
    encoding is not UTF-8, an id that is not a uuid: FINISH then runs and the server says what is wrong)."""
    if conn.info.encoding != "utf-8":
        return None
    try:
        ids = binary.uuid_array([o.id for o in outcomes])
        attempts = binary.int4_array([o.attempt for o in outcomes])
    except (ValueError, TypeError, struct.error):
        return None
    return {"worker_id": worker_id, "ids": ids, "attempts": attempts,
            "results": binary.text_array([o.result for o in outcomes])}


class Store:
    """Named statements rendered for one schema, run on connections handed in by the caller."""

    def __init__(self, schema: str = "sqlq"):
        self.schema = validate_identifier(schema, "schema")
        self.jobs_channel = f"{schema}.jobs"
        self.results_channel = f"{schema}.results"
        ident = {
            "jobs": sql.Identifier(schema, "jobs"),
            "results": sql.Identifier(schema, "results"),
            "workers": sql.Identifier(schema, "workers"),
            "version_table": sql.Identifier(schema, VERSION_TABLE),
            "schedules": sql.Identifier(schema, "schedules"),
            "schedule_ticks": sql.Identifier(schema, "schedule_ticks"),
            "exchanges": sql.Identifier(schema, "exchanges"),
            "bindings": sql.Identifier(schema, "bindings"),
            "route_queues": sql.Identifier(schema, "route_queues"),
            "jobs_channel": sql.Literal(self.jobs_channel),
            "results_channel": sql.Literal(self.results_channel),
            "jobs_channel_identifier": sql.Identifier(self.jobs_channel),
            "results_channel_identifier": sql.Identifier(self.results_channel),
        }
        self.sql: dict[str, str] = {
            name: sql.SQL(statement.text).format(**ident).as_string(None)
            for name, statement in STATEMENTS.items() if statement.group in SCHEMA_GROUPS
        }
        self._fast = {key: fast.FastStatement.of(key, self.sql[key]) for key in fast.STATEMENTS}
        self.listen_jobs = self.sql["LISTEN_JOBS"]
        self.listen_results = self.sql["LISTEN_RESULTS"]

    # producers ---------------------------------------------------------------------------------

    def enqueue(self, conn: psycopg.Connection, job: JobSpec, *, own: bool = False) -> None:
        """Write one job. ``own``: ``conn`` is one of sqlq's pooled autocommit connections, so the
        libpq fast path may be taken (never the caller's connection: that would bypass the BEGIN
        psycopg issues for the caller's transaction)."""
        key = "ENQUEUE_NOW" if job.due_now() else "ENQUEUE"
        params = job.params()
        if not own or fast.execute(conn, self._fast[key], params) is None:
            conn.execute(self.sql[key], params, prepare=True)

    async def aenqueue(self, conn: psycopg.AsyncConnection, job: JobSpec) -> None:
        await conn.execute(self.sql["ENQUEUE_NOW" if job.due_now() else "ENQUEUE"], job.params(), prepare=True)

    def enqueue_many(self, conn: psycopg.Connection, jobs: Sequence[JobSpec]) -> None:
        if not jobs:
            return
        if len(jobs) < 64 or not all(j.due_now() for j in jobs):
            conn.execute(self.sql["ENQUEUE_MANY"], JobSpec.batch_params(jobs))
            return
        self.copy_jobs(conn, ((j.id, j.task, j.queue, j.priority, "available", j.args, j.kwargs, j.payload,
                               j.content_type, j.headers, j.acks_late, j.group_id) for j in jobs),
                       sorted({j.queue for j in jobs}))

    def copy_jobs(self, conn: psycopg.Connection, rows: Iterable[tuple], queues: Sequence[str], *,
                  lean: bool = False) -> None:
        """COPY rows of due jobs (COPY_JOBS's columns in order; COPY_JOBS_LEAN's when ``lean``) and
        wake ``queues``' workers.

        ``rows`` may be a generator that encodes each job as it goes: psycopg sends the rows in
        chunks while the generator runs, so the server's work overlaps the encoding. If the
        generator raises, the COPY is aborted and nothing is written."""
        # An autocommit connection (sqlq's own) gets a transaction for COPY + NOTIFY; on the caller's
        # connection both simply join the caller's transaction (psycopg's transaction() would
        # commit it if it had not begun yet).
        atomic = conn.transaction() if conn.autocommit else contextlib.nullcontext()
        with atomic, conn.cursor() as cur:
            with cur.copy(self.sql["COPY_JOBS_LEAN" if lean else "COPY_JOBS"]) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
            cur.execute(self.sql["NOTIFY_QUEUES"], {"queues": list(queues)})

    async def aenqueue_many(self, conn: psycopg.AsyncConnection, jobs: Sequence[JobSpec]) -> None:
        if jobs:
            await conn.execute(self.sql["ENQUEUE_MANY"], JobSpec.batch_params(jobs))

    def rewrite(self, conn: psycopg.Connection, jobs: Sequence[JobSpec]) -> list[tuple] | None:
        """Write ``jobs`` again after the connection of a first attempt broke (App.enqueue), on
        sqlq's own autocommit ``conn``: those the first attempt wrote (their ids are in jobs or
        results) are left as they are, the rest are written, all in one transaction. Returns
        PUBLISH's rows when the jobs are routed (the same rows whichever attempt wrote them), None
        otherwise.

        A bulk enqueue (COPY, ENQUEUE_MANY) was one transaction, so either every job of it was
        written or none; the guard is per job all the same, which covers both."""
        rows, statement, params, ids, queues = self._rewrite_plan(jobs)
        with conn.transaction():
            cur = conn.execute(statement, params)
            if rows:
                rows = cur.fetchall()
                ids, queues = self._published_jobs(rows)
            conn.execute(self.sql["REWRITE_UNDO"], {"ids": ids})
            conn.execute(self.sql["NOTIFY_QUEUES"], {"queues": queues})
        return rows or None

    async def arewrite(self, conn: psycopg.AsyncConnection, jobs: Sequence[JobSpec]) -> list[tuple] | None:
        """``rewrite`` on an async connection."""
        rows, statement, params, ids, queues = self._rewrite_plan(jobs)
        async with conn.transaction():
            cur = await conn.execute(statement, params)
            if rows:
                rows = await cur.fetchall()
                ids, queues = self._published_jobs(rows)
            await conn.execute(self.sql["REWRITE_UNDO"], {"ids": ids})
            await conn.execute(self.sql["NOTIFY_QUEUES"], {"queues": queues})
        return rows or None

    def _rewrite_plan(self, jobs: Sequence[JobSpec]) -> tuple[list, str, dict, list[str], list[str]]:
        """(a non-empty list when routed, the statement, its parameters, the job ids, their queues).
        Every queue is woken, even one whose job the first attempt wrote: a NOTIFY too many only
        makes a worker look."""
        if self.routed(jobs):
            return [()], self.sql["PUBLISH_REWRITE"], self.publish_params(jobs), [], []
        return ([], self.sql["ENQUEUE_REWRITE"], JobSpec.batch_params(jobs), [j.id for j in jobs],
                sorted({j.queue for j in jobs}))

    @staticmethod
    def _published_jobs(rows: Sequence[tuple]) -> tuple[list[str], list[str]]:
        """The job ids and queues in PUBLISH's rows."""
        return ([i for row in rows for i in row[3] or ()],
                sorted({q for row in rows for q in row[4] or ()}))

    # workers -----------------------------------------------------------------------------------

    def claim(self, conn: psycopg.Connection, worker_id: str, queue: str, limit: int) -> list[ClaimedJob]:
        """Claim up to ``limit`` jobs of ``queue``.

        A row CLAIM cannot take (an ``attempt`` at the integer limit fails the whole statement: every
        worker of the queue would fail every claim) is set aside by QUARANTINE as FAILURE
        InvalidJobError, and the claim runs again. A claim that still fails for its data raises
        InvalidJobError saying so; connection errors propagate unchanged."""
        params = {"worker_id": worker_id, "queue": queue, "limit": limit}
        try:
            rows = conn.execute(self.sql["CLAIM"], params, prepare=True).fetchall()
        except psycopg.DataError as exc:
            if not conn.autocommit:  # inside the caller's transaction, which the error aborted
                raise
            count = self.quarantine(conn, queue)
            try:
                rows = conn.execute(self.sql["CLAIM"], params, prepare=True).fetchall()
            except psycopg.DataError as again:
                raise InvalidJobError(
                    f"claiming from queue {queue!r} fails: {type(again).__name__}: "
                    f"{again.diag.message_primary or again}; {count} impossible row(s) were set aside, but "
                    f"another row of that queue holds values sqlq cannot handle: inspect its waiting rows "
                    f"(SELECT * FROM {self.schema}.jobs WHERE queue = '{queue}' AND state = 'available')"
                ) from exc
        rows.sort(key=lambda r: (-r[4], r[1]))  # RETURNING has no order: restore priority, then FIFO
        return [ClaimedJob(*r) for r in rows]

    def quarantine(self, conn: psycopg.Connection, queue: str) -> int:
        """Move ``queue``'s rows that no worker can run (QUARANTINE) to results as FAILURE; returns
        how many."""
        return conn.execute(self.sql["QUARANTINE"], {"queue": queue}).fetchone()[0]

    def finish(self, conn: psycopg.Connection, worker_id: str, outcomes: Sequence[Outcome]) -> int:
        """Record outcomes; returns how many were still ours to record."""
        if not outcomes:
            return 0
        params: dict[str, Any] | None = None
        if all(o.state == "SUCCESS" and o.result_payload is None for o in outcomes):
            # The arrays go as binary arrays we encode ourselves: psycopg adapting three lists of a
            # few hundred items each cost ~16 µs per job, more than running a noop task.
            statement = "FINISH_OK"
            params = _finish_ok_params(conn, worker_id, outcomes)
        if params is None:
            ids = [o.id for o in outcomes]
            attempts = [o.attempt for o in outcomes]
            results = [o.result for o in outcomes]
            statement = "FINISH"
            params = {
                "worker_id": worker_id, "ids": ids, "attempts": attempts, "results": results,
                "states": [o.state for o in outcomes], "result_payloads": [o.result_payload for o in outcomes],
                "result_content_types": [o.result_content_type for o in outcomes],
                "exc_types": [o.exc_type for o in outcomes], "exc_messages": [o.exc_message for o in outcomes],
                "tracebacks": [o.traceback for o in outcomes],
            }
        # A plain INSERT into results unless the connection is in a transaction (a transactional
        # task's, where a failed statement would abort the caller's work): a reused task id then
        # fails it, having written nothing, and the ON CONFLICT twin records the outcomes.
        if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            statement = _UPSERT[statement]
        # Never prepared. A generic plan cannot see the batch size (a nested loop: seconds for a
        # thousand outcomes), and one made while the table held a few rows scans the whole table
        # at every later FINISH (32 ms for ten outcomes once 200,000 jobs wait). Planning each
        # call costs ~0.6 ms, the price of a plan that follows the table.
        try:
            return conn.execute(self.sql[statement], params, prepare=False).fetchone()[0]
        except psycopg.errors.UniqueViolation:
            if statement not in _UPSERT:
                raise
        return conn.execute(self.sql[_UPSERT[statement]], params, prepare=False).fetchone()[0]

    def retry(self, conn: psycopg.Connection, worker_id: str, requests: Sequence[RetryRequest]) -> int:
        if not requests:
            return 0
        params = {
            "worker_id": worker_id, "ids": [r.id for r in requests], "attempts": [r.attempt for r in requests],
            "delays": [r.delay for r in requests], "etas": [r.eta for r in requests],
            "errors": [r.error for r in requests],
        }
        return conn.execute(self.sql["RETRY"], params).fetchone()[0]

    def release(self, conn: psycopg.Connection, worker_id: str, jobs: Sequence[tuple[str, int]]) -> None:
        if jobs:
            conn.execute(self.sql["RELEASE"], {"worker_id": worker_id, "ids": [j[0] for j in jobs],
                                               "attempts": [j[1] for j in jobs]})

    def lost(self, conn: psycopg.Connection, worker_id: str, jobs: Sequence[tuple[str, int]],
             max_lost: int, *, rerun: bool = False) -> tuple[int, int]:
        """Jobs this worker knows were interrupted: returns (requeued, failed). ``rerun``: their
        attempts did nothing (rolled back), so they run again even when the task does not ack late."""
        if not jobs:
            return 0, 0
        row = conn.execute(self.sql["LOST"], {"worker_id": worker_id, "ids": [j[0] for j in jobs],
                                              "attempts": [j[1] for j in jobs], "max_lost": max_lost,
                                              "rerun": rerun}).fetchone()
        return row[0], row[1]

    def rescue(self, conn: psycopg.Connection, timeout: float, max_lost: int,
               grace: float = LIVENESS_GRACE) -> tuple[int, int]:
        row = conn.execute(self.sql["RESCUE"], {"timeout": timeout, "grace": grace, "max_lost": max_lost,
                                                "rerun": False}).fetchone()
        return row[0], row[1]

    def workers_liveness(self, conn: psycopg.Connection, timeout: float, grace: float = LIVENESS_GRACE) -> bool:
        """Note whose liveness lock is free; True when some worker is now dead (run ``rescue``)."""
        return bool(conn.execute(self.sql["WORKERS_LIVENESS"],
                                 {"namespace": self.liveness_namespace, "timeout": timeout,
                                  "grace": grace}).fetchone()[0])

    def take_worker_lock(self, conn: psycopg.Connection, lock_key: int) -> bool:
        """Hold this worker's liveness lock for as long as ``conn``'s session lives."""
        return bool(conn.execute(self.sql["WORKER_LOCK"], {"namespace": self.liveness_namespace,
                                                           "lock_key": lock_key}).fetchone()[0])

    # PROMOTE and NEXT_SCHEDULED_IN are planned at every call (they run once per housekeeping round,
    # not per job). Prepared, they got a generic plan after five runs, and one made while the table
    # was nearly empty scanned it all at every later round: 96 ms and 28 ms once 200,000 jobs waited.
    def promote(self, conn: psycopg.Connection, limit: int = 5000) -> int:
        return conn.execute(self.sql["PROMOTE"], {"limit": limit}, prepare=False).fetchone()[0]

    def next_scheduled_in(self, conn: psycopg.Connection) -> float | None:
        return conn.execute(self.sql["NEXT_SCHEDULED_IN"], prepare=False).fetchone()[0]

    def expire_results(self, conn: psycopg.Connection, ttl: float, limit: int = 10000) -> int:
        return conn.execute(self.sql["EXPIRE_RESULTS"], {"ttl": ttl, "limit": limit}).rowcount

    def register_worker(self, conn: psycopg.Connection, *, id: str, hostname: str, pid: int,
                        queues: list[str], concurrency: int, pool: str, lock_key: int | None = None) -> None:
        conn.execute(self.sql["REGISTER_WORKER"], {"id": id, "hostname": hostname, "pid": pid,
                                                   "queues": queues, "concurrency": concurrency, "pool": pool,
                                                   "lock_key": lock_key})

    def heartbeat(self, conn: psycopg.Connection, worker_id: str) -> bool:
        """False when the row is gone: this worker was presumed dead and its jobs rescued."""
        return conn.execute(self.sql["HEARTBEAT"], {"id": worker_id}, prepare=True).fetchone() is not None

    def unregister_worker(self, conn: psycopg.Connection, worker_id: str) -> None:
        conn.execute(self.sql["UNREGISTER_WORKER"], {"id": worker_id})

    # results -----------------------------------------------------------------------------------

    def fetch_state(self, conn: psycopg.Connection, job_id: str) -> tuple | None:
        return conn.execute(self.sql["FETCH_STATE"], {"id": job_id}, prepare=True).fetchone()

    async def afetch_state(self, conn: psycopg.AsyncConnection, job_id: str) -> tuple | None:
        cur = await conn.execute(self.sql["FETCH_STATE"], {"id": job_id}, prepare=True)
        return await cur.fetchone()

    def forget(self, conn: psycopg.Connection, job_id: str) -> None:
        conn.execute(self.sql["FORGET"], {"id": job_id})

    def revoke(self, conn: psycopg.Connection, ids: Sequence[str]) -> int:
        return conn.execute(self.sql["REVOKE"], {"ids": list(ids)}).fetchone()[0]

    # inspection --------------------------------------------------------------------------------

    def queue_depths(self, conn: psycopg.Connection) -> list[tuple[str, int, int, int]]:
        return conn.execute(self.sql["QUEUE_DEPTHS"]).fetchall()

    def purge(self, conn: psycopg.Connection, queue: str | None = None) -> int:
        return conn.execute(self.sql["PURGE"], {"queue": queue}).rowcount

    def workers(self, conn: psycopg.Connection) -> list[tuple]:
        return conn.execute(self.sql["WORKERS"]).fetchall()

    def schema_revision(self, conn: psycopg.Connection) -> str | None:
        """The schema's migration revision, None when sqlq was never migrated there."""
        try:
            row = conn.execute(self.sql["SCHEMA_REVISION"]).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None
        return row[0] if row else None

    def lock_key(self, purpose: str) -> int:
        """The advisory-lock key for one purpose in this schema (two schemas never share a lock)."""
        return zlib.crc32(f"sqlq-{purpose}:{self.schema}".encode())

    @property
    def liveness_namespace(self) -> int:
        """First key of the workers' two-key liveness locks: this schema's, as a signed int4."""
        key = zlib.crc32(f"sqlq-liveness:{self.schema}".encode())
        return key - (1 << 32) if key >= 1 << 31 else key

    def try_xact_lock(self, conn: psycopg.Connection, key: int) -> bool:
        return conn.execute(self.sql["TRY_XACT_LOCK"], {"key": key}).fetchone()[0]

    def xact_lock(self, conn: psycopg.Connection, key: int) -> None:
        conn.execute(self.sql["XACT_LOCK"], {"key": key})

    # schedules (sqlq beat) ---------------------------------------------------------------------

    def schedule_clock(self, conn: psycopg.Connection) -> dt.datetime:
        return conn.execute(self.sql["SCHEDULE_CLOCK"]).fetchone()[0]

    def upsert_schedule(self, conn: psycopg.Connection, params: dict[str, Any]) -> None:
        conn.execute(self.sql["SCHEDULE_UPSERT"], params)

    def insert_schedule(self, conn: psycopg.Connection, params: dict[str, Any]) -> bool:
        """False when a schedule of that name already exists."""
        return conn.execute(self.sql["SCHEDULE_INSERT"], params).fetchone() is not None

    def delete_stale_config_schedules(self, conn: psycopg.Connection, owner: str,
                                      keep: Sequence[str]) -> list[str]:
        rows = conn.execute(self.sql["SCHEDULE_DELETE_STALE_CONFIG"], {"owner": owner, "names": list(keep)})
        return sorted(r[0] for r in rows.fetchall())

    def foreign_config_schedules(self, conn: psycopg.Connection, owner: str,
                                 names: Sequence[str]) -> list[ForeignSchedule]:
        rows = conn.execute(self.sql["SCHEDULE_FOREIGN_CONFIG"], {"owner": owner, "names": list(names)})
        return [ForeignSchedule(*r) for r in rows.fetchall()]

    def delete_schedule(self, conn: psycopg.Connection, name: str) -> bool:
        return conn.execute(self.sql["SCHEDULE_DELETE"], {"name": name}).fetchone() is not None

    def get_schedule(self, conn: psycopg.Connection, name: str, *, lock: bool = False) -> ScheduleRow | None:
        row = conn.execute(self.sql["SCHEDULE_GET_FOR_UPDATE" if lock else "SCHEDULE_GET"], {"name": name}).fetchone()
        return ScheduleRow(*row) if row is not None else None

    def list_schedules(self, conn: psycopg.Connection) -> list[ScheduleRow]:
        return [ScheduleRow(*r) for r in conn.execute(self.sql["SCHEDULE_LIST"]).fetchall()]

    def claim_due_schedules(self, conn: psycopg.Connection, now: dt.datetime, limit: int) -> list[ScheduleRow]:
        rows = conn.execute(self.sql["SCHEDULE_CLAIM_DUE"], {"now": now, "limit": limit}).fetchall()
        return [ScheduleRow(*r) for r in rows]

    def insert_ticks(self, conn: psycopg.Connection, name: str, ticks: Sequence[dt.datetime],
                     job_ids: Sequence[str], fired_by: str) -> set[str]:
        """Record ticks with their job ids; returns the ids whose tick was new (send only those)."""
        if not ticks:
            return set()
        rows = conn.execute(self.sql["SCHEDULE_TICKS_INSERT"], {
            "name": name, "ticks": list(ticks), "job_ids": list(job_ids), "fired_by": fired_by,
        }).fetchall()
        return {r[0] for r in rows}

    def advance_schedule(self, conn: psycopg.Connection, name: str, *, next_fire_at: dt.datetime | None,
                         last_fire_at: dt.datetime | None = None, fired: int = 0,
                         last_error: str | None = None, prune_before: dt.datetime | None = None) -> None:
        conn.execute(self.sql["SCHEDULE_ADVANCE"], {"name": name, "next_fire_at": next_fire_at,
                                                    "last_fire_at": last_fire_at, "fired": fired,
                                                    "last_error": last_error, "prune_before": prune_before},
                     prepare=True)

    def pause_schedule(self, conn: psycopg.Connection, name: str) -> bool:
        """False when there is no such schedule or it was already paused."""
        return conn.execute(self.sql["SCHEDULE_PAUSE"], {"name": name}).fetchone() is not None

    def resume_schedule(self, conn: psycopg.Connection, name: str, next_fire_at: dt.datetime | None,
                        last_error: str | None) -> bool:
        """False when there is no such schedule or it was not paused."""
        return conn.execute(self.sql["SCHEDULE_RESUME"], {"name": name, "next_fire_at": next_fire_at,
                                                          "last_error": last_error}).fetchone() is not None

    def schedule_next_due(self, conn: psycopg.Connection) -> tuple[dt.datetime, dt.datetime | None]:
        """(the database's time, the earliest cursor of an enabled schedule or None)."""
        row = conn.execute(self.sql["SCHEDULE_NEXT_DUE"]).fetchone()
        return row[0], row[1]

    # routing (sqlq/routing.py) -----------------------------------------------------------------

    @staticmethod
    def routed(jobs: Sequence[JobSpec]) -> bool:
        """Whether this batch needs PUBLISH (some job goes through an exchange)."""
        return any(j.exchange is not None for j in jobs)

    @staticmethod
    def publish_params(jobs: Sequence[JobSpec]) -> dict[str, list]:
        params = JobSpec.batch_params(jobs)
        params["exchanges"] = [j.exchange for j in jobs]
        params["routing_keys"] = [j.routing_key for j in jobs]
        return params

    def publish_statement(self, jobs: Sequence[JobSpec]) -> tuple[str, dict[str, Any]]:
        """PUBLISH_ONE for one job (scalar parameters: a reusable plan), PUBLISH for a batch."""
        if len(jobs) == 1:
            return self.sql["PUBLISH_ONE"], jobs[0].params()
        return self.sql["PUBLISH"], self.publish_params(jobs)

    def publish(self, conn: psycopg.Connection, jobs: Sequence[JobSpec], *, own: bool = False) -> list[tuple]:
        """One row per job: (ord, exchange_exists, queue_count, ids, queues, group_id, _). ``own``:
        as in ``enqueue``."""
        if own and len(jobs) == 1:
            res = fast.execute(conn, self._fast["PUBLISH_ONE"], jobs[0].params())
            if res is not None:
                return [_publish_row(res)]
        statement, params = self.publish_statement(jobs)
        return conn.execute(statement, params, prepare=True).fetchall()

    async def apublish(self, conn: psycopg.AsyncConnection, jobs: Sequence[JobSpec]) -> list[tuple]:
        statement, params = self.publish_statement(jobs)
        cur = await conn.execute(statement, params, prepare=True)
        return await cur.fetchall()

    def declare_routes(self, conn: psycopg.Connection, exchanges: Sequence[tuple[str, str | None, str | None]],
                       bindings: Sequence[tuple[str, str, str]]) -> tuple[int, int, list[str] | None]:
        """Upsert exchanges (name, type, alternate_queue) and add bindings (exchange, key, queue)."""
        row = conn.execute(self.sql["DECLARE_ROUTES"], {
            "names": [e[0] for e in exchanges], "types": [e[1] for e in exchanges],
            "alternates": [e[2] for e in exchanges], "b_exchanges": [b[0] for b in bindings],
            "b_keys": [b[1] for b in bindings], "b_queues": [b[2] for b in bindings],
        }).fetchone()
        return row[0], row[1], row[2]

    def exchange_type(self, conn: psycopg.Connection, name: str) -> str | None:
        row = conn.execute(self.sql["EXCHANGE_TYPE"], {"name": name}).fetchone()
        return row[0] if row else None

    def unbind(self, conn: psycopg.Connection, exchange: str, queue: str, key: str | None = None) -> int:
        return conn.execute(self.sql["UNBIND"], {"exchange": exchange, "queue": queue, "key": key}).rowcount

    def delete_exchange(self, conn: psycopg.Connection, name: str) -> int:
        return conn.execute(self.sql["DELETE_EXCHANGE"], {"name": name}).rowcount

    def list_routes(self, conn: psycopg.Connection) -> list[tuple]:
        return conn.execute(self.sql["LIST_ROUTES"]).fetchall()

    def route_queues(self, conn: psycopg.Connection, exchange: str, routing_key: str) -> list[str] | None:
        """The queues (exchange, routing_key) reaches; None for an unknown exchange."""
        return conn.execute(self.sql["ROUTE_QUEUES"], {"exchange": exchange, "routing_key": routing_key}).fetchone()[0]
