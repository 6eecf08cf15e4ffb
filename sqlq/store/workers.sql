-- Workers: their rows and heartbeats, their liveness locks, and what happens to the jobs of a worker
-- that is gone (RESCUE) or of an attempt a worker knows was cut off (LOST).
--
-- A worker is dead when its heartbeat is older than `timeout` (hung, or a worker without a liveness
-- lock), or when its liveness lock has been free for `grace` seconds (its process, or its session,
-- is gone; WORKERS_LIVENESS notes when it was first seen free). Right after the server restarted
-- every lock is free: a worker not heard from since the restart gets `timeout` to come back. That
-- predicate is the same text in WORKERS_LIVENESS and RESCUE, and LOST and RESCUE share everything
-- after their `lost` CTE (a test keeps them so).
--
-- Statement format: sqlq/store/statements.py.

-- name: REGISTER_WORKER
-- A worker's row, written at start and again by a heartbeat that found it gone (the worker was
-- presumed dead meanwhile): it claims nothing without one. A worker back from the dead leaves
-- dead_workers. `tasks`: the task names its app registers (HAND_BACK reads them), written again
-- by a registration of a worker whose row exists (Worker.reload: tasks registered since).
WITH revived AS (
    DELETE FROM {dead_workers} WHERE id = %(id)s
)
INSERT INTO {workers} (id, hostname, pid, queues, concurrency, pool, lock_key, tasks)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(pool)s, %(lock_key)s, %(tasks)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), lock_lost_at = NULL, tasks = excluded.tasks

-- name: HEARTBEAT
-- No row returned: this worker was presumed dead and its jobs rescued. `workers`: how many rows the
-- table holds, so that each worker takes its share of the cluster-wide chores (Worker's `spread`)
-- rather than every worker doing each of them at the full rate.
UPDATE {workers} SET heartbeat_at = now(), lock_lost_at = NULL WHERE id = %(id)s
RETURNING (SELECT count(*) FROM {workers}) AS workers

-- name: UNREGISTER_WORKER
-- A worker that stopped has recorded every outcome: its row goes, and nobody rescues anything.
DELETE FROM {workers} WHERE id = %(id)s

-- name: WORKERS
-- `sqlq inspect workers` and `sqlq status`: every worker row with its state, judged here rather
-- than read from a mark, so that a killed worker reads as gone even when no live worker is left to
-- run RESCUE. 'online': its heartbeat is within `timeout` and it holds its liveness lock (or has
-- none: a burst worker); 'lost': its lock is free or its heartbeat is late (RESCUE takes its jobs
-- at the next look of a live worker); 'dead': RESCUE moved it to dead_workers (kept for
-- worker_dead_retention). The columns are WorkerRow's.
WITH held AS (
    SELECT objid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %(namespace)s::int4::oid
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT id::text, hostname, pid, queues, concurrency, pool, started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS silent_for,
       CASE WHEN heartbeat_at >= now() - make_interval(secs => %(timeout)s::float8)
                 AND (lock_key IS NULL OR lock_key::oid IN (SELECT objid FROM held))
            THEN 'online' ELSE 'lost' END AS state,
       tasks, NULL::timestamptz AS died_at
FROM {workers}
UNION ALL
SELECT id::text, hostname, pid, queues, concurrency, pool, started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8, 'dead', NULL, died_at
FROM {dead_workers}
ORDER BY started_at

-- name: WORKER_LOCK
-- Take this worker's liveness lock on its housekeeping session (try: a session of ours the server
-- has not yet seen die may still hold it; then it is held, which is all the lock has to say).
SELECT pg_try_advisory_lock(%(namespace)s, %(lock_key)s)

-- name: WORKERS_LIVENESS
-- Note which workers' liveness locks are free (lock_lost_at: when first seen so; back to NULL when
-- held again), and say whether any worker is now dead, so the caller runs RESCUE at once. Run every
-- half second by one worker at a time: pg_locks is read in memory, the workers table is small.
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
SELECT EXISTS (
    SELECT 1 FROM {workers} AS w
    WHERE (w.heartbeat_at < now() - make_interval(secs => %(timeout)s::float8)
           OR (w.lock_lost_at < now() - make_interval(secs => %(grace)s::float8)
               AND (w.heartbeat_at >= pg_postmaster_start_time()
                    OR pg_postmaster_start_time() < now() - make_interval(secs => %(timeout)s::float8))))
)

-- name: RESCUE
-- Maintenance: the jobs of dead workers (and of workers that vanished) are handed back or failed;
-- the dead workers' rows move to dead_workers.
-- Re-queued when the task acks late and has not already been interrupted `max_lost` times,
-- otherwise recorded as FAILURE (never dropped). `attempt - retries`, the number of workers the job
-- has cost, is taken in bigint: a row written by hand with values near the int limits must not make
-- the statement fail, which would stop every rescue.
WITH dead AS (
    DELETE FROM {workers} AS w
    WHERE (w.heartbeat_at < now() - make_interval(secs => %(timeout)s::float8)
           OR (w.lock_lost_at < now() - make_interval(secs => %(grace)s::float8)
               AND (w.heartbeat_at >= pg_postmaster_start_time()
                    OR pg_postmaster_start_time() < now() - make_interval(secs => %(timeout)s::float8))))
    RETURNING w.id, w.hostname, w.pid, w.queues, w.concurrency, w.pool, w.started_at, w.heartbeat_at
), buried AS (
    -- kept for `sqlq inspect workers` until worker_dead_retention (EXPIRE_DEAD_WORKERS)
    INSERT INTO {dead_workers} (id, hostname, pid, queues, concurrency, pool, started_at, heartbeat_at, died_at)
    SELECT id, hostname, pid, queues, concurrency, pool, started_at, heartbeat_at, clock_timestamp() FROM dead
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, died_at = excluded.died_at
), lost AS (
    SELECT j.id FROM {jobs} AS j
    WHERE j.state = 'running'
      AND (j.worker_id IN (SELECT id FROM dead)
           OR NOT EXISTS (SELECT 1 FROM {workers} AS w WHERE w.id = j.worker_id))
    FOR UPDATE OF j SKIP LOCKED
), requeued AS (
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
                                attempts, retries, worker_id, group_id, root_id, parent_id, workflow)
    SELECT id, task, queue, priority, 'FAILURE', args, kwargs, payload, content_type, 'sqlq.errors.WorkerLostError',
           CASE WHEN acks_late
                THEN format('the worker died while running this job, %%s times in a row; giving up',
                            attempt::bigint - retries)
                ELSE 'the worker died while running this job (acks_late is off, or reject_on_worker_lost is False, so it is not re-run)' END,
           NULL, enqueued_at, started_at, clock_timestamp(), attempt, retries, worker_id, group_id,
           root_id, parent_id, workflow
    FROM failed
    ON CONFLICT (id) DO NOTHING
    RETURNING r.id
)
SELECT (SELECT count(*) FROM requeued),
       (SELECT count(*) FROM ins),
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM requeued) AS q) AS n),
       (SELECT pg_notify({results_channel}, '') WHERE EXISTS (SELECT 1 FROM ins))

-- name: LOST
-- A worker reports jobs it knows were interrupted (a prefork child died, cold shutdown), guarded like
-- FINISH. Handed back or failed as RESCUE does; `rerun`: the attempt is known to have done nothing
-- (a transactional task whose connection broke and rolled back), so the job runs again even when
-- the task does not ack late.
WITH lost AS (
    SELECT j.id FROM {jobs} AS j
    JOIN unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt) ON j.id = r.id AND j.attempt = r.attempt
    WHERE j.worker_id = %(worker_id)s AND j.state NOT IN ('available', 'scheduled')
    FOR UPDATE OF j
), requeued AS (
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
                                attempts, retries, worker_id, group_id, root_id, parent_id, workflow)
    SELECT id, task, queue, priority, 'FAILURE', args, kwargs, payload, content_type, 'sqlq.errors.WorkerLostError',
           CASE WHEN acks_late
                THEN format('the worker died while running this job, %%s times in a row; giving up',
                            attempt::bigint - retries)
                ELSE 'the worker died while running this job (acks_late is off, or reject_on_worker_lost is False, so it is not re-run)' END,
           NULL, enqueued_at, started_at, clock_timestamp(), attempt, retries, worker_id, group_id,
           root_id, parent_id, workflow
    FROM failed
    ON CONFLICT (id) DO NOTHING
    RETURNING r.id
)
SELECT (SELECT count(*) FROM requeued),
       (SELECT count(*) FROM ins),
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM requeued) AS q) AS n),
       (SELECT pg_notify({results_channel}, '') WHERE EXISTS (SELECT 1 FROM ins))

-- name: EXPIRE_DEAD_WORKERS
-- Maintenance: dead workers are listed for worker_dead_retention seconds, then forgotten.
DELETE FROM {dead_workers} WHERE died_at < now() - make_interval(secs => %(retention)s::float8)

-- name: HAND_BACK
-- Jobs this worker claimed but cannot run, since its app does not register their task (guarded
-- like FINISH). Each goes back to wait, its attempt unspent, for a worker that knows the task,
-- when one may exist: a live worker of the job's queue (fresh heartbeat, liveness lock held, or a
-- burst worker) that lists the task, or lists nothing (an older sqlq: taken to know them all); it
-- waits `delay` seconds per earlier hand-back (at most `max_delay`), so this worker does not take
-- it straight back, and at most `max_handbacks` times. Otherwise it is recorded as FAILURE
-- NotRegistered, so a job no worker knows is never left waiting in silence.
WITH held AS (
    SELECT objid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %(namespace)s::int4::oid
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), mine AS (
    SELECT j.id, j.handbacks < %(max_handbacks)s AND EXISTS (
               SELECT 1 FROM {workers} AS w
               WHERE w.id <> %(worker_id)s AND j.queue = ANY (w.queues)
                 AND (w.tasks IS NULL OR j.task = ANY (w.tasks))
                 AND w.heartbeat_at >= now() - make_interval(secs => %(timeout)s::float8)
                 AND (w.lock_key IS NULL OR w.lock_key::oid IN (SELECT objid FROM held))) AS back
    FROM {jobs} AS j
    JOIN unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt) ON j.id = r.id AND j.attempt = r.attempt
    WHERE j.worker_id = %(worker_id)s AND j.state NOT IN ('available', 'scheduled')
    FOR UPDATE OF j
), handed AS (
    UPDATE {jobs} AS j
    SET state = 'scheduled', worker_id = NULL, started_at = NULL, attempt = j.attempt - 1,
        handbacks = j.handbacks + 1,
        run_at = now() + make_interval(secs => least(%(delay)s::float8 * (j.handbacks + 1), %(max_delay)s::float8))
    FROM mine
    WHERE j.id = mine.id AND mine.back
    RETURNING j.id
), failed AS (
    DELETE FROM {jobs} AS j USING mine
    WHERE j.id = mine.id AND NOT mine.back
    RETURNING j.*
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                exc_type, exc_message, traceback, enqueued_at, started_at, finished_at,
                                attempts, retries, worker_id, group_id, root_id, parent_id, workflow)
    SELECT id, task, queue, priority, 'FAILURE', args, kwargs, payload, content_type, 'sqlq.errors.NotRegistered',
           format('task %%L is not registered on any live worker of queue %%L (handed back %%s time(s)); '
                  'start a worker with the app that defines it (sqlq -A module worker -Q %%s), or check the '
                  'task name', task, queue, handbacks, queue),
           NULL, enqueued_at, started_at, clock_timestamp(), attempt, retries, worker_id, group_id,
           root_id, parent_id, workflow
    FROM failed
    ON CONFLICT (id) DO NOTHING
    RETURNING r.id
)
SELECT (SELECT count(*) FROM handed),
       (SELECT count(*) FROM ins),
       (SELECT pg_notify({results_channel}, string_agg(id::text, ',')) FROM ins HAVING count(*) > 0)
