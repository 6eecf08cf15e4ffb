-- The events stream (sqlq.events): Celery's task and worker events as rows of the events table.
--
-- Every write is one statement, never one per job: a worker's queued events (its claims'
-- task-received, its recorded batches' task-started/succeeded/failed/retried/revoked, written by
-- its finisher at most every 0.1 s), a heartbeat's worker event, an enqueue's task-sent events.
-- A statement's events are one row ('batch': a JSON array of
-- [type, task id, task name, seconds since the epoch, fields]), so an event costs its JSON, not a
-- row of its own (a heap tuple, two index entries and their WAL: a row per event cost a drain
-- about a third of its speed). Each write ends with one NOTIFY on the schema's events channel
-- whose payload is the row's id, so a tail wakes at once and reads past the last id it saw;
-- correctness never depends on the NOTIFY (the tail also polls).
--
-- Statement format: sqlq/store/statements.py.

-- name: EVENTS_BATCH
-- A worker's events, built by the worker as one JSON array (sqlq/events/worker.py): those its
-- finisher queued, or a heartbeat's. json, not jsonb: the text is stored as it comes, checked but
-- not parsed into another form.
--
-- Its commit does not wait for the WAL flush (set_config(..., true): this statement's own
-- transaction, on an autocommit connection): events are a monitor's view, and a flush per batch
-- would double the finisher's waits; the outcomes' FINISH still waits for its own.
WITH ins AS (
    INSERT INTO {events} (type, hostname, batch)
    VALUES ('batch', %(hostname)s, %(batch)s::json)
    RETURNING id
)
SELECT id, pg_notify({events_channel}, id::text), set_config('synchronous_commit', 'off', true) FROM ins

-- name: EVENTS_SENT
-- An enqueue's task-sent events (task_send_sent_event), run in the enqueue's transaction right
-- after the statement that wrote the jobs, from their rows: one row for the statement's jobs, a
-- bulk's included. Celery's fields: args, kwargs, retries, eta, expires, queue, root_id,
-- parent_id; `hostname` is the producer's. The producer's commit waits for the flush as it would
-- without events (the transaction is the caller's).
WITH ins AS (
    INSERT INTO {events} (type, hostname, batch)
    SELECT 'batch', %(hostname)s,
           json_agg(json_build_array('task-sent', j.id, j.task, extract(epoch FROM j.enqueued_at),
                                     json_strip_nulls(json_build_object(
                                         'args', j.args, 'kwargs', j.kwargs, 'retries', j.retries,
                                         'eta', CASE WHEN j.run_at > j.enqueued_at THEN extract(epoch FROM j.run_at) END,
                                         'expires', extract(epoch FROM j.expires_at), 'queue', j.queue,
                                         'priority', j.priority, 'root_id', j.root_id, 'parent_id', j.parent_id)))
                    ORDER BY j.seq)
    FROM {jobs} AS j
    WHERE j.id = ANY(%(ids)s::uuid[])
    HAVING count(*) > 0
    RETURNING id
)
SELECT count(*), pg_notify({events_channel}, coalesce(max(id), 0)::text) FROM ins

-- name: EVENTS_AFTER
-- A tail's read: the rows after the last id it saw, oldest first, at most `limit`, from `since`
-- on (NULL: all). The primary key finds them; the reader splits batches into their events and
-- applies its type and task filters to the events.
SELECT id, type, task_id::text AS uuid, name, hostname, extract(epoch FROM time)::float8 AS timestamp, fields, batch
FROM {events}
WHERE id > %(after)s
  AND (%(since)s::float8 IS NULL OR time >= to_timestamp(%(since)s::float8))
ORDER BY id
LIMIT %(limit)s

-- name: EVENTS_FIRST_AFTER
-- The id a tail that starts at `since` (seconds since the epoch) reads after: the last row
-- written before it; 0 when none is older. A tail that starts now (`since` NULL) reads after the
-- newest row (the primary key's last entry).
SELECT coalesce(CASE WHEN %(since)s::float8 IS NULL THEN (SELECT max(id) FROM {events})
                     ELSE (SELECT max(id) FROM {events} WHERE time < to_timestamp(%(since)s::float8)) END, 0) AS id

-- name: EXPIRE_EVENTS
-- Event rows older than events_retention go in bounded batches (maintenance), found through the
-- BRIN index on time, so one pass never holds locks for long.
DELETE FROM {events} AS e
USING (SELECT id FROM {events} WHERE time < now() - make_interval(secs => %(ttl)s::float8) LIMIT %(limit)s) AS o
WHERE e.id = o.id

-- name: LISTEN_EVENTS
-- A tail's wake-up: each write of events is announced here with its row's id.
LISTEN {events_channel_identifier}
