-- The schema as a whole rather than one group of its tables: which migration it is at, and the
-- advisory locks named after it (Store.lock_key: two schemas never share a lock).
--
-- Statement format: sqlq/store/statements.py.

-- name: SCHEMA_REVISION
-- Which migration the schema is at; alembic keeps this one-row table (missing: never migrated).
SELECT version_num FROM {version_table} LIMIT 1

-- name: TRY_XACT_LOCK
-- Cluster-wide chores are done by one worker at a time: whoever gets this lock for the transaction.
SELECT pg_try_advisory_xact_lock(%(key)s)

-- name: XACT_LOCK
-- Work that must not interleave (beats syncing their configs) waits its turn for this lock.
SELECT pg_advisory_xact_lock(%(key)s)

-- name: DROP_SCHEMA
-- sqlq.testing: a test's schema, made for it and dropped after it, with everything in it. Never
-- run on a schema sqlq.testing did not create for the test.
DROP SCHEMA IF EXISTS {schema} CASCADE
