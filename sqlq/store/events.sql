-- The events stream (sqlq.events): Celery's task and worker events as rows of the events table.
--
-- Every write is one statement per batch, never one per job: a claim's task-received events, a
-- finished batch's task-started/succeeded/failed/retried/revoked events, a heartbeat's worker
-- event, an enqueue's task-sent events. Each ends with one NOTIFY on the schema's events channel
-- whose payload is the batch's highest event id, so a tail wakes at once and reads past the last
-- id it saw; correctness never depends on the NOTIFY (the tail also polls).
--
-- Statement format: sqlq/store/statements.py.

-- name: EVENTS_RECEIVED
-- A claim batch's task-received events, read from the claimed rows themselves (their primary key,
-- rows the claim just wrote, so in cache): the claim statements stay as they are, and a worker
-- without task events runs nothing more. The worker runs it before its pool gets the jobs, so the
-- rows are still there and every task-received comes before its task-started; its time is the
-- claim's (started_at). Celery's fields: args, kwargs, retries, eta, root_id, parent_id (plus the
-- queue and the attempt).
WITH ins AS (
    INSERT INTO {events} (type, task_id, name, hostname, time, fields)
    SELECT 'task-received', j.id, j.task, %(hostname)s, coalesce(j.started_at, clock_timestamp()),
           jsonb_strip_nulls(jsonb_build_object('args', j.args, 'kwargs', j.kwargs, 'retries', j.retries,
                                                'eta', CASE WHEN j.run_at > j.enqueued_at THEN j.run_at END,
                                                'expires', j.expires_at, 'queue', j.queue, 'attempt', j.attempt,
                                                'root_id', j.root_id, 'parent_id', j.parent_id))
    FROM {jobs} AS j
    WHERE j.id = ANY(%(ids)s::uuid[])
    RETURNING id
)
SELECT count(*), pg_notify({events_channel}, coalesce(max(id), 0)::text) FROM ins

-- name: EVENTS_SENT
-- An enqueue's task-sent events (task_send_sent_event), run in the enqueue's transaction right
-- after the statement that wrote the jobs, from their rows: one statement per enqueue statement,
-- a bulk's included. Celery's fields: args, kwargs, retries, eta, expires, queue, root_id,
-- parent_id; `hostname` is the producer's.
WITH ins AS (
    INSERT INTO {events} (type, task_id, name, hostname, fields)
    SELECT 'task-sent', j.id, j.task, %(hostname)s,
           jsonb_strip_nulls(jsonb_build_object('args', j.args, 'kwargs', j.kwargs, 'retries', j.retries,
                                                'eta', CASE WHEN j.run_at > j.enqueued_at THEN j.run_at END,
                                                'expires', j.expires_at, 'queue', j.queue, 'priority', j.priority,
                                                'root_id', j.root_id, 'parent_id', j.parent_id))
    FROM {jobs} AS j
    WHERE j.id = ANY(%(ids)s::uuid[])
    RETURNING id
)
SELECT count(*), pg_notify({events_channel}, coalesce(max(id), 0)::text) FROM ins

-- name: EVENTS_RECORD
-- Events the worker built itself, one array per column: a finished batch's (task-started with
-- its start time, task-succeeded with runtime and result, task-failed with exception and
-- traceback, task-retried, task-revoked, task-rejected), a worker's online/heartbeat/offline.
-- `at` is the moment in seconds since the epoch (NULL: now); `extra` is JSON text merged into the
-- fields (NULL: nothing), for the few fields only some events have.
WITH e AS (
    SELECT * FROM unnest(%(types)s::text[], %(ids)s::uuid[], %(names)s::text[], %(ats)s::float8[],
                         %(runtimes)s::float8[], %(results)s::text[], %(exceptions)s::text[],
                         %(tracebacks)s::text[], %(extras)s::text[])
         AS e(type, id, name, at, runtime, result, exception, traceback, extra)
), ins AS (
    INSERT INTO {events} (type, task_id, name, hostname, time, fields)
    SELECT type, id, name, %(hostname)s, coalesce(to_timestamp(at), clock_timestamp()),
           jsonb_strip_nulls(jsonb_build_object('runtime', runtime, 'result', result, 'exception', exception,
                                                'traceback', traceback))
           || coalesce(extra::jsonb, '{{}}'::jsonb)
    FROM e
    RETURNING id
)
SELECT count(*), pg_notify({events_channel}, coalesce(max(id), 0)::text) FROM ins

-- name: EVENTS_AFTER
-- A tail's read: the events after the last id it saw, oldest first, at most `limit`, optionally
-- only from `since` on, of some types, or of some task names (NULL: all). The primary key finds
-- them; the filters only drop rows from that range.
SELECT id, type, task_id::text AS uuid, name, hostname, extract(epoch FROM time)::float8 AS timestamp, fields
FROM {events}
WHERE id > %(after)s
  AND (%(since)s::float8 IS NULL OR time >= to_timestamp(%(since)s::float8))
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(names)s::text[] IS NULL OR name = ANY(%(names)s::text[]))
ORDER BY id
LIMIT %(limit)s

-- name: EVENTS_FIRST_AFTER
-- The id a tail that starts at `since` (seconds since the epoch) reads after: the last event
-- before it; 0 when none is older. A tail that starts now (`since` NULL) reads after the newest
-- event (the primary key's last entry).
SELECT coalesce(CASE WHEN %(since)s::float8 IS NULL THEN (SELECT max(id) FROM {events})
                     ELSE (SELECT max(id) FROM {events} WHERE time < to_timestamp(%(since)s::float8)) END, 0) AS id

-- name: EXPIRE_EVENTS
-- Events older than events_retention go in bounded batches (maintenance), found through the BRIN
-- index on time, so one pass never holds locks for long.
DELETE FROM {events} AS e
USING (SELECT id FROM {events} WHERE time < now() - make_interval(secs => %(ttl)s::float8) LIMIT %(limit)s) AS o
WHERE e.id = o.id

-- name: LISTEN_EVENTS
-- A tail's wake-up: each batch of events is announced here with its highest id.
LISTEN {events_channel_identifier}
