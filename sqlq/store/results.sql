-- Results: one row per finished job (SUCCESS, FAILURE, REVOKED, EXPIRED), read by result handles,
-- woken by the results channel, kept for `result_expires` seconds.
--
-- Statement format: sqlq/store/statements.py.

-- name: FETCH_STATE
-- What a result handle sees: the final row if there is one, else the waiting or running job, in
-- Celery's state names. A running job that reported a state with update_state in this attempt
-- shows that state, its meta in the result column (JSON text), as Celery returns meta as the
-- result of a custom state. A running job also names the worker running it (its process id and
-- hostname: Celery's info of a STARTED task). A job waiting for its retry shows the error and the
-- traceback of the attempt that asked for it. The columns are JobState's.
SELECT state, result::text, result_payload, result_content_type, exc_type, exc_message, traceback,
       finished_at, task, retries, group_id::text, NULL::int, NULL::text
FROM {results} WHERE id = %(id)s
UNION ALL
SELECT CASE WHEN j.state = 'running' AND j.progress_attempt = j.attempt THEN j.progress_state
            WHEN j.state = 'running' THEN 'STARTED'
            WHEN j.retries > 0 THEN 'RETRY'
            ELSE 'PENDING' END,
       CASE WHEN j.state = 'running' AND j.progress_attempt = j.attempt THEN j.progress_meta::text END,
       NULL, NULL, NULL, j.last_error,
       CASE WHEN j.state <> 'running' AND j.retries > 0 THEN j.last_traceback END,
       NULL, j.task, j.retries, j.group_id::text, w.pid, w.hostname
FROM {jobs} AS j LEFT JOIN {workers} AS w ON w.id = j.worker_id AND j.state = 'running'
WHERE j.id = %(id)s
LIMIT 1

-- name: SET_PROGRESS
-- Task.update_state: a running job's reported state and meta, on its own row, stamped with the
-- attempt so that a retried job does not show the previous attempt's progress. Only a running
-- job (no row back otherwise: the caller says why); the FINISH statements move the row out of
-- jobs, so the outcome replaces the progress without touching it.
UPDATE {jobs} SET progress_state = %(state)s, progress_meta = %(meta)s::jsonb, progress_attempt = attempt
WHERE id = %(id)s AND state = 'running'
RETURNING attempt

-- name: FORGET
-- `AsyncResult.forget()`: the stored outcome goes, the job (if any) is not affected.
DELETE FROM {results} WHERE id = %(id)s

-- name: REVOKE
-- Revoke jobs: every id is kept in `revoked` (a workflow step not enqueued yet is recorded REVOKED
-- by the workflow trigger when its turn comes, instead of running; a worker can check the table),
-- and the jobs that have not started leave the queue as REVOKED results, in the same statement, so
-- their workflows stop there (the trigger). A running job belongs to its worker and is left alone
-- here (a terminate goes to its worker through the control channel). `terminate` and `signal` are
-- kept with the id (a second revoke of an id keeps the strongest request), until `expires` seconds
-- from now (worker_revoke_expires; NULL: no expiry of its own) or EXPIRE_RESULTS's ttl.
WITH kept AS (
    INSERT INTO {revoked} (id, terminate, signal, expires_at)
    SELECT DISTINCT u.id, %(terminate)s::bool, %(signal)s::text,
           now() + make_interval(secs => %(expires)s::float8)
    FROM unnest(%(ids)s::uuid[]) AS u(id)
    ON CONFLICT (id) DO UPDATE SET revoked_at = now(),
        terminate = {revoked}.terminate OR excluded.terminate,
        signal = coalesce(excluded.signal, {revoked}.signal),
        expires_at = excluded.expires_at
), gone AS (
    DELETE FROM {jobs} WHERE id = ANY(%(ids)s::uuid[]) AND state IN ('available', 'scheduled')
    RETURNING *
), ins AS (
    INSERT INTO {results} (id, task, queue, priority, state, args, kwargs, payload, content_type,
                           exc_type, exc_message, enqueued_at, finished_at, attempts, retries, group_id,
                           root_id, parent_id, workflow)
    SELECT id, task, queue, priority, 'REVOKED', args, kwargs, payload, content_type, 'sqlq.errors.TaskRevokedError',
           'revoked before it started', enqueued_at, clock_timestamp(), attempt, retries, group_id,
           root_id, parent_id, workflow
    FROM gone
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT count(*), pg_notify({results_channel}, coalesce(string_agg(id::text, ','), '')) FROM ins

-- name: EXPIRE_RESULTS
-- Expired results go in bounded batches so one pass never holds locks for long. Saved groups
-- (GroupResult.save()) older than the same ttl go with them, in bounded batches too: a restored
-- group whose members' results are gone would only read PENDING; so do chords (a chord row left
-- that old belongs to a header whose results are gone) and revoked ids. The row count is the
-- results'.
WITH old AS (
    SELECT id FROM {results}
    WHERE finished_at < now() - make_interval(secs => %(ttl)s::float8)
    LIMIT %(limit)s
), old_groups AS (
    DELETE FROM {groups} AS g
    USING (SELECT id FROM {groups} WHERE saved_at < now() - make_interval(secs => %(ttl)s::float8)
           LIMIT %(limit)s) AS o
    WHERE g.id = o.id
), old_chords AS (
    DELETE FROM {chords} AS c
    USING (SELECT id FROM {chords} WHERE created_at < now() - make_interval(secs => %(ttl)s::float8)
           LIMIT %(limit)s) AS o
    WHERE c.id = o.id
), old_revoked AS (
    DELETE FROM {revoked} AS v
    USING (SELECT id FROM {revoked} WHERE revoked_at < now() - make_interval(secs => %(ttl)s::float8)
           LIMIT %(limit)s) AS o
    WHERE v.id = o.id
)
DELETE FROM {results} AS r USING old WHERE r.id = old.id

-- name: STORE_EAGER_RESULT
-- An eager call's outcome (Task.store_eager_result / task_store_eager_result, as in Celery), so that
-- AsyncResult(id) in any process reads it as it reads a worker's. There is no job row to move, so
-- the results row is written whole; an eager call that reuses a task id replaces the earlier
-- outcome, as a reused id does after a worker ran it. Wakes result waiters as FINISH does. No
-- workflow, root or parent: an eager call runs its callbacks and chains itself (sqlq.eager), so the
-- trigger that moves a workflow on must not fire for this row.
WITH ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                result, result_payload, result_content_type, exc_type, exc_message,
                                traceback, enqueued_at, started_at, finished_at, attempts, retries,
                                group_id, root_id, parent_id, workflow)
    VALUES (%(id)s::uuid, %(task)s, %(queue)s, %(priority)s, %(state)s, %(args)s::jsonb, %(kwargs)s::jsonb,
            %(payload)s, %(content_type)s, %(result)s::jsonb, %(result_payload)s, %(result_content_type)s,
            %(exc_type)s, %(exc_message)s, %(traceback)s, %(started_at)s, %(started_at)s, clock_timestamp(),
            %(retries)s + 1, %(retries)s, NULL, NULL, NULL, NULL)
    ON CONFLICT (id) DO UPDATE SET
        task = excluded.task, queue = excluded.queue, priority = excluded.priority, state = excluded.state,
        args = excluded.args, kwargs = excluded.kwargs, payload = excluded.payload,
        content_type = excluded.content_type, result = excluded.result, result_payload = excluded.result_payload,
        result_content_type = excluded.result_content_type, exc_type = excluded.exc_type,
        exc_message = excluded.exc_message, traceback = excluded.traceback, enqueued_at = excluded.enqueued_at,
        started_at = excluded.started_at, finished_at = excluded.finished_at, attempts = excluded.attempts,
        retries = excluded.retries, worker_id = NULL, group_id = NULL, root_id = NULL, parent_id = NULL,
        workflow = NULL
    RETURNING r.id
)
SELECT pg_notify({results_channel}, id::text) FROM ins

-- name: LISTEN_RESULTS
-- What the result waiter listens on: FINISH, RETRY, REVOKE and the rest notify the ids of the jobs
-- whose state they changed (or '' for "look again": a batch too large to list).
LISTEN {results_channel_identifier}

-- name: JOB_RECORD
-- Everything kept of one job, finished or not, for views that show a job whole (the django.tasks
-- backend's TaskResult, the admin): its results row once it finished, else its jobs row, whose
-- state is sqlq's own (available, scheduled, running). The columns are JobRecord's.
SELECT id::text, state, task, queue, priority, args::text, kwargs::text, content_type, payload,
       result::text, result_payload, result_content_type, exc_type, exc_message, traceback,
       enqueued_at, started_at, finished_at, attempts, retries, worker_id::text
FROM {results} WHERE id = %(id)s
UNION ALL
SELECT id::text, state, task, queue, priority, args::text, kwargs::text, content_type, payload,
       NULL, NULL, NULL, NULL, last_error, NULL, enqueued_at, started_at, NULL, attempt, retries,
       worker_id::text
FROM {jobs} WHERE id = %(id)s
LIMIT 1

-- name: RETRY_RESULT
-- Run a finished job again (the admin's "retry"): a new job, due now, with the finished one's task,
-- queue, priority and arguments, the finished row kept as it is. Nothing is written for an id that
-- has no results row. One statement with its wake-up, as ENQUEUE_NOW.
INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, run_at, enqueued_at)
SELECT %(new_id)s::uuid, task, queue, priority, 'available', args, kwargs, payload, content_type,
       statement_timestamp(), statement_timestamp()
FROM {results} WHERE id = %(id)s
RETURNING id::text, pg_notify({jobs_channel}, queue)
