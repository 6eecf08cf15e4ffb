"""The only place that runs SQL on sqlq's queue tables.

Each statement is named and written once, below, as a template over the configured schema. A
``Store`` renders them for its schema (identifiers quoted by psycopg, never formatted raw) and runs
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

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from .names import validate_identifier

# --- statements ---------------------------------------------------------------------------------

# Enqueue one job: one round trip, including the wake-up for idle workers.
ENQUEUE = """
WITH v AS (
    SELECT %(id)s::uuid AS id,
           coalesce(%(eta)s::timestamptz,
                    statement_timestamp() + make_interval(secs => coalesce(%(countdown)s::float8, 0))) AS run_at,
           coalesce(%(expires_at)s::timestamptz,
                    statement_timestamp() + make_interval(secs => %(expires_in)s::float8)) AS expires_at
), ins AS (
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id)
    SELECT v.id, %(task)s, %(queue)s, %(priority)s,
           CASE WHEN v.run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           %(args)s::jsonb, %(kwargs)s::jsonb, %(payload)s::bytea, %(content_type)s, %(headers)s::jsonb,
           v.run_at, v.expires_at, statement_timestamp(), %(acks_late)s, %(group_id)s::uuid
    FROM v
    RETURNING queue, state
)
SELECT pg_notify({jobs_channel}, queue) FROM ins WHERE state = 'available'
"""

# Enqueue many jobs in one statement; one NOTIFY per queue that received due jobs.
ENQUEUE_MANY = """
WITH v AS (
    SELECT u.*,
           coalesce(u.eta, statement_timestamp() + make_interval(secs => coalesce(u.countdown, 0))) AS run_at
    FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(queues)s::text[], %(priorities)s::smallint[],
                %(args)s::jsonb[], %(kwargs)s::jsonb[], %(payloads)s::bytea[], %(content_types)s::text[],
                %(headers)s::jsonb[], %(etas)s::timestamptz[], %(countdowns)s::float8[],
                %(expires_ats)s::timestamptz[], %(expires_ins)s::float8[], %(acks_lates)s::bool[],
                %(group_ids)s::uuid[])
         AS u(id, task, queue, priority, args, kwargs, payload, content_type, headers, eta, countdown,
              expires_at, expires_in, acks_late, group_id)
), ins AS (
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id)
    SELECT id, task, queue, priority,
           CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           args, kwargs, payload, content_type, headers, run_at,
           coalesce(expires_at, statement_timestamp() + make_interval(secs => expires_in)),
           statement_timestamp(), acks_late, group_id
    FROM v
    RETURNING queue, state
)
SELECT pg_notify({jobs_channel}, q.queue)
FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q
"""

# Claim up to n due jobs of one queue, highest priority first, then FIFO. SKIP LOCKED lets any number
# of workers claim side by side without waiting on each other.
CLAIM = """
WITH picked AS (
    SELECT id FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s
    ORDER BY priority DESC, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {jobs} AS j
SET state = 'running', worker_id = %(worker_id)s, attempt = j.attempt + 1, started_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.id::text, j.seq, j.task, j.queue, j.priority, j.args::text, j.kwargs::text, j.payload,
          j.content_type, j.headers::text, (j.expires_at IS NOT NULL AND j.expires_at <= now()),
          j.attempt, j.retries, j.acks_late, j.group_id::text
"""

# Record many outcomes at once: the rows leave the hot table and enter results in one statement.
# Outcomes whose guard does not match (the job was rescued meanwhile) are ignored.
FINISH = """
WITH o AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(states)s::text[], %(results)s::jsonb[],
                         %(result_payloads)s::bytea[], %(result_content_types)s::text[],
                         %(exc_types)s::text[], %(exc_messages)s::text[], %(tracebacks)s::text[])
         AS o(id, attempt, state, result, result_payload, result_content_type, exc_type, exc_message, traceback)
), done AS (
    DELETE FROM {jobs} AS j USING o
    WHERE j.id = o.id AND j.worker_id = %(worker_id)s AND j.attempt = o.attempt AND j.state = 'running'
    RETURNING j.id, j.task, j.queue, j.priority, j.args, j.kwargs, j.payload, j.content_type,
              j.enqueued_at, j.started_at, j.attempt, j.retries, j.worker_id, j.group_id,
              o.state, o.result, o.result_payload, o.result_content_type, o.exc_type, o.exc_message, o.traceback
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                result, result_payload, result_content_type, exc_type, exc_message,
                                traceback, enqueued_at, started_at, finished_at, attempts, retries,
                                worker_id, group_id)
    SELECT id, task, queue, priority, state, args, kwargs, payload, content_type, result, result_payload,
           result_content_type, exc_type, exc_message, traceback, enqueued_at, started_at, clock_timestamp(),
           attempt, retries, worker_id, group_id
    FROM done
    ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, result = excluded.result, result_payload = excluded.result_payload,
        result_content_type = excluded.result_content_type, exc_type = excluded.exc_type,
        exc_message = excluded.exc_message, traceback = excluded.traceback,
        finished_at = excluded.finished_at, attempts = excluded.attempts, retries = excluded.retries,
        worker_id = excluded.worker_id
    RETURNING r.id
)
SELECT count(*), pg_notify({results_channel},
                           CASE WHEN count(*) <= 150 THEN coalesce(string_agg(id::text, ','), '') ELSE '' END)
FROM ins
"""

# Put jobs back to wait for a retry (state RETRY to the user), guarded like FINISH.
RETRY = """
WITH r AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(delays)s::float8[], %(errors)s::text[])
         AS r(id, attempt, delay, error)
), upd AS (
    UPDATE {jobs} AS j
    SET state = CASE WHEN r.delay > 0 THEN 'scheduled' ELSE 'available' END,
        run_at = now() + make_interval(secs => greatest(r.delay, 0)),
        retries = j.retries + 1, worker_id = NULL, started_at = NULL, last_error = r.error
    FROM r
    WHERE j.id = r.id AND j.worker_id = %(worker_id)s AND j.attempt = r.attempt AND j.state = 'running'
    RETURNING j.id, j.queue, j.state
)
SELECT (SELECT count(*) FROM upd),
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') AS q) AS n),
       (SELECT pg_notify({results_channel}, coalesce(string_agg(id::text, ','), '')) FROM upd)
"""

# Prefetched jobs that never started go straight back (graceful shutdown); the attempt is not spent.
RELEASE = """
WITH upd AS (
    UPDATE {jobs} AS j
    SET state = 'available', worker_id = NULL, started_at = NULL, attempt = j.attempt - 1
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt)
    WHERE j.id = r.id AND j.worker_id = %(worker_id)s AND j.attempt = r.attempt AND j.state = 'running'
    RETURNING j.queue
)
SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue) FROM (SELECT DISTINCT queue FROM upd) AS q) AS n
"""

# Jobs whose worker is gone: re-queued when the task acks late and has not already killed
# `max_lost` workers, otherwise recorded as FAILURE (never dropped). `{lost}` selects the jobs.
_LOST_TAIL = """
, requeued AS (
    UPDATE {jobs} AS j
    SET state = 'available', worker_id = NULL, started_at = NULL,
        last_error = 'WorkerLostError: the worker running this job was lost'
    FROM lost
    WHERE j.id = lost.id AND j.acks_late AND (j.attempt - j.retries) < %(max_lost)s
    RETURNING j.id, j.queue
), failed AS (
    DELETE FROM {jobs} AS j USING lost
    WHERE j.id = lost.id AND NOT (j.acks_late AND (j.attempt - j.retries) < %(max_lost)s)
    RETURNING j.*
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                exc_type, exc_message, traceback, enqueued_at, started_at, finished_at,
                                attempts, retries, worker_id, group_id)
    SELECT id, task, queue, priority, 'FAILURE', args, kwargs, payload, content_type, 'WorkerLostError',
           CASE WHEN acks_late
                THEN format('the worker died while running this job, %%s times in a row; giving up', attempt - retries)
                ELSE 'the worker died while running this job (acks_late is off, so it is not re-run)' END,
           NULL, enqueued_at, started_at, clock_timestamp(), attempt, retries, worker_id, group_id
    FROM failed
    ON CONFLICT (id) DO NOTHING
    RETURNING r.id
)
SELECT (SELECT count(*) FROM requeued),
       (SELECT count(*) FROM ins),
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM requeued) AS q) AS n),
       (SELECT pg_notify({results_channel}, '') WHERE EXISTS (SELECT 1 FROM ins))
"""

# A worker reports jobs it knows were interrupted (a prefork child died, cold shutdown).
LOST = """
WITH lost AS (
    SELECT j.id FROM {jobs} AS j
    JOIN unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt) ON j.id = r.id AND j.attempt = r.attempt
    WHERE j.worker_id = %(worker_id)s AND j.state = 'running'
    FOR UPDATE OF j
)""" + _LOST_TAIL

# Maintenance: jobs of workers whose heartbeat stopped (and of workers that vanished).
RESCUE = """
WITH dead AS (
    DELETE FROM {workers} WHERE heartbeat_at < now() - make_interval(secs => %(timeout)s::float8)
    RETURNING id
), lost AS (
    SELECT j.id FROM {jobs} AS j
    WHERE j.state = 'running'
      AND (j.worker_id IN (SELECT id FROM dead)
           OR NOT EXISTS (SELECT 1 FROM {workers} AS w WHERE w.id = j.worker_id))
    FOR UPDATE OF j SKIP LOCKED
)""" + _LOST_TAIL

# Move due scheduled jobs (countdown, eta, retries) into the claim index and wake their queues.
PROMOTE = """
WITH due AS (
    SELECT id FROM {jobs}
    WHERE state = 'scheduled' AND run_at <= now()
    ORDER BY run_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE {jobs} AS j SET state = 'available' FROM due WHERE j.id = due.id RETURNING j.queue
)
SELECT (SELECT count(*) FROM upd),
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM upd) AS q) AS n)
"""

# Seconds until the next scheduled job is due (NULL when none), so the promoter sleeps just enough.
NEXT_SCHEDULED_IN = """
SELECT extract(epoch FROM min(run_at) - now())::float8 FROM {jobs} WHERE state = 'scheduled'
"""

# Expired results go in bounded batches so one pass never holds locks for long.
EXPIRE_RESULTS = """
WITH old AS (
    SELECT id FROM {results}
    WHERE finished_at < now() - make_interval(secs => %(ttl)s::float8)
    LIMIT %(limit)s
)
DELETE FROM {results} AS r USING old WHERE r.id = old.id
"""

REGISTER_WORKER = """
INSERT INTO {workers} (id, hostname, pid, queues, concurrency, pool)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(pool)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
"""

HEARTBEAT = """
UPDATE {workers} SET heartbeat_at = now() WHERE id = %(id)s RETURNING id
"""

UNREGISTER_WORKER = """
DELETE FROM {workers} WHERE id = %(id)s
"""

# What a result handle sees: the final row if there is one, else the waiting/running job.
FETCH_STATE = """
SELECT state, result::text, result_payload, result_content_type, exc_type, exc_message, traceback,
       finished_at, task, retries, group_id::text
FROM {results} WHERE id = %(id)s
UNION ALL
SELECT CASE WHEN state = 'running' THEN 'STARTED'
            WHEN retries > 0 THEN 'RETRY'
            ELSE 'PENDING' END,
       NULL, NULL, NULL, NULL, last_error, NULL, NULL, task, retries, group_id::text
FROM {jobs} WHERE id = %(id)s
LIMIT 1
"""

FORGET = """
DELETE FROM {results} WHERE id = %(id)s
"""

# Revoke jobs that have not started: they leave the queue as REVOKED results.
REVOKE = """
WITH gone AS (
    DELETE FROM {jobs} WHERE id = ANY(%(ids)s::uuid[]) AND state IN ('available', 'scheduled')
    RETURNING *
), ins AS (
    INSERT INTO {results} (id, task, queue, priority, state, args, kwargs, payload, content_type,
                           exc_type, exc_message, enqueued_at, finished_at, attempts, retries, group_id)
    SELECT id, task, queue, priority, 'REVOKED', args, kwargs, payload, content_type, 'TaskRevokedError',
           'revoked before it started', enqueued_at, clock_timestamp(), attempt, retries, group_id
    FROM gone
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT count(*), pg_notify({results_channel}, coalesce(string_agg(id::text, ','), '')) FROM ins
"""

QUEUE_DEPTHS = """
SELECT queue,
       count(*) FILTER (WHERE state = 'available') AS waiting,
       count(*) FILTER (WHERE state = 'scheduled') AS scheduled,
       count(*) FILTER (WHERE state = 'running') AS running
FROM {jobs} GROUP BY queue ORDER BY queue
"""

PURGE = """
DELETE FROM {jobs} WHERE state IN ('available', 'scheduled') AND (%(queue)s::text IS NULL OR queue = %(queue)s)
"""

WORKERS = """
SELECT id::text, hostname, pid, queues, concurrency, pool, started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS silent_for
FROM {workers} ORDER BY started_at
"""

# Cluster-wide chores are done by one worker at a time: whoever gets this lock for the transaction.
TRY_XACT_LOCK = """
SELECT pg_try_advisory_xact_lock(%(key)s)
"""

SCHEMA_EXISTS = """
SELECT to_regclass(%(jobs)s) IS NOT NULL
"""

_STATEMENTS = {
    name: value for name, value in globals().items()
    if name.isupper() and not name.startswith("_") and isinstance(value, str)
}


# --- rows ---------------------------------------------------------------------------------------

class ClaimedJob(NamedTuple):
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


@dataclass(slots=True)
class RetryRequest:
    id: str
    attempt: int
    delay: float
    error: str | None


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

    def params(self) -> dict[str, Any]:
        return {
            "id": self.id, "task": self.task, "queue": self.queue, "priority": self.priority,
            "content_type": self.content_type, "args": self.args, "kwargs": self.kwargs,
            "payload": self.payload, "headers": self.headers, "eta": self.eta, "countdown": self.countdown,
            "expires_at": self.expires_at, "expires_in": self.expires_in, "acks_late": self.acks_late,
            "group_id": self.group_id,
        }


# --- the store ----------------------------------------------------------------------------------

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
            "jobs_channel": sql.Literal(self.jobs_channel),
            "results_channel": sql.Literal(self.results_channel),
        }
        self.sql: dict[str, str] = {
            name: sql.SQL(template).format(**ident).as_string(None) for name, template in _STATEMENTS.items()
        }
        self.listen_jobs = sql.SQL("LISTEN {}").format(sql.Identifier(self.jobs_channel)).as_string(None)
        self.listen_results = sql.SQL("LISTEN {}").format(sql.Identifier(self.results_channel)).as_string(None)

    # producers ---------------------------------------------------------------------------------

    def enqueue(self, conn: psycopg.Connection, job: JobSpec) -> None:
        conn.execute(self.sql["ENQUEUE"], job.params(), prepare=True)

    async def aenqueue(self, conn: psycopg.AsyncConnection, job: JobSpec) -> None:
        await conn.execute(self.sql["ENQUEUE"], job.params(), prepare=True)

    def enqueue_many(self, conn: psycopg.Connection, jobs: Sequence[JobSpec]) -> None:
        if jobs:
            conn.execute(self.sql["ENQUEUE_MANY"], self.many_params(jobs))

    async def aenqueue_many(self, conn: psycopg.AsyncConnection, jobs: Sequence[JobSpec]) -> None:
        if jobs:
            await conn.execute(self.sql["ENQUEUE_MANY"], self.many_params(jobs))

    @staticmethod
    def many_params(jobs: Sequence[JobSpec]) -> dict[str, list]:
        return {
            "ids": [j.id for j in jobs], "tasks": [j.task for j in jobs], "queues": [j.queue for j in jobs],
            "priorities": [j.priority for j in jobs], "args": [j.args for j in jobs],
            "kwargs": [j.kwargs for j in jobs], "payloads": [j.payload for j in jobs],
            "content_types": [j.content_type for j in jobs], "headers": [j.headers for j in jobs],
            "etas": [j.eta for j in jobs], "countdowns": [j.countdown for j in jobs],
            "expires_ats": [j.expires_at for j in jobs], "expires_ins": [j.expires_in for j in jobs],
            "acks_lates": [j.acks_late for j in jobs], "group_ids": [j.group_id for j in jobs],
        }

    # workers -----------------------------------------------------------------------------------

    def claim(self, conn: psycopg.Connection, worker_id: str, queue: str, limit: int) -> list[ClaimedJob]:
        rows = conn.execute(self.sql["CLAIM"], {"worker_id": worker_id, "queue": queue, "limit": limit},
                            prepare=True).fetchall()
        rows.sort(key=lambda r: (-r[4], r[1]))  # RETURNING has no order: restore priority, then FIFO
        return [ClaimedJob(*r) for r in rows]

    def finish(self, conn: psycopg.Connection, worker_id: str, outcomes: Sequence[Outcome]) -> int:
        """Record outcomes; returns how many were still ours to record."""
        if not outcomes:
            return 0
        params = {
            "worker_id": worker_id,
            "ids": [o.id for o in outcomes], "attempts": [o.attempt for o in outcomes],
            "states": [o.state for o in outcomes], "results": [o.result for o in outcomes],
            "result_payloads": [o.result_payload for o in outcomes],
            "result_content_types": [o.result_content_type for o in outcomes],
            "exc_types": [o.exc_type for o in outcomes], "exc_messages": [o.exc_message for o in outcomes],
            "tracebacks": [o.traceback for o in outcomes],
        }
        return conn.execute(self.sql["FINISH"], params, prepare=True).fetchone()[0]

    def retry(self, conn: psycopg.Connection, worker_id: str, requests: Sequence[RetryRequest]) -> int:
        if not requests:
            return 0
        params = {
            "worker_id": worker_id, "ids": [r.id for r in requests], "attempts": [r.attempt for r in requests],
            "delays": [r.delay for r in requests], "errors": [r.error for r in requests],
        }
        return conn.execute(self.sql["RETRY"], params).fetchone()[0]

    def release(self, conn: psycopg.Connection, worker_id: str, jobs: Sequence[tuple[str, int]]) -> None:
        if jobs:
            conn.execute(self.sql["RELEASE"], {"worker_id": worker_id, "ids": [j[0] for j in jobs],
                                               "attempts": [j[1] for j in jobs]})

    def lost(self, conn: psycopg.Connection, worker_id: str, jobs: Sequence[tuple[str, int]],
             max_lost: int) -> tuple[int, int]:
        """Jobs this worker knows were interrupted: returns (requeued, failed)."""
        if not jobs:
            return 0, 0
        row = conn.execute(self.sql["LOST"], {"worker_id": worker_id, "ids": [j[0] for j in jobs],
                                              "attempts": [j[1] for j in jobs], "max_lost": max_lost}).fetchone()
        return row[0], row[1]

    def rescue(self, conn: psycopg.Connection, timeout: float, max_lost: int) -> tuple[int, int]:
        row = conn.execute(self.sql["RESCUE"], {"timeout": timeout, "max_lost": max_lost}).fetchone()
        return row[0], row[1]

    def promote(self, conn: psycopg.Connection, limit: int = 5000) -> int:
        return conn.execute(self.sql["PROMOTE"], {"limit": limit}, prepare=True).fetchone()[0]

    def next_scheduled_in(self, conn: psycopg.Connection) -> float | None:
        return conn.execute(self.sql["NEXT_SCHEDULED_IN"], prepare=True).fetchone()[0]

    def expire_results(self, conn: psycopg.Connection, ttl: float, limit: int = 10000) -> int:
        return conn.execute(self.sql["EXPIRE_RESULTS"], {"ttl": ttl, "limit": limit}).rowcount

    def register_worker(self, conn: psycopg.Connection, *, id: str, hostname: str, pid: int,
                        queues: list[str], concurrency: int, pool: str) -> None:
        conn.execute(self.sql["REGISTER_WORKER"], {"id": id, "hostname": hostname, "pid": pid,
                                                   "queues": queues, "concurrency": concurrency, "pool": pool})

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

    def try_xact_lock(self, conn: psycopg.Connection, key: int) -> bool:
        return conn.execute(self.sql["TRY_XACT_LOCK"], {"key": key}).fetchone()[0]

    def schema_exists(self, conn: psycopg.Connection) -> bool:
        return conn.execute(self.sql["SCHEMA_EXISTS"], {"jobs": f'"{self.schema}".jobs'}).fetchone()[0]
