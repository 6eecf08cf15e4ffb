-- Concurrency limits: at most `limit` running jobs of a task, or of each key value of a keyed task,
-- cluster-wide (sqlq.concurrency_limits). A row with key NULL is the task's limit; a row with a key
-- overrides it for that key value. A task without a row has no limit.
--
-- Nothing here counts running jobs into the table: the claim (CLAIM_CONCURRENCY_LIMITED and
-- CLAIM_CONCURRENCY_KEYED in claims.sql) counts the task's running rows under the limit row's lock,
-- so a job that stops running in any way (finished, retried, rescued from a dead worker) frees its
-- slot by leaving the 'running' state, with no counter to repair.
--
-- Statement format: sqlq/store/statements.py.

-- name: CONCURRENCY_LIMITS_DECLARE
-- Make the task-wide rows (key NULL) of these tasks say these limits (NULL: no limit, the row is
-- deleted): what a worker does at start with the limits its app's code declares. Rows with a key
-- (set live, for one key value) are left alone. A row already at its limit is not written.
WITH d AS (
    SELECT * FROM unnest(%(tasks)s::text[], %(limits)s::int[]) AS d(task, "limit")
), gone AS (
    DELETE FROM {concurrency_limits} AS c USING d
    WHERE c.task = d.task AND c.key IS NULL AND d."limit" IS NULL
    RETURNING c.task
), put AS (
    INSERT INTO {concurrency_limits} AS c (task, key, "limit", updated_at)
    SELECT task, NULL, "limit", now() FROM d WHERE "limit" IS NOT NULL
    ON CONFLICT (task, key) DO UPDATE SET "limit" = excluded."limit", updated_at = now()
    WHERE c."limit" IS DISTINCT FROM excluded."limit"
    RETURNING c.task
)
SELECT (SELECT count(*) FROM put) AS written, (SELECT count(*) FROM gone) AS deleted

-- name: CONCURRENCY_LIMIT_SET
-- Set one limit live (sqlq.concurrency_limits.set_concurrency_limit, app.control.concurrency_limit):
-- the task's (key NULL) or one key value's; a NULL limit deletes the row. Every worker enforces it
-- from its next claim of the task, which reads the row under its lock.
WITH gone AS (
    DELETE FROM {concurrency_limits}
    WHERE task = %(task)s AND key IS NOT DISTINCT FROM %(key)s::text AND %(limit)s::int IS NULL
    RETURNING task
), put AS (
    INSERT INTO {concurrency_limits} AS c (task, key, "limit", updated_at)
    SELECT %(task)s, %(key)s::text, %(limit)s::int, now() WHERE %(limit)s::int IS NOT NULL
    ON CONFLICT (task, key) DO UPDATE SET "limit" = excluded."limit", updated_at = now()
    RETURNING c.task
)
SELECT (SELECT count(*) FROM put) AS written, (SELECT count(*) FROM gone) AS deleted

-- name: CONCURRENCY_LIMITED_TASKS
-- The names of the tasks that have a limit now (any key): what a worker re-reads about once a
-- second, so that a task limited live is claimed through the limited path without a restart.
SELECT DISTINCT task FROM {concurrency_limits} ORDER BY task

-- name: CONCURRENCY_LIMITS
-- Every limit with the jobs running under it now (for `sqlq concurrency-limits` and tests): for a
-- row with a key, the running jobs of that key; for a task's row, those of the whole task when the
-- task's jobs carry no key (their key is ''), else of its busiest key not overridden. What is
-- counted is what the claims count: running jobs that a limited claim took (with a key). The
-- columns are ConcurrencyLimitRow's.
SELECT c.task, c.key, c."limit",
       CASE WHEN c.key IS NOT NULL
            THEN (SELECT count(*) FROM {jobs} AS j
                  WHERE j.state = 'running' AND j.task = c.task AND j.concurrency_key = c.key)
            ELSE coalesce((SELECT max(r.n) FROM (
                               SELECT count(*) AS n FROM {jobs} AS j
                               WHERE j.state = 'running' AND j.task = c.task AND j.concurrency_key IS NOT NULL
                                 AND NOT EXISTS (SELECT 1 FROM {concurrency_limits} AS o
                                                 WHERE o.task = c.task AND o.key = j.concurrency_key)
                               GROUP BY j.concurrency_key) AS r), 0)
       END AS running,
       c.updated_at
FROM {concurrency_limits} AS c
ORDER BY c.task, c.key NULLS FIRST
