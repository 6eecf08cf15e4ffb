-- Rate limits: one token bucket per limited task (sqlq.rate_limits), shared by every worker.
--
-- A bucket's row holds the tokens it had at `refilled_at`; the tokens it holds at any moment are
-- least(capacity, tokens + rate * seconds since refilled_at), computed by whoever reads it, so no
-- process refills buckets in the background. Tokens are taken by the claim itself
-- (CLAIM_RATE_LIMITED in claims.sql), under the row's lock. A task without a row has no limit.
--
-- Statement format: sqlq/store/statements.py.

-- name: RATE_LIMITS_DECLARE
-- Make the rows of these tasks say these rates (tasks per second; NULL: no limit, the row is
-- deleted): what a worker does at start with the limits its app's code declares, and what
-- set_rate_limit does for one task. A changed rate keeps the tokens the bucket holds now (up to the
-- new capacity), so changing a limit never grants a fresh burst; a new bucket starts full. A row
-- whose rate and capacity are already these is left alone (no write, and its tokens go on).
WITH d AS (
    SELECT * FROM unnest(%(tasks)s::text[], %(rates)s::float8[], %(capacities)s::float8[])
         AS d(task, rate, capacity)
), gone AS (
    DELETE FROM {rate_limits} AS r USING d
    WHERE r.task = d.task AND d.rate IS NULL
    RETURNING r.task
), put AS (
    INSERT INTO {rate_limits} AS r (task, rate, capacity, tokens, refilled_at, updated_at)
    SELECT task, rate, capacity, capacity, now(), now() FROM d WHERE rate IS NOT NULL
    ON CONFLICT (task) DO UPDATE SET
        rate = excluded.rate, capacity = excluded.capacity,
        tokens = least(excluded.capacity,
                       r.tokens + r.rate * greatest(extract(epoch FROM now() - r.refilled_at)::float8, 0)),
        refilled_at = greatest(r.refilled_at, now()), updated_at = now()
    WHERE r.rate IS DISTINCT FROM excluded.rate OR r.capacity IS DISTINCT FROM excluded.capacity
    RETURNING r.task
)
SELECT (SELECT count(*) FROM put), (SELECT count(*) FROM gone)

-- name: RATE_LIMITED_TASKS
-- The names of the tasks that have a limit now: what a worker re-reads about once a second, so
-- that a limit changed live takes effect without a restart. The table holds one row per limited
-- task, a handful.
SELECT task FROM {rate_limits} ORDER BY task

-- name: RATE_LIMITS
-- Every limit with the tokens its bucket holds now (for listings and tests). The columns are
-- RateLimitRow's.
SELECT task, rate, capacity,
       least(capacity, tokens + rate * greatest(extract(epoch FROM now() - refilled_at)::float8, 0)),
       updated_at
FROM {rate_limits}
ORDER BY task
