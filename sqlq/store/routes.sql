-- Exchanges and bindings (sqlq/routing.py), and publishing jobs through them. Matching is
-- `<schema>.route_queues(exchange, key)` from migration 0002 (NULL: no such exchange, '{}': nothing
-- matched and no alternate queue); the SQL API's publish() calls the same function, so there is one
-- matcher. route_queues is a SQL function the planner inlines, so the match is planned with the
-- statement that uses it.
--
-- A message reaching several queues becomes one job per queue: the first keeps the given id, the
-- others and the fan-out group get ids derived from it, the same on every run (a retry names the
-- jobs the first attempt wrote), distinct per tag, and no more likely than a random one to meet
-- another job's id: the first 128 bits of sha256(id || '/' || tag), written out where it is used
-- (tag 'group' for the group, the queue's position for a job). PUBLISH, PUBLISH_ONE and
-- PUBLISH_REWRITE (in jobs.sql, with the other statements of a retried write) share every CTE after
-- `m`, and PUBLISH and PUBLISH_ONE their final SELECT (a test keeps them so).
--
-- Statement format: sqlq/store/statements.py.

-- name: PUBLISH
-- Publish many messages (apply_many, delay_many, a beat pass) through exchanges, or straight to a
-- queue when exchange is NULL, in ONE statement: the bindings are matched inside the INSERT. All or
-- nothing: if any message names an unknown exchange or matches no queue, nothing is inserted and its
-- row says why, so the caller raises without aborting its transaction. Messages reaching several
-- queues share a group id. One NOTIFY per queue that got due jobs. One row per message, in order;
-- the columns are PublishRow's.
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
    RETURNING queue, state
)
SELECT g.ord, g.dest IS NOT NULL, coalesce(cardinality(g.dest), 0),
       (SELECT array_agg(v.job_id::text ORDER BY v.n) FROM v WHERE v.ord = g.ord),
       (SELECT array_agg(v.dest_queue ORDER BY v.n) FROM v WHERE v.ord = g.ord),
       g.job_group::text,
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q) AS n)
FROM g ORDER BY g.ord

-- name: PUBLISH_ONE
-- One message (delay, apply_async): PUBLISH with scalar parameters, whose generic plan PostgreSQL can
-- reuse (array parameters would keep it re-planning a custom plan on every call). Every parameter
-- is cast, so that sqlq's own connections run it through libpq (store/fast.py).
WITH m AS MATERIALIZED (
    SELECT 1::bigint AS ord, %(id)s::uuid AS id, %(task)s::text AS task, %(priority)s::smallint AS priority,
           %(args)s::jsonb AS args, %(kwargs)s::jsonb AS kwargs, %(payload)s::bytea AS payload,
           %(content_type)s::text AS content_type, %(headers)s::jsonb AS headers, %(eta)s::timestamptz AS eta,
           %(countdown)s::float8 AS countdown, %(expires_at)s::timestamptz AS expires_at,
           %(expires_in)s::float8 AS expires_in, %(acks_late)s::bool AS acks_late,
           %(group_id)s::uuid AS group_id, %(root_id)s::uuid AS root_id, %(parent_id)s::uuid AS parent_id,
           %(concurrency_key)s::text AS concurrency_key,
           substr(encode(sha256(convert_to(%(id)s::uuid::text || '/' || 'group', 'UTF8')), 'hex'), 1, 32)::uuid AS fanout_id,
           CASE WHEN %(exchange)s::text IS NULL THEN ARRAY[%(queue)s::text] ELSE r.queues END AS dest
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL {route_queues}(%(exchange)s::text, %(routing_key)s::text) AS r ON true
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
    RETURNING queue, state
)
SELECT g.ord, g.dest IS NOT NULL, coalesce(cardinality(g.dest), 0),
       (SELECT array_agg(v.job_id::text ORDER BY v.n) FROM v WHERE v.ord = g.ord),
       (SELECT array_agg(v.dest_queue ORDER BY v.n) FROM v WHERE v.ord = g.ord),
       g.job_group::text,
       (SELECT count(*) FROM (SELECT pg_notify({jobs_channel}, q.queue)
                              FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q) AS n)
FROM g ORDER BY g.ord

-- name: DECLARE_ROUTES
-- Declare exchanges and bindings in one statement, idempotently. An exchange whose stored type
-- differs from the declared one is a conflict: then nothing is written and the conflicts come back.
-- A NULL declared type keeps the stored one ('direct' for a new exchange); a NULL alternate queue
-- keeps the stored one. The columns are DeclaredRoutes'.
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

-- name: EXCHANGE_TYPE
-- An exchange's type, to check a binding against it (no row: no such exchange).
SELECT type FROM {exchanges} WHERE name = %(name)s

-- name: UNBIND
-- One binding of a queue, or all of them when no key is given.
DELETE FROM {bindings}
WHERE exchange = %(exchange)s AND queue = %(queue)s AND (%(key)s::text IS NULL OR binding_key = %(key)s)

-- name: DELETE_EXCHANGE
-- Bindings go with their exchange (ON DELETE CASCADE).
DELETE FROM {exchanges} WHERE name = %(name)s

-- name: LIST_ROUTES
-- `sqlq routes list`: every exchange, once per binding (NULLs for one without). The columns are
-- RouteRow's.
SELECT e.name, e.type, e.alternate_queue, b.binding_key, b.queue
FROM {exchanges} AS e LEFT JOIN {bindings} AS b ON b.exchange = e.name
ORDER BY e.name, b.queue, b.binding_key

-- name: ROUTE_QUEUES
-- Which queues a publish would reach now, through the one matcher PUBLISH uses.
SELECT {route_queues}(%(exchange)s, %(routing_key)s)

-- name: BROADCAST_PRUNE
-- Keep the per-worker queues of Broadcasts in step with the live workers, before a broadcast publish
-- and at a worker's start (sqlq/routing/declarations.py). A per-worker queue is a binding of a fanout
-- exchange to a queue named 'bcast.<name>.<worker uuid>'; it is gone when no workers row lists it
-- (the worker stopped: UNREGISTER_WORKER; or died: RESCUE deleted its row and put its running jobs
-- back in the same statement). Its binding goes, so broadcasts stop reaching it, and the copies that
-- waited there become REVOKED results saying why: every job ends in a final state, none piles up.
-- The jobs are found per orphaned queue (usually none: then no job is read). And a live worker whose
-- row lists 'bcast.<exchange>.<uuid>' for one of `exchanges` gets that binding back if it lacks it
-- (a worker presumed dead, pruned, then registered again). The columns are PrunedBroadcasts'.
WITH orphan AS (
    DELETE FROM {bindings} AS b
    USING {exchanges} AS e
    WHERE e.name = b.exchange AND e.type = 'fanout'
      AND b.queue ~ '^bcast\..+\.[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$'
      AND NOT EXISTS (SELECT 1 FROM {workers} AS w WHERE b.queue = ANY (w.queues))
    RETURNING b.queue
), waiting AS (
    SELECT j.id FROM (SELECT DISTINCT queue FROM orphan) AS o
    CROSS JOIN LATERAL (
        SELECT id FROM {jobs} WHERE queue = o.queue AND state = 'available'
        UNION ALL
        SELECT id FROM {jobs} WHERE queue = o.queue AND state = 'scheduled'
    ) AS j
), gone AS (
    DELETE FROM {jobs} AS j USING waiting AS w
    WHERE j.id = w.id AND j.state IN ('available', 'scheduled')
    RETURNING j.*
), ins AS (
    INSERT INTO {results} (id, task, queue, priority, state, args, kwargs, payload, content_type,
                           exc_type, exc_message, enqueued_at, finished_at, attempts, retries, group_id,
                           root_id, parent_id, workflow)
    SELECT id, task, queue, priority, 'REVOKED', args, kwargs, payload, content_type, 'sqlq.errors.TaskRevokedError',
           'broadcast copy for ' || queue || ', whose worker stopped or died before running it',
           enqueued_at, clock_timestamp(), attempt, retries, group_id, root_id, parent_id, workflow
    FROM gone
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), rebound AS (
    INSERT INTO {bindings} (exchange, binding_key, queue)
    SELECT DISTINCT e.name, '', q.queue
    FROM {exchanges} AS e
    CROSS JOIN LATERAL (SELECT unnest(w.queues) AS queue FROM {workers} AS w) AS q
    WHERE e.name = ANY (%(exchanges)s::text[]) AND e.type = 'fanout'
      AND left(q.queue, length(e.name) + 7) = 'bcast.' || e.name || '.'
      AND substr(q.queue, length(e.name) + 8) ~ '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$'
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(DISTINCT queue) FROM orphan), (SELECT count(*) FROM ins), (SELECT count(*) FROM rebound),
       (SELECT pg_notify({results_channel}, string_agg(id::text, ',')) FROM ins HAVING count(*) > 0)
