-- A worker's claimed jobs: claiming them, and recording what became of them.
--
-- Every write a worker makes to a claimed job is guarded by `id AND worker_id AND attempt`, so a job
-- rescued from a worker presumed dead cannot be finished a second time by that worker if it turns
-- out to be alive. A claimed job's row while its worker holds it is written here as
-- `j.state NOT IN ('available', 'scheduled')`: the same as state = 'running' (every way out of
-- 'running' also clears worker_id), but it does not imply jobs_running's predicate, so the planner
-- is not drawn to that index, whose dead entries pile up between vacuums.
--
-- Statement format: sqlq/store/statements.py.

-- name: CLAIM_SESSION_BEGIN
-- The claiming connection's session (Store.begin_claiming), which runs CLAIM and PROMOTE only:
-- - They commit without waiting for the WAL flush. Their durability buys nothing: a claim lost in a
--   server crash puts the job back as it was, 'available', and the worker's FINISH, which does wait
--   for the flush, then matches nothing, so the job runs again, as after a worker crash
--   (at-least-once; a transactional task's writes roll back with its unmatched outcome). It saves a
--   flush per claim, the most of a small claim's time.
-- - CLAIM keeps one generic plan instead of being planned at every call (which costs as long as
--   running it for a few jobs: PostgreSQL never finds the generic plan cheaper, its LIMIT being
--   unknown). A generic plan is made once, though, and one made while the table was empty would
--   scan and sort the whole table at every claim once it fills up; without sequential scans and
--   sorts, the planner's only choice is the plan every claim wants: jobs_available in order, row
--   locks, stop at the LIMIT, then the rows by ctid. (PROMOTE is planned per call: Store.promote.)
SELECT set_config('synchronous_commit', 'off', false), set_config('plan_cache_mode', 'force_generic_plan', false),
       set_config('enable_seqscan', 'off', false), set_config('enable_sort', 'off', false)

-- name: CLAIM_SESSION_END
-- Back to the server's settings before the pooled connection serves anyone else: a producer must
-- never get a connection whose commits do not wait for the flush.
SELECT set_config(name, reset_val, false) FROM pg_settings
WHERE name IN ('synchronous_commit', 'plan_cache_mode', 'enable_seqscan', 'enable_sort')

-- name: CLAIM_TRANSACTION_SETTINGS
-- CLAIM_SESSION_BEGIN's settings for one transaction (SET LOCAL), run before each claim statement in
-- the same transaction when the connection goes through a transaction pooler (listen_database_url
-- set): there the next transaction may run on another server session, so a session setting would
-- leak to whichever client gets this one next, and CLAIM_SESSION_END could never undo it.
SELECT set_config('synchronous_commit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true)

-- name: CLAIM
-- Claim up to n due jobs of one queue, highest priority first, then FIFO. SKIP LOCKED lets any number
-- of workers claim side by side without waiting on each other. A worker whose row is gone (presumed
-- dead, its jobs rescued) claims nothing until its next heartbeat registers it again. The columns
-- are ClaimedJob's.
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

-- name: CLAIM_UNLIMITED
-- CLAIM for a worker whose app has rate- or concurrency-limited tasks (Worker._claim runs it only
-- then; without limits it runs CLAIM, untouched): the same claim, but for the jobs of the tasks in
-- `limited`, which CLAIM_RATE_LIMITED claims as their buckets allow (CLAIM_CONCURRENCY_LIMITED and
-- _KEYED as their free slots do). A limited task's jobs waiting for tokens
-- therefore never hold back the other tasks' jobs queued behind them. (The same text as CLAIM but
-- the `task <> ALL` line: a test keeps them so.)
WITH picked AS (
    SELECT ctid FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s
      AND task <> ALL(%(limited)s::text[])
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

-- name: CLAIM_RATE_LIMITED
-- Claim up to n jobs of one rate-limited task in one queue, as many as its bucket has whole tokens
-- for, and take those tokens, in one statement. The bucket row is locked first (`bucket`, FOR
-- UPDATE: concurrent claims of the task wait for each other here, for the length of a claim, and
-- each sees the tokens the previous one left), so workers together never start more than the
-- bucket allows; the jobs are then picked like CLAIM's (SKIP LOCKED, priority, FIFO).
--
-- Time: the tokens are counted at greatest(refilled_at, now()), so a claim whose statement started
-- before the previous claim's (and waited for its lock) is granted nothing for the time already
-- counted. A claim that took nothing writes nothing: the refill is a function of time alone.
-- Without a bucket row (the limit was removed since the worker last read the table) the LIMIT is n
-- and nothing is spent: no limit.
--
-- One row per claimed job (ClaimedJob's columns, as CLAIM's), or one row of NULLs when none was
-- claimed, and then `retry_in`: when jobs of the task were left waiting for want of tokens, the
-- seconds until the bucket holds one whole token again (the worker claims again then instead of
-- waiting for a poll); NULL otherwise.
WITH bucket AS (
    SELECT task, rate,
           least(capacity, tokens + rate * greatest(extract(epoch FROM now() - refilled_at)::float8, 0)) AS available,
           greatest(refilled_at, now()) AS counted_at
    FROM {rate_limits}
    WHERE task = %(task)s
    FOR UPDATE
), picked AS (
    SELECT ctid FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s AND task = %(task)s
      AND EXISTS (SELECT 1 FROM {workers} WHERE id = %(worker_id)s)
    ORDER BY priority DESC, seq
    LIMIT least(%(limit)s, (SELECT floor(available)::int FROM bucket))
    FOR UPDATE SKIP LOCKED
), taken AS (
    SELECT count(*) AS n FROM picked
), claimed AS (
    UPDATE {jobs} AS j
    SET state = 'running', worker_id = %(worker_id)s, attempt = j.attempt + 1, started_at = now()
    WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING j.id::text, j.seq, j.task, j.queue, j.priority, j.args::text, j.kwargs::text, j.payload,
              j.content_type, j.headers::text, (j.expires_at IS NOT NULL AND j.expires_at <= now()),
              j.attempt, j.retries, j.acks_late, j.group_id::text
), spent AS (
    UPDATE {rate_limits} AS r
    SET tokens = b.available - t.n, refilled_at = b.counted_at
    FROM bucket AS b, taken AS t
    WHERE r.task = b.task AND t.n > 0
), summary AS (
    SELECT CASE WHEN b.available - t.n >= 1 THEN NULL
                WHEN EXISTS (SELECT 1 FROM {jobs}
                             WHERE state = 'available' AND queue = %(queue)s AND task = %(task)s
                               AND ctid <> ALL(ARRAY(SELECT ctid FROM picked)))
                    THEN (1 - (b.available - t.n)) / b.rate
           END AS retry_in
    FROM bucket AS b, taken AS t
)
SELECT c.*, s.retry_in
FROM (SELECT 1) AS one LEFT JOIN summary AS s ON true LEFT JOIN claimed AS c ON true

-- name: CONCURRENCY_LOCK
-- The first statement of a concurrency-limited claim's transaction (Claims.claim_concurrency_limited):
-- lock the task's limit rows, so that the claims of one task, from every worker, run one after the
-- other. It is a statement of its own because PostgreSQL takes a statement's snapshot when the
-- statement starts: a count of running jobs in the statement that waited for the lock would not
-- see the jobs claimed by the claim it waited for, and would let both take the same free slots.
-- The claim that follows starts after the lock is held, so its snapshot sees them. No row (the
-- limit was removed since the worker read the table): nothing is locked and the claim has no limit.
-- JIT is turned off for the transaction: CLAIM_CONCURRENCY_KEYED must sort (its window), which the
-- claiming session's enable_sort = off prices at 1e10, over jit_above_cost, and compiling it would
-- cost far longer than running it (a claim is a few rows).
SELECT set_config('jit', 'off', true) AS jit,
       (SELECT count(*) FROM (SELECT 1 FROM {concurrency_limits} WHERE task = %(task)s
                              ORDER BY key FOR UPDATE) AS l) AS locked

-- name: CLAIM_CONCURRENCY_LIMITED
-- Claim up to n jobs of one concurrency-limited task (one without a concurrency_key) in one queue:
-- at most its limit minus its running jobs, cluster-wide (every queue, every worker), counted
-- through jobs_concurrency_running under the lock CONCURRENCY_LOCK took in this transaction. The
-- jobs are picked like CLAIM's (SKIP LOCKED, priority, FIFO). A claimed job holds its slot until it
-- leaves 'running' (recorded, retried, or rescued from a dead worker: the count heals itself).
-- The claim gives each job it takes a key ('' when it had none), which puts it in the index: only
-- jobs taken by a limited claim are counted, so a plain claim adds no index entry, and jobs claimed
-- before the worker knew of the limit run to their end uncounted, as when a limit is lowered.
--
-- One row per claimed job (ClaimedJob's columns), or one row of NULLs when none was claimed, and
-- then `waiting`: true when the claim left the limit full, so that jobs of the task wait for a slot
-- (the worker claims the task again when one frees, not at every claim).
WITH slots AS (
    SELECT greatest(0, least(%(limit)s::bigint,
                             coalesce((SELECT "limit" FROM {concurrency_limits}
                                       WHERE task = %(task)s AND key IS NULL)
                                      - (SELECT count(*) FROM {jobs}
                                         WHERE state = 'running' AND task = %(task)s AND concurrency_key IS NOT NULL),
                                      %(limit)s::bigint))) AS n
), picked AS (
    SELECT ctid FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s AND task = %(task)s
      AND EXISTS (SELECT 1 FROM {workers} WHERE id = %(worker_id)s)
    ORDER BY priority DESC, seq
    LIMIT (SELECT n FROM slots)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {jobs} AS j
    SET state = 'running', worker_id = %(worker_id)s, attempt = j.attempt + 1, started_at = now(),
        concurrency_key = coalesce(j.concurrency_key, '')
    WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING j.id::text, j.seq, j.task, j.queue, j.priority, j.args::text, j.kwargs::text, j.payload,
              j.content_type, j.headers::text, (j.expires_at IS NOT NULL AND j.expires_at <= now()),
              j.attempt, j.retries, j.acks_late, j.group_id::text
), summary AS (
    -- the limit is full now: the slots bound the claim and all were taken, so no claim of the task
    -- can take anything before a slot frees (whether more jobs wait is not looked up: it would walk
    -- the queue again, and changes nothing)
    SELECT (SELECT n FROM slots) < %(limit)s::bigint
           AND (SELECT count(*) FROM picked) = (SELECT n FROM slots) AS waiting
)
SELECT c.*, s.waiting
FROM (SELECT 1) AS one LEFT JOIN summary AS s ON true LEFT JOIN claimed AS c ON true

-- name: CLAIM_CONCURRENCY_KEYED
-- CLAIM_CONCURRENCY_LIMITED for a task with a concurrency_key: at most the limit of each key value
-- (its own row, else the task's) minus that key's running jobs, under CONCURRENCY_LOCK's lock. The
-- task's waiting jobs in the queue are ranked within their key (priority, FIFO), those within their
-- key's free slots are taken in priority and FIFO order, up to n. Ranking walks all of the task's
-- waiting jobs in the queue (a key's free slots are not known before its jobs are counted), so the
-- worker does not repeat a claim that left jobs waiting until a slot frees. A job without a key
-- (enqueued before its task had one) counts under the key '', which the claim writes on it (as
-- CLAIM_CONCURRENCY_LIMITED does: only jobs with a key are in the index), limited by the task's row.
-- Rows as CLAIM_CONCURRENCY_LIMITED's.
WITH lim AS (
    SELECT key, "limit" FROM {concurrency_limits} WHERE task = %(task)s
), running AS (
    SELECT concurrency_key AS key, count(*) AS n FROM {jobs}
    WHERE state = 'running' AND task = %(task)s AND concurrency_key IS NOT NULL
    GROUP BY concurrency_key
), ranked AS (
    SELECT ctid, priority, seq, coalesce(concurrency_key, '') AS key,
           row_number() OVER (PARTITION BY coalesce(concurrency_key, '') ORDER BY priority DESC, seq) AS rank
    FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s AND task = %(task)s
), eligible AS (
    SELECT w.ctid
    FROM ranked AS w
    LEFT JOIN running AS r ON r.key = w.key
    LEFT JOIN lim AS k ON k.key = w.key
    LEFT JOIN lim AS d ON d.key IS NULL
    WHERE w.rank <= coalesce(k."limit", d."limit", %(limit)s::bigint) - coalesce(r.n, 0)
    ORDER BY w.priority DESC, w.seq
    LIMIT %(limit)s
), picked AS (
    SELECT ctid FROM {jobs}
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM eligible)) AND state = 'available'
      AND EXISTS (SELECT 1 FROM {workers} WHERE id = %(worker_id)s)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {jobs} AS j
    SET state = 'running', worker_id = %(worker_id)s, attempt = j.attempt + 1, started_at = now(),
        concurrency_key = coalesce(j.concurrency_key, '')
    WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))
    RETURNING j.id::text, j.seq, j.task, j.queue, j.priority, j.args::text, j.kwargs::text, j.payload,
              j.content_type, j.headers::text, (j.expires_at IS NOT NULL AND j.expires_at <= now()),
              j.attempt, j.retries, j.acks_late, j.group_id::text
), summary AS (
    SELECT (SELECT count(*) FROM picked) < %(limit)s::bigint
           AND (SELECT count(*) FROM ranked) > (SELECT count(*) FROM picked) AS waiting
)
SELECT c.*, s.waiting
FROM (SELECT 1) AS one LEFT JOIN summary AS s ON true LEFT JOIN claimed AS c ON true

-- name: QUARANTINE
-- Rows of one queue that CLAIM cannot take (Store.claim runs this when CLAIM fails for its data):
-- an `attempt` CLAIM cannot increment, a `retries` RETRY cannot, or either negative, which sqlq
-- never writes (a row written by hand or by another tool). Each leaves the queue as FAILURE
-- InvalidJobError naming the columns and their values, so that no row stops a queue's claims and
-- none disappears; a results row of a reused id is overwritten, as FINISH_UPSERT does. Waiting rows
-- only: a claimed row belongs to its worker.
WITH bad AS (
    SELECT id FROM {jobs}
    WHERE state = 'available' AND queue = %(queue)s
      AND (attempt < 0 OR attempt >= 2147483647 OR retries < 0 OR retries >= 2147483647)
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM {jobs} AS j USING bad WHERE j.id = bad.id
    RETURNING j.*
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                exc_type, exc_message, enqueued_at, finished_at, attempts, retries, group_id,
                                root_id, parent_id, workflow)
    SELECT id, task, queue, priority, 'FAILURE', args, kwargs, payload, content_type, 'sqlq.errors.InvalidJobError',
           format('the job row holds a value no worker can run: %%s (each must be from 0 to 2147483646; '
                  'was the row written by hand?); it was set aside without running',
                  concat_ws(', ',
                            CASE WHEN attempt < 0 OR attempt >= 2147483647 THEN format('attempt = %%s', attempt) END,
                            CASE WHEN retries < 0 OR retries >= 2147483647 THEN format('retries = %%s', retries) END)),
           enqueued_at, clock_timestamp(), attempt, retries, group_id, root_id, parent_id, workflow
    FROM gone
    ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, result = NULL, result_payload = NULL, result_content_type = NULL,
        exc_type = excluded.exc_type, exc_message = excluded.exc_message, traceback = NULL,
        finished_at = excluded.finished_at, attempts = excluded.attempts, retries = excluded.retries
    RETURNING r.id
)
SELECT count(*), pg_notify({results_channel}, coalesce(string_agg(id::text, ','), '')) FROM ins

-- name: FINISH
-- Record many outcomes at once: the rows leave the hot table and enter results in one statement.
-- Outcomes whose guard does not match (the job was rescued meanwhile) are ignored. `o` holds the
-- outcomes, one array per Outcome field; `done`, `ins` and the final SELECT are the same text in
-- FINISH, FINISH_UPSERT, FINISH_OK and FINISH_OK_UPSERT (but for ON CONFLICT; a test keeps them so).
--
-- A plain insert into results: a results row with the same id exists only when a task id was reused
-- after its first job finished, and this statement then fails with a unique violation (having
-- written nothing) and Store.finish runs FINISH_UPSERT instead. ON CONFLICT on every batch would
-- cost a speculative insertion per row (an extra index probe and WAL record). The count and the
-- NOTIFY are taken from `done`: one row in results per row deleted.
--
-- The rows are found through the primary key (`j.id = ANY(…)`: one index scan probing each id),
-- whatever the batch size and the statistics. Joined on id alone, the planner scanned the worker's
-- entries in jobs_running instead, dead ones included: every job the worker had claimed since the
-- last VACUUM, so a long drain slowed down as it went.
WITH o AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(states)s::text[], %(results)s::jsonb[],
                         %(result_payloads)s::bytea[], %(result_content_types)s::text[],
                         %(exc_types)s::text[], %(exc_messages)s::text[], %(tracebacks)s::text[])
         AS o(id, attempt, state, result, result_payload, result_content_type, exc_type, exc_message, traceback)
), done AS (
    DELETE FROM {jobs} AS j USING o
    WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
      AND j.worker_id = %(worker_id)s AND j.attempt = o.attempt AND j.state NOT IN ('available', 'scheduled')
    RETURNING j.id, j.task, j.queue, j.priority, j.args, j.kwargs, j.payload, j.content_type,
              j.enqueued_at, j.started_at, j.attempt, j.retries, j.worker_id, j.group_id,
              j.root_id, j.parent_id, j.workflow, o.state, o.result, o.result_payload, o.result_content_type, o.exc_type, o.exc_message, o.traceback
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                result, result_payload, result_content_type, exc_type, exc_message,
                                traceback, enqueued_at, started_at, finished_at, attempts, retries,
                                worker_id, group_id, root_id, parent_id, workflow)
    SELECT id, task, queue, priority, state, args, kwargs, payload, content_type, result, result_payload,
           result_content_type, exc_type, exc_message, traceback, enqueued_at, started_at, clock_timestamp(),
           attempt, retries, worker_id, group_id, root_id, parent_id, workflow
    FROM done
)
SELECT count(*), pg_notify({results_channel},
                           CASE WHEN count(*) <= 150 THEN coalesce(string_agg(id::text, ','), '') ELSE '' END)
FROM done

-- name: FINISH_UPSERT
-- FINISH for a batch whose plain insert met a results row of a reused task id, and for a connection
-- inside a transaction (a transactional task's), where a failing statement would abort the caller's
-- work: the outcome overwrites the earlier result.
WITH o AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(states)s::text[], %(results)s::jsonb[],
                         %(result_payloads)s::bytea[], %(result_content_types)s::text[],
                         %(exc_types)s::text[], %(exc_messages)s::text[], %(tracebacks)s::text[])
         AS o(id, attempt, state, result, result_payload, result_content_type, exc_type, exc_message, traceback)
), done AS (
    DELETE FROM {jobs} AS j USING o
    WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
      AND j.worker_id = %(worker_id)s AND j.attempt = o.attempt AND j.state NOT IN ('available', 'scheduled')
    RETURNING j.id, j.task, j.queue, j.priority, j.args, j.kwargs, j.payload, j.content_type,
              j.enqueued_at, j.started_at, j.attempt, j.retries, j.worker_id, j.group_id,
              j.root_id, j.parent_id, j.workflow, o.state, o.result, o.result_payload, o.result_content_type, o.exc_type, o.exc_message, o.traceback
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                result, result_payload, result_content_type, exc_type, exc_message,
                                traceback, enqueued_at, started_at, finished_at, attempts, retries,
                                worker_id, group_id, root_id, parent_id, workflow)
    SELECT id, task, queue, priority, state, args, kwargs, payload, content_type, result, result_payload,
           result_content_type, exc_type, exc_message, traceback, enqueued_at, started_at, clock_timestamp(),
           attempt, retries, worker_id, group_id, root_id, parent_id, workflow
    FROM done
    ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, result = excluded.result, result_payload = excluded.result_payload,
        result_content_type = excluded.result_content_type, exc_type = excluded.exc_type,
        exc_message = excluded.exc_message, traceback = excluded.traceback,
        finished_at = excluded.finished_at, attempts = excluded.attempts, retries = excluded.retries,
        worker_id = excluded.worker_id
)
SELECT count(*), pg_notify({results_channel},
                           CASE WHEN count(*) <= 150 THEN coalesce(string_agg(id::text, ','), '') ELSE '' END)
FROM done

-- name: FINISH_OK
-- The common batch: every job succeeded with a JSON result (or none kept). Three arrays instead of
-- nine, because encoding the parameters is a large part of the worker's cost per job; they are sent
-- in binary (uuid[], int[], text[]: store/binary.py), which the server also parses faster than
-- their text forms. Results are sent as text and cast here; 'null' (a task returning None) is a
-- constant, parsed once. Otherwise FINISH.
WITH o AS (
    SELECT u.id, u.attempt, 'SUCCESS'::text AS state,
           CASE WHEN u.result = 'null' THEN 'null'::jsonb ELSE u.result::jsonb END AS result,
           NULL::bytea AS result_payload,
           CASE WHEN u.result IS NULL THEN NULL ELSE 'application/json' END AS result_content_type,
           NULL::text AS exc_type, NULL::text AS exc_message, NULL::text AS traceback
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(results)s::text[]) AS u(id, attempt, result)
), done AS (
    DELETE FROM {jobs} AS j USING o
    WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
      AND j.worker_id = %(worker_id)s AND j.attempt = o.attempt AND j.state NOT IN ('available', 'scheduled')
    RETURNING j.id, j.task, j.queue, j.priority, j.args, j.kwargs, j.payload, j.content_type,
              j.enqueued_at, j.started_at, j.attempt, j.retries, j.worker_id, j.group_id,
              j.root_id, j.parent_id, j.workflow, o.state, o.result, o.result_payload, o.result_content_type, o.exc_type, o.exc_message, o.traceback
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                result, result_payload, result_content_type, exc_type, exc_message,
                                traceback, enqueued_at, started_at, finished_at, attempts, retries,
                                worker_id, group_id, root_id, parent_id, workflow)
    SELECT id, task, queue, priority, state, args, kwargs, payload, content_type, result, result_payload,
           result_content_type, exc_type, exc_message, traceback, enqueued_at, started_at, clock_timestamp(),
           attempt, retries, worker_id, group_id, root_id, parent_id, workflow
    FROM done
)
SELECT count(*), pg_notify({results_channel},
                           CASE WHEN count(*) <= 150 THEN coalesce(string_agg(id::text, ','), '') ELSE '' END)
FROM done

-- name: FINISH_OK_UPSERT
-- FINISH_OK where FINISH_UPSERT would run instead of FINISH.
WITH o AS (
    SELECT u.id, u.attempt, 'SUCCESS'::text AS state,
           CASE WHEN u.result = 'null' THEN 'null'::jsonb ELSE u.result::jsonb END AS result,
           NULL::bytea AS result_payload,
           CASE WHEN u.result IS NULL THEN NULL ELSE 'application/json' END AS result_content_type,
           NULL::text AS exc_type, NULL::text AS exc_message, NULL::text AS traceback
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(results)s::text[]) AS u(id, attempt, result)
), done AS (
    DELETE FROM {jobs} AS j USING o
    WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id
      AND j.worker_id = %(worker_id)s AND j.attempt = o.attempt AND j.state NOT IN ('available', 'scheduled')
    RETURNING j.id, j.task, j.queue, j.priority, j.args, j.kwargs, j.payload, j.content_type,
              j.enqueued_at, j.started_at, j.attempt, j.retries, j.worker_id, j.group_id,
              j.root_id, j.parent_id, j.workflow, o.state, o.result, o.result_payload, o.result_content_type, o.exc_type, o.exc_message, o.traceback
), ins AS (
    INSERT INTO {results} AS r (id, task, queue, priority, state, args, kwargs, payload, content_type,
                                result, result_payload, result_content_type, exc_type, exc_message,
                                traceback, enqueued_at, started_at, finished_at, attempts, retries,
                                worker_id, group_id, root_id, parent_id, workflow)
    SELECT id, task, queue, priority, state, args, kwargs, payload, content_type, result, result_payload,
           result_content_type, exc_type, exc_message, traceback, enqueued_at, started_at, clock_timestamp(),
           attempt, retries, worker_id, group_id, root_id, parent_id, workflow
    FROM done
    ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, result = excluded.result, result_payload = excluded.result_payload,
        result_content_type = excluded.result_content_type, exc_type = excluded.exc_type,
        exc_message = excluded.exc_message, traceback = excluded.traceback,
        finished_at = excluded.finished_at, attempts = excluded.attempts, retries = excluded.retries,
        worker_id = excluded.worker_id
)
SELECT count(*), pg_notify({results_channel},
                           CASE WHEN count(*) <= 150 THEN coalesce(string_agg(id::text, ','), '') ELSE '' END)
FROM done

-- name: RETRY
-- Put jobs back to wait for a retry (state RETRY to the user), guarded like FINISH. The attempt's
-- error and traceback stay on the row until the next attempt's outcome (AsyncResult.traceback).
WITH r AS (
    SELECT id, attempt, error, traceback,
           coalesce(to_timestamp(eta), now() + make_interval(secs => greatest(delay, 0))) AS run_at
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(delays)s::float8[], %(etas)s::float8[],
                %(errors)s::text[], %(tracebacks)s::text[]) AS r(id, attempt, delay, eta, error, traceback)
), upd AS (
    UPDATE {jobs} AS j
    SET state = CASE WHEN r.run_at > now() THEN 'scheduled' ELSE 'available' END,
        run_at = r.run_at,
        retries = j.retries + 1, worker_id = NULL, started_at = NULL, last_error = r.error,
        last_traceback = r.traceback
    FROM r
    WHERE j.id = r.id AND j.worker_id = %(worker_id)s AND j.attempt = r.attempt AND j.state NOT IN ('available', 'scheduled')
    RETURNING j.id, j.queue, j.state
)
SELECT (SELECT count(*) FROM upd),
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') AS q) AS n),
       (SELECT pg_notify({results_channel}, coalesce(string_agg(id::text, ','), '')) FROM upd)

-- name: RELEASE_UNKNOWN
-- A claim can commit and its reply be lost with its connection (a crash-stop, a terminated
-- backend, a network cut): the rows say this worker holds jobs it never received, and as the worker
-- is alive nobody would rescue them. After a failed claim, once the database answers again, the
-- worker hands back every job the rows give it that is not among `known` (every job it holds:
-- prefetched, running, or waiting for its outcome to be recorded); the attempt is not spent.
-- `state = 'running'` (not NOT IN) so that jobs_running's predicate holds and its index is used.
WITH upd AS (
    UPDATE {jobs} AS j
    SET state = 'available', worker_id = NULL, started_at = NULL, attempt = j.attempt - 1
    WHERE j.worker_id = %(worker_id)s AND j.state = 'running' AND j.id <> ALL(%(known)s::uuid[])
    RETURNING j.queue
)
SELECT (SELECT count(*) FROM upd) AS released,
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM upd) AS q) AS n) AS notified

-- name: RELEASE
-- Prefetched jobs that never started go straight back (graceful shutdown); the attempt is not spent.
WITH upd AS (
    UPDATE {jobs} AS j
    SET state = 'available', worker_id = NULL, started_at = NULL, attempt = j.attempt - 1
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[]) AS r(id, attempt)
    WHERE j.id = r.id AND j.worker_id = %(worker_id)s AND j.attempt = r.attempt AND j.state NOT IN ('available', 'scheduled')
    RETURNING j.queue
)
SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue) FROM (SELECT DISTINCT queue FROM upd) AS q) AS n
