-- Unique jobs: a job written with a unique key (as its 128-bit hash `unique_hash`, made by
-- sqlq.unique.key_hash), against the unique partial index jobs_unique (migration 0010), and the
-- key's window after it (unique_keys). jobs holds only waiting, scheduled and running rows, so the index is over exactly the jobs that block a key, and a finished job frees
-- its key by leaving the table: no finishing statement knows of keys. Every write here is
-- INSERT ... ON CONFLICT, never a check then an insert: two producers of one key meet in the index
-- (the second waits for the first to commit, then sees its row), whatever their transactions.
-- Jobs without a key never run these statements (ENQUEUE, ENQUEUE_NOW, COPY_JOBS are unchanged).
--
-- Statement format: sqlq/store/statements.py.

-- name: UNIQUE_ENQUEUE
-- ENQUEUE's row with its unique key, written only when no job of the table holds the key and no
-- unique_for window of a finished job does (w: a window whose job still waits or runs is that job's
-- conflict in the index). Returns the job written (none when the key is held: UNIQUE_HOLDER and
-- UNIQUE_WINDOW_HOLDER then read who holds it, in statements of their own, whose snapshots see a
-- holder that committed while this one waited for it), and the window this statement saw: a row
-- written although a window of another job was seen means that job finished while the insert waited
-- for it, so the caller takes the row back (UNIQUE_UNDO). A window is written in the transaction that
-- writes its job, so a window this statement could not see belongs to a job it meets in the index.
WITH w AS (
    SELECT job_id FROM {unique_keys} WHERE key_hash = %(unique_hash)s::uuid AND held_until > statement_timestamp()
), v AS (
    SELECT %(id)s::uuid AS id,
           coalesce(%(eta)s::timestamptz,
                    statement_timestamp() + make_interval(secs => coalesce(%(countdown)s::float8, 0))) AS run_at,
           coalesce(%(expires_at)s::timestamptz,
                    statement_timestamp() + make_interval(secs => %(expires_in)s::float8)) AS expires_at
), ins AS (
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id, root_id, parent_id, unique_hash,
                        concurrency_key)
    SELECT v.id, %(task)s::text, %(queue)s::text, %(priority)s::smallint,
           CASE WHEN v.run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           %(args)s::jsonb, %(kwargs)s::jsonb, %(payload)s::bytea, %(content_type)s::text, %(headers)s::jsonb,
           v.run_at, v.expires_at, statement_timestamp(), %(acks_late)s::bool, %(group_id)s::uuid,
           %(root_id)s::uuid, %(parent_id)s::uuid, %(unique_hash)s::uuid, %(concurrency_key)s::text
    FROM v
    WHERE NOT EXISTS (SELECT 1 FROM w WHERE NOT EXISTS (SELECT 1 FROM {jobs} AS h WHERE h.id = w.job_id))
    ON CONFLICT (unique_hash) WHERE unique_hash IS NOT NULL DO NOTHING
    RETURNING id, queue, state
), woken AS (
    SELECT pg_notify({jobs_channel}, queue) FROM ins WHERE state = 'available'
)
SELECT ins.id::text AS id, ins.state, (SELECT count(*) FROM woken) AS woken,
       (SELECT job_id::text FROM w) AS window_job
FROM ins

-- name: UNIQUE_ENQUEUE_REPLACE
-- UNIQUE_ENQUEUE for on_conflict='replace' (debounce): when a waiting job (available or scheduled)
-- holds the key, that job takes this call's task, arguments, options and run_at instead, keeping its
-- id, so "run once after the last change" is one row whose eta moves on at every change. A running
-- holder is left alone (no row comes back; UNIQUE_HOLDER names it). Returns the row written or
-- replaced: the id says which.
WITH w AS (
    SELECT job_id FROM {unique_keys} WHERE key_hash = %(unique_hash)s::uuid AND held_until > statement_timestamp()
), v AS (
    SELECT %(id)s::uuid AS id,
           coalesce(%(eta)s::timestamptz,
                    statement_timestamp() + make_interval(secs => coalesce(%(countdown)s::float8, 0))) AS run_at,
           coalesce(%(expires_at)s::timestamptz,
                    statement_timestamp() + make_interval(secs => %(expires_in)s::float8)) AS expires_at
), ins AS (
    INSERT INTO {jobs} AS j (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                             run_at, expires_at, enqueued_at, acks_late, group_id, root_id, parent_id, unique_hash,
                             concurrency_key)
    SELECT v.id, %(task)s::text, %(queue)s::text, %(priority)s::smallint,
           CASE WHEN v.run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           %(args)s::jsonb, %(kwargs)s::jsonb, %(payload)s::bytea, %(content_type)s::text, %(headers)s::jsonb,
           v.run_at, v.expires_at, statement_timestamp(), %(acks_late)s::bool, %(group_id)s::uuid,
           %(root_id)s::uuid, %(parent_id)s::uuid, %(unique_hash)s::uuid, %(concurrency_key)s::text
    FROM v
    WHERE NOT EXISTS (SELECT 1 FROM w WHERE NOT EXISTS (SELECT 1 FROM {jobs} AS h WHERE h.id = w.job_id))
    ON CONFLICT (unique_hash) WHERE unique_hash IS NOT NULL DO UPDATE
    SET task = EXCLUDED.task, queue = EXCLUDED.queue, priority = EXCLUDED.priority, state = EXCLUDED.state,
        args = EXCLUDED.args, kwargs = EXCLUDED.kwargs, payload = EXCLUDED.payload,
        content_type = EXCLUDED.content_type, headers = EXCLUDED.headers, run_at = EXCLUDED.run_at,
        expires_at = EXCLUDED.expires_at, acks_late = EXCLUDED.acks_late, root_id = EXCLUDED.root_id,
        parent_id = EXCLUDED.parent_id, concurrency_key = EXCLUDED.concurrency_key
    WHERE j.state <> 'running'
    RETURNING j.id, j.queue, j.state
), woken AS (
    SELECT pg_notify({jobs_channel}, queue) FROM ins WHERE state = 'available'
)
SELECT ins.id::text AS id, ins.state, (SELECT count(*) FROM woken) AS woken,
       (SELECT job_id::text FROM w) AS window_job
FROM ins

-- name: UNIQUE_HOLDER
-- The job that holds a key (after UNIQUE_ENQUEUE wrote nothing). None when it finished in between:
-- the caller then writes again.
SELECT id::text AS id, state FROM {jobs} WHERE unique_hash = %(unique_hash)s::uuid

-- name: UNIQUE_WINDOW_TAKE
-- unique_for: hold the key for `unique_for` seconds from now, for the job just written, unless
-- another job's window still holds it. The primary key serializes two takers; a row past its
-- held_until is taken over in place. Returns the row when taken, nothing when held.
INSERT INTO {unique_keys} AS k (key_hash, key, job_id, held_until)
VALUES (%(unique_hash)s::uuid, %(unique_key)s::text, %(id)s::uuid,
        statement_timestamp() + make_interval(secs => %(unique_for)s::float8))
ON CONFLICT (key_hash) DO UPDATE SET key = EXCLUDED.key, job_id = EXCLUDED.job_id, held_until = EXCLUDED.held_until
WHERE k.held_until <= statement_timestamp()
RETURNING k.job_id::text AS job_id

-- name: UNIQUE_WINDOW_HOLDER
-- The job whose window holds a key (after UNIQUE_WINDOW_TAKE took nothing); none once it ended.
SELECT job_id::text AS job_id FROM {unique_keys}
WHERE key_hash = %(unique_hash)s::uuid AND held_until > statement_timestamp()

-- name: UNIQUE_UNDO
-- Take back the job this transaction just wrote, when the key's window turned out to be held: the
-- row was never visible to anyone else, and its NOTIFY only makes a worker look.
DELETE FROM {jobs} WHERE id = %(id)s::uuid

-- name: UNIQUE_PRUNE
-- Maintenance: windows that ended go (a key's next enqueue would take the row over anyway; this
-- keeps keys that are never used again from piling up).
DELETE FROM {unique_keys} WHERE held_until < now()

-- name: UNIQUE_ENQUEUE_MANY
-- A batch of keyed jobs with on_conflict 'skip' or 'error' and no unique_for (apply_many with a
-- task's unique_on): UNIQUE_ENQUEUE for every row in one statement, ENQUEUE_MANY's arrays plus the
-- key hashes. Returns the rows written, each with the window the statement saw for its key (as
-- UNIQUE_ENQUEUE's window_job). A row not written (its key held, by another job or by an earlier row
-- of the batch: ON CONFLICT DO NOTHING skips a row that conflicts with one this statement wrote) goes
-- through UNIQUE_ENQUEUE and its holder reads, one by one. Rows go in by key hash (two batches that
-- share keys take them in the same order, so they wait for each other instead of deadlocking), the
-- batch's first call of a key first.
WITH u AS (
    SELECT *
    FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(queues)s::text[], %(priorities)s::smallint[],
                %(args)s::jsonb[], %(kwargs)s::jsonb[], %(payloads)s::bytea[], %(content_types)s::text[],
                %(headers)s::jsonb[], %(etas)s::timestamptz[], %(countdowns)s::float8[],
                %(expires_ats)s::timestamptz[], %(expires_ins)s::float8[], %(acks_lates)s::bool[],
                %(group_ids)s::uuid[], %(root_ids)s::uuid[], %(parent_ids)s::uuid[], %(unique_hashes)s::uuid[],
                %(concurrency_keys)s::text[])
         WITH ORDINALITY
         AS u(id, task, queue, priority, args, kwargs, payload, content_type, headers, eta, countdown,
              expires_at, expires_in, acks_late, group_id, root_id, parent_id, unique_hash, concurrency_key, ord)
), v AS (
    SELECT u.*,
           coalesce(u.eta, statement_timestamp() + make_interval(secs => coalesce(u.countdown, 0))) AS run_at,
           (SELECT k.job_id FROM {unique_keys} AS k
            WHERE k.key_hash = u.unique_hash AND k.held_until > statement_timestamp()) AS window_job
    FROM u
), ins AS (
    INSERT INTO {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers,
                        run_at, expires_at, enqueued_at, acks_late, group_id, root_id, parent_id, unique_hash,
                        concurrency_key)
    SELECT id, task, queue, priority,
           CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
           args, kwargs, payload, content_type, headers, run_at,
           coalesce(expires_at, statement_timestamp() + make_interval(secs => expires_in)),
           statement_timestamp(), acks_late, group_id, root_id, parent_id, unique_hash, concurrency_key
    FROM v
    WHERE v.window_job IS NULL OR EXISTS (SELECT 1 FROM {jobs} AS h WHERE h.id = v.window_job)
    ORDER BY v.unique_hash, v.ord
    ON CONFLICT (unique_hash) WHERE unique_hash IS NOT NULL DO NOTHING
    RETURNING id, queue, state
), woken AS (
    SELECT pg_notify({jobs_channel}, q.queue) FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q
)
SELECT ins.id::text AS id, v.window_job::text AS window_job, (SELECT count(*) FROM woken) AS woken
FROM ins JOIN v ON v.id = ins.id
