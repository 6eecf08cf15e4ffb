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

__all__ = ["ClaimedJob", "ForeignSchedule", "Interrupted", "JobSpec", "Outcome", "RetryRequest", "ScheduleRow",
           "Store"]

# --- statements ---------------------------------------------------------------------------------

# Enqueue one job: one round trip, including the wake-up for idle workers. Every parameter is cast,
# so that sqlq's own connections can prepare it once and run it through libpq (store/fast.py).
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
    SELECT v.id, %(task)s::text, %(queue)s::text, %(priority)s::smallint,
           CASE WHEN v.run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           %(args)s::jsonb, %(kwargs)s::jsonb, %(payload)s::bytea, %(content_type)s::text, %(headers)s::jsonb,
           v.run_at, v.expires_at, statement_timestamp(), %(acks_late)s::bool, %(group_id)s::uuid
    FROM v
    RETURNING queue, state
)
SELECT pg_notify({jobs_channel}, queue) FROM ins WHERE state = 'available'
"""

# Enqueue one job that is due now (no countdown, eta or expiry; not routed): the common ``delay()``.
# The row ENQUEUE would write, without the time arithmetic.
ENQUEUE_NOW = """
INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                    run_at, enqueued_at, acks_late, group_id)
VALUES (%(id)s::uuid, %(task)s::text, %(queue)s::text, %(priority)s::smallint, 'available', %(args)s::jsonb,
        %(kwargs)s::jsonb, %(payload)s::bytea, %(content_type)s::text, %(headers)s::jsonb,
        statement_timestamp(), statement_timestamp(), %(acks_late)s::bool, %(group_id)s::uuid)
RETURNING pg_notify({jobs_channel}, queue)
"""

# Enqueue many jobs in one statement; one NOTIFY per queue that received due jobs.
_ENQUEUE_MANY_V = """
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
"""
_ENQUEUE_MANY_INSERT = """
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id)
    SELECT id, task, queue, priority,
           CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           args, kwargs, payload, content_type, headers, run_at,
           coalesce(expires_at, statement_timestamp() + make_interval(secs => expires_in)),
           statement_timestamp(), acks_late, group_id
    FROM v"""
ENQUEUE_MANY = _ENQUEUE_MANY_V + "), ins AS (" + _ENQUEUE_MANY_INSERT + """
    RETURNING queue, state
)
SELECT pg_notify({jobs_channel}, q.queue)
FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q
"""

# The retry of an enqueue on sqlq's own connection whose connection broke (App.enqueue): the first
# attempt may or may not have committed, so a job whose id is already there was written by it and
# is left alone. "There" is the jobs table (ON CONFLICT DO NOTHING, which also waits for a first
# attempt the server is still running) or, once a worker claimed and finished it in the meantime,
# the results table. Any job, one or many, due now or later, goes through this one batch form:
# the path is rare and its speed does not matter. No NOTIFY here: REWRITE_UNDO may still take a
# row back (Store.rewrite sends NOTIFY_QUEUES after it). (The cost of the guard: an id the caller
# reuses, whose earlier job is waiting or has a result, also counts as written on a retry.)
ENQUEUE_REWRITE = _ENQUEUE_MANY_V + ")" + _ENQUEUE_MANY_INSERT + """
    WHERE NOT EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = v.id)
    ON CONFLICT (id) DO NOTHING
"""

# Second statement of the retry, in its transaction: ENQUEUE_REWRITE's NOT EXISTS saw the results
# table as it was when that statement began, so a first attempt finished by a worker between that
# moment and the insert (its jobs row deleted, its result written, in one commit) was inserted
# again. This statement sees that commit (a new snapshot, read committed) and deletes those rows.
REWRITE_UNDO = """
DELETE FROM {jobs} AS j
WHERE j.id = ANY(%(ids)s::uuid[]) AND EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = j.id)
"""

# Bulk enqueue of jobs due now (no countdown, eta or expiry, not routed): COPY is several times
# faster than INSERT … SELECT unnest(…) for thousands of rows. run_at and enqueued_at take their
# defaults, now(): the database clock at the start of the (COPY's own or the caller's) transaction.
COPY_JOBS = """
COPY {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers, acks_late, group_id)
FROM STDIN
"""

# COPY_JOBS for the common batch (JobSpec.copies_lean): priority, content type, headers, acks_late,
# payload and group take their column defaults. Parsing and storing fewer values per row saves the
# server about a fifth of its work on a bulk enqueue.
COPY_JOBS_LEAN = """
COPY {jobs} (id, task, queue, state, args, kwargs) FROM STDIN
"""

# Wake the workers of the queues a COPY filled (delivered at commit, like every NOTIFY here).
NOTIFY_QUEUES = """
SELECT pg_notify({jobs_channel}, q) FROM unnest(%(queues)s::text[]) AS q
"""

# The claiming connection's session (Worker._claiming), which runs CLAIM and PROMOTE only:
# - They commit without waiting for the WAL flush. Their durability buys nothing: a claim lost in a
#   server crash puts the job back as it was, 'available', and the worker's FINISH, which does wait
#   for the flush, then matches nothing, so the job runs again, as after a worker crash
#   (at-least-once; a transactional task's writes roll back with its unmatched outcome). It saves a
#   flush per claim: ~0.3 ms of every claim here, the most of a small one.
# - CLAIM keeps one generic plan instead of being planned at every call (~0.25 ms here, as long as
#   running it for a few jobs: PostgreSQL never finds the generic plan cheaper, its LIMIT being
#   unknown). A generic plan is made once, though, and one made while the table was empty would
#   scan and sort the whole table at every claim once it fills up; without sequential scans and
#   sorts, the planner's only choice is the plan every claim wants: jobs_available in order, row
#   locks, stop at the LIMIT, then the rows by ctid. (PROMOTE is planned per call: Store.promote.)
CLAIM_SESSION_BEGIN = """
SELECT set_config('synchronous_commit', 'off', false), set_config('plan_cache_mode', 'force_generic_plan', false),
       set_config('enable_seqscan', 'off', false), set_config('enable_sort', 'off', false)
"""

# Back to the server's settings before the pooled connection serves anyone else.
CLAIM_SESSION_END = """
SELECT set_config(name, reset_val, false) FROM pg_settings
WHERE name IN ('synchronous_commit', 'plan_cache_mode', 'enable_seqscan', 'enable_sort')
"""

# Claim up to n due jobs of one queue, highest priority first, then FIFO. SKIP LOCKED lets any number
# of workers claim side by side without waiting on each other. A worker whose row is gone (presumed
# dead, its jobs rescued) claims nothing until its next heartbeat registers it again.
CLAIM = """
WITH picked AS (
    SELECT ctid FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s
      AND EXISTS (SELECT 1 FROM {workers} WHERE id = %(worker_id)s)
    ORDER BY priority DESC, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {jobs} AS j
SET state = 'running', worker_id = %(worker_id)s, attempt = j.attempt + 1, started_at = now()
WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))  -- rows are locked, so their ctid is stable: a TID scan
RETURNING j.id::text, j.seq, j.task, j.queue, j.priority, j.args::text, j.kwargs::text, j.payload,
          j.content_type, j.headers::text, (j.expires_at IS NOT NULL AND j.expires_at <= now()),
          j.attempt, j.retries, j.acks_late, j.group_id::text
"""

# Rows of one queue that CLAIM cannot take (Store.claim runs this when CLAIM fails for its data):
# an `attempt` CLAIM cannot increment, a `retries` RETRY cannot, or either negative, which sqlq
# never writes (a row written by hand or by another tool). Each leaves the queue as FAILURE
# InvalidJobError naming the columns and their values, so that no row stops a queue's claims and
# none disappears; a results row of a reused id is overwritten, as FINISH's upsert does. Waiting
# rows only: a claimed row belongs to its worker.
_IMPOSSIBLE = """(attempt < 0 OR attempt >= 2147483647 OR retries < 0 OR retries >= 2147483647)"""
QUARANTINE = """
WITH bad AS (
    SELECT id FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s AND """ + _IMPOSSIBLE + """
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM {jobs} AS j USING bad WHERE j.id = bad.id
    RETURNING j.*
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                exc_type, exc_message, enqueued_at, finished_at, attempts, retries, group_id)
    SELECT id, task, queue, priority, 'FAILURE', args, kwargs, payload, content_type, 'sqlq.errors.InvalidJobError',
           format('the job row holds a value no worker can run: %%s (each must be from 0 to 2147483646; '
                  'was the row written by hand?); it was set aside without running',
                  concat_ws(', ',
                            CASE WHEN attempt < 0 OR attempt >= 2147483647 THEN format('attempt = %%s', attempt) END,
                            CASE WHEN retries < 0 OR retries >= 2147483647 THEN format('retries = %%s', retries) END)),
           enqueued_at, clock_timestamp(), attempt, retries, group_id
    FROM gone
    ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, result = NULL, result_payload = NULL, result_content_type = NULL,
        exc_type = excluded.exc_type, exc_message = excluded.exc_message, traceback = NULL,
        finished_at = excluded.finished_at, attempts = excluded.attempts, retries = excluded.retries
    RETURNING r.id
)
SELECT count(*), pg_notify({results_channel}, coalesce(string_agg(id::text, ','), '')) FROM ins
"""

# A claimed job's row while its worker holds it: the same as state = 'running' (every way out of
# 'running' also clears worker_id), written so that it does not imply jobs_running's predicate.
_STILL_OUT = "j.state NOT IN ('available', 'scheduled')"

# Record many outcomes at once: the rows leave the hot table and enter results in one statement.
# Outcomes whose guard does not match (the job was rescued meanwhile) are ignored. Each variant
# below starts with its own CTE `o` of (id, attempt, state, result, result_payload,
# result_content_type, exc_type, exc_message, traceback).
#
# FINISH and FINISH_OK insert plain rows: a results row with the same id exists only when a task id
# was reused after its first job finished, and that statement then fails with a unique violation
# (having written nothing) and Store.finish runs its *_UPSERT twin instead. ON CONFLICT on every
# batch would cost a speculative insertion per row (an extra index probe and WAL record): about a
# fifth of FINISH's server time. The count and the NOTIFY are taken from `done`: one row in results
# per row deleted.
#
# The rows are found through the primary key (`j.id = ANY(…)`: one index scan probing each id),
# whatever the batch size and the statistics. Joined on id alone, the planner scanned the worker's
# entries in jobs_running instead, dead ones included: every job the worker had claimed since the
# last VACUUM, so a long drain slowed down as it went (to half its rate within 400,000 jobs here).
# For the same reason the guards say "not back in the queue" (`_STILL_OUT`), not state = 'running',
# which is jobs_running's predicate: the planner takes that index whenever a guard implies it.
_FINISH_DONE = """), done AS (
    DELETE FROM {jobs} AS j USING o
    WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
      AND j.worker_id = %(worker_id)s AND j.attempt = o.attempt AND """ + _STILL_OUT + """
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
"""
_FINISH_UPSERT = """    ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, result = excluded.result, result_payload = excluded.result_payload,
        result_content_type = excluded.result_content_type, exc_type = excluded.exc_type,
        exc_message = excluded.exc_message, traceback = excluded.traceback,
        finished_at = excluded.finished_at, attempts = excluded.attempts, retries = excluded.retries,
        worker_id = excluded.worker_id
"""
_FINISH_NOTIFY = """)
SELECT count(*), pg_notify({results_channel},
                           CASE WHEN count(*) <= 150 THEN coalesce(string_agg(id::text, ','), '') ELSE '' END)
FROM done
"""

_FINISH_O = """
WITH o AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(states)s::text[], %(results)s::jsonb[],
                         %(result_payloads)s::bytea[], %(result_content_types)s::text[],
                         %(exc_types)s::text[], %(exc_messages)s::text[], %(tracebacks)s::text[])
         AS o(id, attempt, state, result, result_payload, result_content_type, exc_type, exc_message, traceback)
"""
FINISH = _FINISH_O + _FINISH_DONE + _FINISH_NOTIFY
FINISH_UPSERT = _FINISH_O + _FINISH_DONE + _FINISH_UPSERT + _FINISH_NOTIFY

# The common batch: every job succeeded with a JSON result (or none kept). Three arrays instead of
# nine, because encoding the parameters is a large part of the worker's cost per job. They are sent
# in binary (uuid[], int[], text[]; see _finish_ok_params): parsing the text forms of a uuid[] and
# a jsonb[] cost the server ~3 µs per job, more than the binary encoding costs the worker. Results
# are sent as text and cast here; 'null' (a task returning None) is a constant, parsed once.
_FINISH_OK_O = """
WITH o AS (
    SELECT u.id, u.attempt, 'SUCCESS'::text AS state,
           CASE WHEN u.result = 'null' THEN 'null'::jsonb ELSE u.result::jsonb END AS result,
           NULL::bytea AS result_payload,
           CASE WHEN u.result IS NULL THEN NULL ELSE 'application/json' END AS result_content_type,
           NULL::text AS exc_type, NULL::text AS exc_message, NULL::text AS traceback
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(results)s::text[]) AS u(id, attempt, result)
"""
FINISH_OK = _FINISH_OK_O + _FINISH_DONE + _FINISH_NOTIFY
FINISH_OK_UPSERT = _FINISH_OK_O + _FINISH_DONE + _FINISH_UPSERT + _FINISH_NOTIFY

# Put jobs back to wait for a retry (state RETRY to the user), guarded like FINISH.
RETRY = """
WITH r AS (
    SELECT id, attempt, error,
           coalesce(to_timestamp(eta), now() + make_interval(secs => greatest(delay, 0))) AS run_at
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(delays)s::float8[], %(etas)s::float8[],
                %(errors)s::text[]) AS r(id, attempt, delay, eta, error)
), upd AS (
    UPDATE {jobs} AS j
    SET state = CASE WHEN r.run_at > now() THEN 'scheduled' ELSE 'available' END,
        run_at = r.run_at,
        retries = j.retries + 1, worker_id = NULL, started_at = NULL, last_error = r.error
    FROM r
    WHERE j.id = r.id AND j.worker_id = %(worker_id)s AND j.attempt = r.attempt AND """ + _STILL_OUT + """
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
    WHERE j.id = r.id AND j.worker_id = %(worker_id)s AND j.attempt = r.attempt AND """ + _STILL_OUT + """
    RETURNING j.queue
)
SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue) FROM (SELECT DISTINCT queue FROM upd) AS q) AS n
"""

# Jobs whose worker is gone: re-queued when the task acks late (or `rerun`: the attempt is known to
# have done nothing, e.g. a transactional task whose connection broke and rolled back) and has not
# already been interrupted `max_lost` times, otherwise recorded as FAILURE (never dropped).
# `lost` selects the jobs. `attempt - retries` is taken in bigint: a row written by hand with
# values near the int limits must not make the statement fail, which would stop every rescue.
_LOST_TAIL = """
, requeued AS (
    UPDATE {jobs} AS j
    SET state = 'available', worker_id = NULL, started_at = NULL,
        last_error = 'sqlq.errors.WorkerLostError: the worker running this job was lost'
    FROM lost
    WHERE j.id = lost.id AND (j.acks_late OR %(rerun)s) AND (j.attempt::bigint - j.retries) < %(max_lost)s
    RETURNING j.id, j.queue
), failed AS (
    DELETE FROM {jobs} AS j USING lost
    WHERE j.id = lost.id AND NOT ((j.acks_late OR %(rerun)s) AND (j.attempt::bigint - j.retries) < %(max_lost)s)
    RETURNING j.*
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                exc_type, exc_message, traceback, enqueued_at, started_at, finished_at,
                                attempts, retries, worker_id, group_id)
    SELECT id, task, queue, priority, 'FAILURE', args, kwargs, payload, content_type, 'sqlq.errors.WorkerLostError',
           CASE WHEN acks_late
                THEN format('the worker died while running this job, %%s times in a row; giving up',
                            attempt::bigint - retries)
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
    WHERE j.worker_id = %(worker_id)s AND """ + _STILL_OUT + """
    FOR UPDATE OF j
)""" + _LOST_TAIL

#: Seconds a worker's liveness lock must stay free before the worker is presumed dead: a live
#: worker whose session was cut (a terminated backend) reconnects and takes it back well within it.
LIVENESS_GRACE = 1.0

# A worker is dead when its heartbeat is older than `timeout` (hung, or a worker without a liveness
# lock), or when its liveness lock has been free for `grace` seconds (its process, or its session,
# is gone; WORKERS_LIVENESS notes when it was first seen free). Right after the server restarted
# every lock is free: a worker not heard from since the restart gets `timeout` to come back.
_DEAD_WORKER = """(w.heartbeat_at < now() - make_interval(secs => %(timeout)s::float8)
       OR (w.lock_lost_at < now() - make_interval(secs => %(grace)s::float8)
           AND (w.heartbeat_at >= pg_postmaster_start_time()
                OR pg_postmaster_start_time() < now() - make_interval(secs => %(timeout)s::float8))))"""

# Maintenance: jobs of dead workers (and of workers that vanished) are handed back or failed.
RESCUE = """
WITH dead AS (
    DELETE FROM {workers} AS w WHERE """ + _DEAD_WORKER + """
    RETURNING id
), lost AS (
    SELECT j.id FROM {jobs} AS j
    WHERE j.state = 'running'
      AND (j.worker_id IN (SELECT id FROM dead)
           OR NOT EXISTS (SELECT 1 FROM {workers} AS w WHERE w.id = j.worker_id))
    FOR UPDATE OF j SKIP LOCKED
)""" + _LOST_TAIL

# Note which workers' liveness locks are free (lock_lost_at: when first seen so; back to NULL when
# held again), and say whether any worker is now dead, so the caller runs RESCUE at once. Run every
# half second by one worker at a time: pg_locks is read in memory, the workers table is small.
WORKERS_LIVENESS = """
WITH held AS (
    SELECT objid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %(namespace)s::int4::oid
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), seen AS (
    SELECT w.id, w.lock_key::oid IN (SELECT objid FROM held) AS locked FROM {workers} AS w
    WHERE w.lock_key IS NOT NULL
), marked AS (
    UPDATE {workers} AS w
    SET lock_lost_at = CASE WHEN seen.locked THEN NULL ELSE clock_timestamp() END
    FROM seen
    WHERE w.id = seen.id AND (w.lock_lost_at IS NULL) <> seen.locked
)
SELECT EXISTS (SELECT 1 FROM {workers} AS w WHERE """ + _DEAD_WORKER + """)
"""

# Take this worker's liveness lock on its housekeeping session (try: a session of ours the server
# has not yet seen die may still hold it; then it is held, which is all the lock has to say).
WORKER_LOCK = """
SELECT pg_try_advisory_lock(%(namespace)s, %(lock_key)s)
"""

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
INSERT INTO {workers} (id, hostname, pid, queues, concurrency, pool, lock_key)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(pool)s, %(lock_key)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), lock_lost_at = NULL
"""

HEARTBEAT = """
UPDATE {workers} SET heartbeat_at = now(), lock_lost_at = NULL WHERE id = %(id)s RETURNING id
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

# Which migration the schema is at; alembic keeps this one-row table (missing: never migrated).
SCHEMA_REVISION = """
SELECT version_num FROM {version_table} LIMIT 1
"""

# Cluster-wide chores are done by one worker at a time: whoever gets this lock for the transaction.
TRY_XACT_LOCK = """
SELECT pg_try_advisory_xact_lock(%(key)s)
"""

# Work that must not interleave (beats syncing their configs) waits its turn for this lock.
XACT_LOCK = """
SELECT pg_advisory_xact_lock(%(key)s)
"""

# --- schedules ----------------------------------------------------------------------------------
# Periodic tasks (``sqlq beat``, sqlq/beat.py and sqlq/periodic.py). ``schedules.next_fire_at`` is
# the cursor: the first tick not yet sent. A beat claims due rows with SKIP LOCKED and, in the same
# transaction, writes one ``schedule_ticks`` row per tick next to the job it enqueued, then moves
# the cursor. The tick row's primary key makes a tick fire at most once, whatever the beats do.

_SCHEDULE_COLUMNS = """name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone, enabled,
       source, next_fire_at, last_fire_at, total_run_count, last_error, created_at, updated_at, owner"""

# The time every schedule decision is made against: the database's, never a beat host's.
SCHEDULE_CLOCK = """
SELECT clock_timestamp()
"""

# Write a definition. An existing row keeps its cursor while its timing (cron, interval, anchor,
# time zone) is unchanged, so a restarted beat neither repeats nor skips a tick; `enabled` belongs to
# the operator (pause/resume) and is never touched. A NULL next_fire_at marks an invalid definition.
SCHEDULE_UPSERT = """
INSERT INTO {schedules} AS s (name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone,
                              enabled, source, next_fire_at, last_error, owner)
VALUES (%(name)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(options)s::jsonb, %(cron)s,
        %(interval_seconds)s, %(anchor)s, %(timezone)s, %(enabled)s, %(source)s, %(next_fire_at)s,
        %(last_error)s, %(owner)s)
ON CONFLICT (name) DO UPDATE SET
    task = excluded.task, args = excluded.args, kwargs = excluded.kwargs, options = excluded.options,
    cron = excluded.cron, interval_seconds = excluded.interval_seconds, anchor = excluded.anchor,
    timezone = excluded.timezone, source = excluded.source, owner = excluded.owner,
    next_fire_at = CASE
        WHEN excluded.next_fire_at IS NOT NULL AND s.next_fire_at IS NOT NULL
             AND (s.cron, s.interval_seconds, s.anchor, s.timezone)
                 IS NOT DISTINCT FROM (excluded.cron, excluded.interval_seconds, excluded.anchor, excluded.timezone)
        THEN s.next_fire_at ELSE excluded.next_fire_at END,
    last_error = CASE
        WHEN excluded.last_error IS NOT NULL THEN excluded.last_error
        WHEN (s.task, s.args, s.kwargs, s.options, s.cron, s.interval_seconds, s.anchor, s.timezone)
             IS NOT DISTINCT FROM (excluded.task, excluded.args, excluded.kwargs, excluded.options,
                                   excluded.cron, excluded.interval_seconds, excluded.anchor, excluded.timezone)
        THEN s.last_error END,
    updated_at = CASE
        WHEN (s.task, s.args, s.kwargs, s.options, s.cron, s.interval_seconds, s.anchor, s.timezone, s.source)
             IS NOT DISTINCT FROM (excluded.task, excluded.args, excluded.kwargs, excluded.options,
                                   excluded.cron, excluded.interval_seconds, excluded.anchor, excluded.timezone,
                                   excluded.source)
        THEN s.updated_at ELSE now() END
"""

# Add a schedule only if the name is free (RETURNING says whether it was).
SCHEDULE_INSERT = """
INSERT INTO {schedules} (name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone,
                         enabled, source, next_fire_at, last_error, owner)
VALUES (%(name)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(options)s::jsonb, %(cron)s,
        %(interval_seconds)s, %(anchor)s, %(timezone)s, %(enabled)s, %(source)s, %(next_fire_at)s,
        %(last_error)s, %(owner)s)
ON CONFLICT (name) DO NOTHING
RETURNING name
"""

# This owner's config schedules that its config no longer names; schedules added by hand, and
# those of other apps sharing the schema (another owner, or none: rows older than owners), stay.
SCHEDULE_DELETE_STALE_CONFIG = """
DELETE FROM {schedules}
WHERE source = 'config' AND owner = %(owner)s AND name <> ALL(%(names)s::text[])
RETURNING name
"""

# Config schedules of other owners, and whether this owner's config names them too: read before a
# sync so that the beat can say which it leaves alone and which it takes over.
SCHEDULE_FOREIGN_CONFIG = """
SELECT name, owner, name = ANY(%(names)s::text[]) FROM {schedules}
WHERE source = 'config' AND owner IS DISTINCT FROM %(owner)s
ORDER BY name
"""

SCHEDULE_DELETE = """
DELETE FROM {schedules} WHERE name = %(name)s RETURNING name
"""

SCHEDULE_GET = """
SELECT """ + _SCHEDULE_COLUMNS + """ FROM {schedules} WHERE name = %(name)s
"""

# The same row, locked: run-now and resume wait for a beat that is firing it.
SCHEDULE_GET_FOR_UPDATE = SCHEDULE_GET.rstrip() + " FOR UPDATE\n"

SCHEDULE_LIST = """
SELECT """ + _SCHEDULE_COLUMNS + """ FROM {schedules} ORDER BY name
"""

# Due schedules for this beat; rows another beat is firing right now are skipped, not waited for.
SCHEDULE_CLAIM_DUE = """
SELECT """ + _SCHEDULE_COLUMNS + """ FROM {schedules}
WHERE enabled AND next_fire_at <= %(now)s
ORDER BY next_fire_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

# One row per tick, written with its job; a tick that already has a row is not sent again.
SCHEDULE_TICKS_INSERT = """
INSERT INTO {schedule_ticks} (schedule, tick, job_id, fired_by)
SELECT %(name)s, u.tick, u.job_id, %(fired_by)s
FROM unnest(%(ticks)s::timestamptz[], %(job_ids)s::uuid[]) AS u(tick, job_id)
ON CONFLICT (schedule, tick) DO NOTHING
RETURNING job_id::text
"""

# Move the cursor after a pass: `fired` ticks were sent (last_fire_at only ever grows). Tick rows
# before `prune_before` go in the same statement: the cursor only moves forward, so they can never
# be proposed again, and the history stays bounded.
SCHEDULE_ADVANCE = """
WITH pruned AS (
    DELETE FROM {schedule_ticks} WHERE schedule = %(name)s AND tick < %(prune_before)s::timestamptz
)
UPDATE {schedules}
SET next_fire_at = %(next_fire_at)s, last_fire_at = greatest(last_fire_at, %(last_fire_at)s),
    total_run_count = total_run_count + %(fired)s, last_error = %(last_error)s
WHERE name = %(name)s
"""

SCHEDULE_PAUSE = """
UPDATE {schedules} SET enabled = false, updated_at = now() WHERE name = %(name)s AND enabled RETURNING name
"""

# Resuming starts from now: ticks that fell while paused are not sent.
SCHEDULE_RESUME = """
UPDATE {schedules} SET enabled = true, next_fire_at = %(next_fire_at)s, last_error = %(last_error)s,
                       updated_at = now()
WHERE name = %(name)s AND NOT enabled RETURNING name
"""

# How long a beat may sleep: the database's time and the earliest cursor of an enabled schedule.
SCHEDULE_NEXT_DUE = """
SELECT clock_timestamp(), min(next_fire_at) FROM {schedules} WHERE enabled
"""


# --- end of schedules ---------------------------------------------------------------------------

# --- routing ------------------------------------------------------------------------------------
# Exchanges and bindings (sqlq/routing.py). Matching is `<schema>.route_queues(exchange, key)` from
# migration 0002 (NULL: no such exchange, '{}': nothing matched and no alternate queue); the SQL API's
# publish() calls the same function, so there is one matcher.

def _derived_id(job_id: str, tag: str) -> str:
    """SQL for a uuid derived from the SQL expressions ``job_id`` (a uuid) and ``tag`` (text): the
    same on every run (a retry names the jobs the first attempt wrote), distinct per tag, and no
    more likely than a random one to meet another job's id (the first 128 bits of a SHA-256)."""
    return f"substr(encode(sha256(convert_to({job_id}::text || '/' || {tag}, 'UTF8')), 'hex'), 1, 32)::uuid"


# Publish jobs through exchanges (or straight to a queue when exchange is NULL) in ONE statement:
# the bindings are matched inside the INSERT. All or nothing: if any message names an unknown
# exchange or matches no queue, nothing is inserted and its row says why, so the caller raises
# without aborting its transaction. A message reaching several queues becomes one job per queue
# (the first keeps the given id, the others and the group get ids derived from it, so that a retry
# of the statement, PUBLISH_REWRITE, names the same jobs), sharing a group id. One NOTIFY per queue
# that got due jobs.
# Returns one row per message, in order: (ord, exchange_exists, queue_count, ids, queues, group_id).
# route_queues is a SQL function the planner inlines here, so the match is planned with the statement.
_PUBLISH_ROUTE = """
), g AS MATERIALIZED (
    SELECT m.*, CASE WHEN cardinality(m.dest) > 1 THEN coalesce(m.group_id, m.fanout_id)
                     ELSE m.group_id END AS job_group
    FROM m
), v AS MATERIALIZED (
    SELECT g.ord, d.n, d.queue AS dest_queue,
           CASE WHEN d.n = 1 THEN g.id ELSE """ + _derived_id("g.id", "d.n::text") + """ END AS job_id,
           coalesce(g.eta, statement_timestamp() + make_interval(secs => coalesce(g.countdown, 0))) AS run_at,
           g.task, g.priority, g.args, g.kwargs, g.payload, g.content_type, g.headers, g.expires_at,
           g.expires_in, g.acks_late, g.job_group
    FROM g CROSS JOIN LATERAL unnest(g.dest) WITH ORDINALITY AS d(queue, n)
    WHERE NOT EXISTS (SELECT 1 FROM g AS bad WHERE bad.dest IS NULL OR cardinality(bad.dest) = 0)
), ins AS (
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id)
    SELECT job_id, task, dest_queue, priority,
           CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           args, kwargs, payload, content_type, headers, run_at,
           coalesce(expires_at, statement_timestamp() + make_interval(secs => expires_in)),
           statement_timestamp(), acks_late, job_group
    FROM v"""
_PUBLISH_ROWS = """
    RETURNING queue, state
)
SELECT g.ord, g.dest IS NOT NULL, coalesce(cardinality(g.dest), 0),
       (SELECT array_agg(v.job_id::text ORDER BY v.n) FROM v WHERE v.ord = g.ord),
       (SELECT array_agg(v.dest_queue ORDER BY v.n) FROM v WHERE v.ord = g.ord),
       g.job_group::text,"""
_PUBLISH_TAIL = _PUBLISH_ROUTE + _PUBLISH_ROWS + """
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q) AS n)
FROM g ORDER BY g.ord
"""
# ENQUEUE_REWRITE's guard for PUBLISH_REWRITE, and its last column: the jobs inserted, no NOTIFY.
_PUBLISH_REWRITE_TAIL = _PUBLISH_ROUTE + """
    WHERE NOT EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = v.job_id)
    ON CONFLICT (id) DO NOTHING""" + _PUBLISH_ROWS + """
       (SELECT count(*) FROM ins)
FROM g ORDER BY g.ord
"""

# Many messages (apply_many, delay_many, a beat pass): arrays, one row per message.
_PUBLISH_M = """
WITH m AS MATERIALIZED (
    SELECT u.*, """ + _derived_id("u.id", "'group'") + """ AS fanout_id,
           CASE WHEN u.exchange IS NULL THEN ARRAY[u.queue] ELSE r.queues END AS dest
    FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(queues)s::text[], %(exchanges)s::text[],
                %(routing_keys)s::text[], %(priorities)s::smallint[], %(args)s::jsonb[], %(kwargs)s::jsonb[],
                %(payloads)s::bytea[], %(content_types)s::text[], %(headers)s::jsonb[],
                %(etas)s::timestamptz[], %(countdowns)s::float8[], %(expires_ats)s::timestamptz[],
                %(expires_ins)s::float8[], %(acks_lates)s::bool[], %(group_ids)s::uuid[]) WITH ORDINALITY
         AS u(id, task, queue, exchange, routing_key, priority, args, kwargs, payload, content_type, headers,
              eta, countdown, expires_at, expires_in, acks_late, group_id, ord)
    LEFT JOIN LATERAL {route_queues}(u.exchange, u.routing_key) AS r ON true"""
PUBLISH = _PUBLISH_M + _PUBLISH_TAIL

# The retry of a routed publish whose connection broke: PUBLISH guarded as ENQUEUE_REWRITE is. Its
# rows are PUBLISH's, for the jobs the first attempt wrote as for those written now (their ids are
# derived from the message's), so the caller gets the same results either way.
PUBLISH_REWRITE = _PUBLISH_M + _PUBLISH_REWRITE_TAIL

# One message (delay, apply_async): the same statement with scalar parameters, whose generic plan
# PostgreSQL can reuse (array parameters would keep it re-planning a custom plan on every call).
PUBLISH_ONE = """
WITH m AS MATERIALIZED (
    SELECT 1::bigint AS ord, %(id)s::uuid AS id, %(task)s::text AS task, %(priority)s::smallint AS priority,
           %(args)s::jsonb AS args, %(kwargs)s::jsonb AS kwargs, %(payload)s::bytea AS payload,
           %(content_type)s::text AS content_type, %(headers)s::jsonb AS headers, %(eta)s::timestamptz AS eta,
           %(countdown)s::float8 AS countdown, %(expires_at)s::timestamptz AS expires_at,
           %(expires_in)s::float8 AS expires_in, %(acks_late)s::bool AS acks_late,
           %(group_id)s::uuid AS group_id, """ + _derived_id("%(id)s::uuid", "'group'") + """ AS fanout_id,
           CASE WHEN %(exchange)s::text IS NULL THEN ARRAY[%(queue)s::text] ELSE r.queues END AS dest
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL {route_queues}(%(exchange)s::text, %(routing_key)s::text) AS r ON true""" + _PUBLISH_TAIL

# Declare exchanges and bindings in one statement, idempotently. An exchange whose stored type
# differs from the declared one is a conflict: then nothing is written and the conflicts come back.
# A NULL declared type keeps the stored one ('direct' for a new exchange); a NULL alternate queue
# keeps the stored one. Returns (exchanges written, bindings added, conflicts).
DECLARE_ROUTES = """
WITH x AS (
    SELECT * FROM unnest(%(names)s::text[], %(types)s::text[], %(alternates)s::text[])
         AS x(name, type, alternate_queue)
), conflict AS (
    SELECT format('%%s is %%s in the database, declared %%s', quote_literal(e.name), e.type, x.type) AS msg
    FROM {exchanges} AS e JOIN x ON x.name = e.name
    WHERE x.type IS NOT NULL AND x.type <> e.type
), ex AS (
    INSERT INTO {exchanges} AS e (name, type, alternate_queue)
    SELECT name, coalesce(type, 'direct'), alternate_queue FROM x WHERE NOT EXISTS (SELECT 1 FROM conflict)
    ON CONFLICT (name) DO UPDATE SET alternate_queue = coalesce(excluded.alternate_queue, e.alternate_queue)
    RETURNING 1
), b AS (
    INSERT INTO {bindings} (exchange, binding_key, queue)
    SELECT * FROM unnest(%(b_exchanges)s::text[], %(b_keys)s::text[], %(b_queues)s::text[])
    WHERE NOT EXISTS (SELECT 1 FROM conflict)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM ex), (SELECT count(*) FROM b), (SELECT array_agg(msg ORDER BY msg) FROM conflict)
"""

EXCHANGE_TYPE = """
SELECT type FROM {exchanges} WHERE name = %(name)s
"""

UNBIND = """
DELETE FROM {bindings}
WHERE exchange = %(exchange)s AND queue = %(queue)s AND (%(key)s::text IS NULL OR binding_key = %(key)s)
"""

# Bindings go with their exchange (ON DELETE CASCADE).
DELETE_EXCHANGE = """
DELETE FROM {exchanges} WHERE name = %(name)s
"""

LIST_ROUTES = """
SELECT e.name, e.type, e.alternate_queue, b.binding_key, b.queue
FROM {exchanges} AS e LEFT JOIN {bindings} AS b ON b.exchange = e.name
ORDER BY e.name, b.queue, b.binding_key
"""

ROUTE_QUEUES = """
SELECT {route_queues}(%(exchange)s, %(routing_key)s)
"""

# --- end of routing -----------------------------------------------------------------------------

_STATEMENTS = {
    name: value for name, value in globals().items()
    if name.isupper() and not name.startswith("_") and isinstance(value, str)
}


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
        }
        self.sql: dict[str, str] = {
            name: sql.SQL(template).format(**ident).as_string(None) for name, template in _STATEMENTS.items()
        }
        self._fast = {key: fast.FastStatement.of(key, self.sql[key]) for key in fast.STATEMENTS}
        self.listen_jobs = sql.SQL("LISTEN {}").format(sql.Identifier(self.jobs_channel)).as_string(None)
        self.listen_results = sql.SQL("LISTEN {}").format(sql.Identifier(self.results_channel)).as_string(None)

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
            statement += "_UPSERT"
        # Never prepared. A generic plan cannot see the batch size (a nested loop: seconds for a
        # thousand outcomes), and one made while the table held a few rows scans the whole table
        # at every later FINISH (32 ms for ten outcomes once 200,000 jobs wait). Planning each
        # call costs ~0.6 ms, the price of a plan that follows the table.
        try:
            return conn.execute(self.sql[statement], params, prepare=False).fetchone()[0]
        except psycopg.errors.UniqueViolation:
            if statement.endswith("_UPSERT"):
                raise
        return conn.execute(self.sql[statement + "_UPSERT"], params, prepare=False).fetchone()[0]

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
