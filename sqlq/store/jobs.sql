-- The jobs table from the producers' side: writing jobs (and writing them again when the connection
-- of a first attempt broke), waking the workers of their queues, moving scheduled jobs into the
-- claim index, and looking at the queues. NOTIFY is sent from the
-- same statement as the write, once per queue, never from a trigger; inside a transaction
-- PostgreSQL delivers it at commit, so a rolled-back enqueue never wakes anyone.
--
-- Statement format: sqlq/store/statements.py.

-- name: ENQUEUE
-- Enqueue one job: one round trip, including the wake-up for idle workers. Every parameter is cast,
-- so that sqlq's own connections can prepare it once and run it through libpq (store/fast.py).
WITH v AS (
    SELECT %(id)s::uuid AS id,
           coalesce(%(eta)s::timestamptz,
                    statement_timestamp() + make_interval(secs => coalesce(%(countdown)s::float8, 0))) AS run_at,
           coalesce(%(expires_at)s::timestamptz,
                    statement_timestamp() + make_interval(secs => %(expires_in)s::float8)) AS expires_at
), ins AS (
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id, root_id, parent_id,
                        concurrency_key)
    SELECT v.id, %(task)s::text, %(queue)s::text, %(priority)s::smallint,
           CASE WHEN v.run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           %(args)s::jsonb, %(kwargs)s::jsonb, %(payload)s::bytea, %(content_type)s::text, %(headers)s::jsonb,
           v.run_at, v.expires_at, statement_timestamp(), %(acks_late)s::bool, %(group_id)s::uuid,
           %(root_id)s::uuid, %(parent_id)s::uuid, %(concurrency_key)s::text
    FROM v
    RETURNING queue, state
)
SELECT pg_notify({jobs_channel}, queue) FROM ins WHERE state = 'available'

-- name: ENQUEUE_NOW
-- Enqueue one job that is due now (no countdown, eta or expiry; not routed): the common `delay()`.
-- The row ENQUEUE would write, without the time arithmetic.
INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                    run_at, enqueued_at, acks_late, group_id, root_id, parent_id,
                    concurrency_key)
VALUES (%(id)s::uuid, %(task)s::text, %(queue)s::text, %(priority)s::smallint, 'available', %(args)s::jsonb,
        %(kwargs)s::jsonb, %(payload)s::bytea, %(content_type)s::text, %(headers)s::jsonb,
        statement_timestamp(), statement_timestamp(), %(acks_late)s::bool, %(group_id)s::uuid,
        %(root_id)s::uuid, %(parent_id)s::uuid, %(concurrency_key)s::text)
RETURNING pg_notify({jobs_channel}, queue)

-- name: ENQUEUE_MANY
-- Enqueue many jobs in one statement; one NOTIFY per queue that received due jobs.
WITH v AS (
    SELECT u.*,
           coalesce(u.eta, statement_timestamp() + make_interval(secs => coalesce(u.countdown, 0))) AS run_at
    FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(queues)s::text[], %(priorities)s::smallint[],
                %(args)s::jsonb[], %(kwargs)s::jsonb[], %(payloads)s::bytea[], %(content_types)s::text[],
                %(headers)s::jsonb[], %(etas)s::timestamptz[], %(countdowns)s::float8[],
                %(expires_ats)s::timestamptz[], %(expires_ins)s::float8[], %(acks_lates)s::bool[],
                %(group_ids)s::uuid[], %(root_ids)s::uuid[], %(parent_ids)s::uuid[], %(concurrency_keys)s::text[])
         AS u(id, task, queue, priority, args, kwargs, payload, content_type, headers, eta, countdown,
              expires_at, expires_in, acks_late, group_id, root_id, parent_id, concurrency_key)
), ins AS (
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id, root_id, parent_id,
                        concurrency_key)
    SELECT id, task, queue, priority,
           CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           args, kwargs, payload, content_type, headers, run_at,
           coalesce(expires_at, statement_timestamp() + make_interval(secs => expires_in)),
           statement_timestamp(), acks_late, group_id, root_id, parent_id, concurrency_key
    FROM v
    RETURNING queue, state
)
SELECT pg_notify({jobs_channel}, q.queue)
FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q

-- name: ENQUEUE_REWRITE
-- The retry of an enqueue on sqlq's own connection whose connection broke (Store.rewrite): the first
-- attempt may or may not have committed, so a job whose id is already there was written by it and
-- is left alone. "There" is the jobs table (ON CONFLICT DO NOTHING, which also waits for a first
-- attempt the server is still running) or, once a worker claimed and finished it in the meantime,
-- the results table. Any job, one or many, due now or later, goes through this one batch form: the
-- path is rare and its speed does not matter. ENQUEUE_MANY's rows, written the same way. No NOTIFY
-- here: REWRITE_UNDO may still take a row back (Store.rewrite sends NOTIFY_QUEUES after it). (The
-- cost of the guard: an id the caller reuses, whose earlier job is waiting or has a result, also
-- counts as written on a retry.)
WITH v AS (
    SELECT u.*,
           coalesce(u.eta, statement_timestamp() + make_interval(secs => coalesce(u.countdown, 0))) AS run_at
    FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(queues)s::text[], %(priorities)s::smallint[],
                %(args)s::jsonb[], %(kwargs)s::jsonb[], %(payloads)s::bytea[], %(content_types)s::text[],
                %(headers)s::jsonb[], %(etas)s::timestamptz[], %(countdowns)s::float8[],
                %(expires_ats)s::timestamptz[], %(expires_ins)s::float8[], %(acks_lates)s::bool[],
                %(group_ids)s::uuid[], %(root_ids)s::uuid[], %(parent_ids)s::uuid[], %(concurrency_keys)s::text[])
         AS u(id, task, queue, priority, args, kwargs, payload, content_type, headers, eta, countdown,
              expires_at, expires_in, acks_late, group_id, root_id, parent_id, concurrency_key)
)
INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                    run_at, expires_at, enqueued_at, acks_late, group_id, root_id, parent_id,
                    concurrency_key)
SELECT id, task, queue, priority,
       CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
       args, kwargs, payload, content_type, headers, run_at,
       coalesce(expires_at, statement_timestamp() + make_interval(secs => expires_in)),
       statement_timestamp(), acks_late, group_id, root_id, parent_id, concurrency_key
FROM v
WHERE NOT EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = v.id)
ON CONFLICT (id) DO NOTHING

-- name: PUBLISH_REWRITE
-- The retry of a routed publish whose connection broke: PUBLISH (routes.sql) guarded as
-- ENQUEUE_REWRITE is, and without its NOTIFY (Store.rewrite sends it after REWRITE_UNDO). Its rows are PUBLISH's, for the
-- jobs the first attempt wrote as for those written now (their ids are derived from the message's),
-- so the caller gets the same results either way; the last column counts the jobs inserted.
WITH m AS MATERIALIZED (
    SELECT u.*, substr(encode(sha256(convert_to(u.id::text || '/' || 'group', 'UTF8')), 'hex'), 1, 32)::uuid AS fanout_id,
           CASE WHEN u.exchange IS NULL THEN ARRAY[u.queue] ELSE r.queues END AS dest
    FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(queues)s::text[], %(exchanges)s::text[],
                %(routing_keys)s::text[], %(priorities)s::smallint[], %(args)s::jsonb[], %(kwargs)s::jsonb[],
                %(payloads)s::bytea[], %(content_types)s::text[], %(headers)s::jsonb[],
                %(etas)s::timestamptz[], %(countdowns)s::float8[], %(expires_ats)s::timestamptz[],
                %(expires_ins)s::float8[], %(acks_lates)s::bool[], %(group_ids)s::uuid[], %(root_ids)s::uuid[],
                %(parent_ids)s::uuid[], %(concurrency_keys)s::text[]) WITH ORDINALITY
         AS u(id, task, queue, exchange, routing_key, priority, args, kwargs, payload, content_type, headers,
              eta, countdown, expires_at, expires_in, acks_late, group_id, root_id, parent_id, concurrency_key, ord)
    LEFT JOIN LATERAL {route_queues}(u.exchange, u.routing_key) AS r ON true
), g AS MATERIALIZED (
    SELECT m.*, CASE WHEN cardinality(m.dest) > 1 THEN coalesce(m.group_id, m.fanout_id)
                     ELSE m.group_id END AS job_group
    FROM m
), v AS MATERIALIZED (
    SELECT g.ord, d.n, d.queue AS dest_queue,
           CASE WHEN d.n = 1 THEN g.id ELSE substr(encode(sha256(convert_to(g.id::text || '/' || d.n::text, 'UTF8')), 'hex'), 1, 32)::uuid END AS job_id,
           coalesce(g.eta, statement_timestamp() + make_interval(secs => coalesce(g.countdown, 0))) AS run_at,
           g.task, g.priority, g.args, g.kwargs, g.payload, g.content_type, g.headers, g.expires_at,
           g.expires_in, g.acks_late, g.job_group, g.root_id, g.parent_id, g.concurrency_key
    FROM g CROSS JOIN LATERAL unnest(g.dest) WITH ORDINALITY AS d(queue, n)
    WHERE NOT EXISTS (SELECT 1 FROM g AS bad WHERE bad.dest IS NULL OR cardinality(bad.dest) = 0)
), ins AS (
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id, root_id, parent_id,
                        concurrency_key)
    SELECT job_id, task, dest_queue, priority,
           CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           args, kwargs, payload, content_type, headers, run_at,
           coalesce(expires_at, statement_timestamp() + make_interval(secs => expires_in)),
           statement_timestamp(), acks_late, job_group, root_id, parent_id, concurrency_key
    FROM v
    WHERE NOT EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = v.job_id)
    ON CONFLICT (id) DO NOTHING
    RETURNING queue, state
)
SELECT g.ord, g.dest IS NOT NULL, coalesce(cardinality(g.dest), 0),
       (SELECT array_agg(v.job_id::text ORDER BY v.n) FROM v WHERE v.ord = g.ord),
       (SELECT array_agg(v.dest_queue ORDER BY v.n) FROM v WHERE v.ord = g.ord),
       g.job_group::text,
       (SELECT count(*) FROM ins)
FROM g ORDER BY g.ord

-- name: REWRITE_UNDO
-- Second statement of the retry, in its transaction: ENQUEUE_REWRITE's (or PUBLISH_REWRITE's) NOT
-- EXISTS saw the results table as it was when that statement began, so a first attempt finished by
-- a worker between that moment and the insert (its jobs row deleted, its result written, in one
-- commit) was inserted again. This statement sees that commit (a new snapshot, read committed) and
-- deletes those rows.
DELETE FROM {jobs} AS j
WHERE j.id = ANY(%(ids)s::uuid[]) AND EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = j.id)

-- name: COPY_JOBS
-- Bulk enqueue of jobs due now (no countdown, eta or expiry, not routed): COPY is several times
-- faster than INSERT … SELECT unnest(…) for thousands of rows. run_at and enqueued_at take their
-- defaults, now(): the database clock at the start of the (COPY's own or the caller's) transaction.
COPY {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers, acks_late, group_id,
             root_id, parent_id, concurrency_key)
FROM STDIN

-- name: COPY_JOBS_LEAN
-- COPY_JOBS for the common batch (JobSpec.copies_lean): priority, content type, headers, acks_late,
-- payload and group take their column defaults, so the server parses and stores fewer values per row.
COPY {jobs} (id, task, queue, state, args, kwargs) FROM STDIN

-- name: NOTIFY_QUEUES
-- Wake the workers of the queues a COPY filled (delivered at commit, like every NOTIFY here).
SELECT pg_notify({jobs_channel}, q) FROM unnest(%(queues)s::text[]) AS q

-- name: LISTEN_JOBS
-- What an idle worker waits on: one notification per queue that got due jobs (its payload is the
-- queue's name). Only a wake-up: a worker that misses one still polls.
LISTEN {jobs_channel_identifier}

-- name: PROMOTE
-- Move due scheduled jobs (countdown, eta, retries) into the claim index and wake their queues.
-- Scheduled rows stay out of jobs_available until then, so claims never scan future rows.
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

-- name: ANY_DUE
-- Whether a job of these queues is due now: available, or scheduled and past its run_at. Read
-- without SKIP LOCKED, so that a row another session is promoting or claiming at this moment still
-- counts: a burst worker ends only when nothing of its queues is due, whoever holds the rows.
SELECT EXISTS (
    SELECT 1 FROM {jobs}
    WHERE queue = ANY(%(queues)s::text[])
      AND (state = 'available' OR (state = 'scheduled' AND run_at <= now()))
)

-- name: WAITING_UPTO
-- How many jobs of a queue wait to be claimed, counted up to `upto` only (a walk of jobs_available
-- that stops there): the backlog an adaptive prefetch shares with the queue's other consumers, run
-- only when others consume it and the claim would ask for more than the base prefetch.
SELECT count(*) FROM (
    SELECT 1 FROM {jobs} WHERE state = 'available' AND queue = %(queue)s LIMIT %(upto)s
) AS waiting

-- name: NEXT_SCHEDULED_IN
-- Seconds until the next scheduled job is due (NULL when none), so the promoter sleeps just enough.
SELECT extract(epoch FROM min(run_at) - now())::float8 FROM {jobs} WHERE state = 'scheduled'

-- name: QUEUE_DEPTHS
-- `sqlq queues`: what each queue holds, by state.
SELECT queue,
       count(*) FILTER (WHERE state = 'available') AS waiting,
       count(*) FILTER (WHERE state = 'scheduled') AS scheduled,
       count(*) FILTER (WHERE state = 'running') AS running
FROM {jobs} GROUP BY queue ORDER BY queue

-- name: PURGE
-- `sqlq purge`: waiting and scheduled jobs go; running jobs belong to their workers.
DELETE FROM {jobs} WHERE state IN ('available', 'scheduled') AND (%(queue)s::text IS NULL OR queue = %(queue)s)

-- name: WAITING_JOBS
-- sqlq.testing.assert_enqueued: one task's jobs that have not started (waiting, or scheduled for a
-- countdown, an eta or a retry), oldest first, arguments as text for Python to decode and compare
-- (the comparison is Python's: a tuple and a list, or a datetime and its tagged JSON, are equal).
-- The columns are WaitingJob's. A test helper: it reads a test's small table, without an index on task.
SELECT id::text, task, queue, priority, state, content_type, args::text, kwargs::text, payload,
       headers::text, run_at, retries
FROM {jobs}
WHERE task = %(task)s AND state IN ('available', 'scheduled')
ORDER BY seq

-- name: RUN_NOW
-- Make waiting jobs due now (the admin's "run now"): a scheduled job (countdown, eta, a retry's
-- delay) goes into the claim index at once and its queue is woken; an available one already is,
-- a running one is its worker's. The count is of the jobs moved.
WITH moved AS (
    UPDATE {jobs} SET state = 'available', run_at = statement_timestamp()
    WHERE id = ANY(%(ids)s::uuid[]) AND state = 'scheduled'
    RETURNING queue
)
SELECT (SELECT count(*) FROM moved),
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM moved) AS q) AS n)
