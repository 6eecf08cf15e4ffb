-- The server itself rather than a schema's tables: the embedded development database's checks and
-- set-up (sqlq/embedded.py), run on its maintenance database before any schema exists. Not rendered
-- for a schema; {database} is filled in per call.
--
-- Statement format: sqlq/store/statements.py.

-- name: SERVER_PING
-- Whether a server that says it is ready accepts our connections (a round trip, nothing read).
SELECT 1

-- name: DATABASE_EXISTS
-- Whether the database sqlq uses is there yet (no row: create it).
SELECT 1 FROM pg_database WHERE datname = %(name)s

-- name: CREATE_DATABASE
-- The database sqlq uses, created once; another process creating it at the same moment makes this
-- fail with duplicate_database, which means it exists.
CREATE DATABASE {database}
