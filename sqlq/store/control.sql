-- Remote control (sqlq.control): commands to workers, their replies, and the revoked task ids.
--
-- A command is a `control` row announced on the control channel (NOTIFY says "look now"; a
-- worker also looks about once a second, so a lost notification only delays it). Each worker
-- answers with its own `control_replies` row and a NOTIFY on the replies channel, which wakes the
-- sender collecting them. `revoked` holds the ids revoke() flagged until they expire.
--
-- Statement format: sqlq/store/statements.py.

-- name: CONTROL_SEND
-- Write one command and announce it, in one statement, and say which live workers it reaches (the
-- destination's hostnames or ids, or every worker whose heartbeat is within `lost`), so the sender
-- stops collecting as soon as each of them has answered rather than always waiting the timeout.
WITH sent AS (
    INSERT INTO {control} (command, arguments, destination, reply, expires_at)
    VALUES (%(command)s, %(arguments)s::jsonb, %(destination)s::text[], %(reply)s,
            now() + make_interval(secs => %(ttl)s::float8))
    RETURNING id
)
SELECT sent.id, pg_notify({control_channel}, sent.id::text),
       ARRAY(SELECT w.id::text FROM {workers} AS w
             WHERE w.heartbeat_at >= now() - make_interval(secs => %(lost)s::float8)
               AND (%(destination)s::text[] IS NULL OR w.hostname = ANY(%(destination)s::text[])
                    OR w.id::text = ANY(%(destination)s::text[])))
FROM sent

-- name: CONTROL_PENDING
-- The commands a worker has still to handle: sent since it started, not expired, addressed to all
-- or to its hostname or id, and not answered by it yet (a worker writes a reply row for every
-- command it handles, so a command is handled once even when NOTIFY and the poll both bring it).
SELECT c.id, c.command, c.arguments::text, c.reply
FROM {control} AS c
WHERE c.sent_at >= %(since)s AND c.expires_at > now()
  AND (c.destination IS NULL OR %(hostname)s = ANY(c.destination) OR %(worker_id)s::text = ANY(c.destination))
  AND NOT EXISTS (SELECT 1 FROM {control_replies} AS r
                  WHERE r.control_id = c.id AND r.worker_id = %(worker_id)s::uuid)
ORDER BY c.id

-- name: CONTROL_REPLY
-- A worker's answer to one command, announced to the sender; a second answer (a command handled
-- twice in a race of NOTIFY and the poll) changes nothing.
WITH put AS (
    INSERT INTO {control_replies} (control_id, worker_id, hostname, reply)
    VALUES (%(control_id)s, %(worker_id)s, %(hostname)s, %(reply)s::jsonb)
    ON CONFLICT (control_id, worker_id) DO NOTHING
    RETURNING control_id
)
SELECT pg_notify({control_replies_channel}, control_id::text) FROM put

-- name: CONTROL_REPLIES
-- The answers to one command so far, oldest first. The columns are ControlReply's.
SELECT worker_id::text, hostname, reply::text FROM {control_replies}
WHERE control_id = %(control_id)s ORDER BY replied_at, worker_id

-- name: CONTROL_CLOCK
-- The database's clock: a worker's start for CONTROL_PENDING (commands sent before it are not
-- its business), on the same clock as `sent_at`.
SELECT now()

-- name: CONTROL_PRUNE
-- Maintenance: commands expired for `keep` seconds go, with their replies (ON DELETE CASCADE), and
-- so do revoked ids past their expiry.
WITH old_revoked AS (
    DELETE FROM {revoked} WHERE expires_at < now()
)
DELETE FROM {control} WHERE expires_at < now() - make_interval(secs => %(keep)s::float8)

-- name: REVOKED_IDS
-- The revoked ids that have not expired, newest first, at most `limit` (a worker's bound on what
-- it keeps in memory, as Celery's worker keeps at most 50,000). REVOKE (results.sql) writes them.
SELECT id::text FROM {revoked}
WHERE expires_at IS NULL OR expires_at > now()
ORDER BY revoked_at DESC LIMIT %(limit)s

-- name: WORKER_SET_QUEUES
-- add_consumer / cancel_consumer: the queues a worker's row says it consumes (`sqlq inspect workers`).
UPDATE {workers} SET queues = %(queues)s WHERE id = %(id)s

-- name: CONTROL_SCHEDULED
-- inspect scheduled: jobs of these queues waiting for their eta or countdown, soonest first, at
-- most `limit`. They are rows of the queue, not held by a worker: every worker consuming a queue
-- lists them. The columns are ScheduledJob's.
SELECT id::text, task, queue, priority, args::text, kwargs::text, content_type, run_at
FROM {jobs} WHERE state = 'scheduled' AND queue = ANY(%(queues)s::text[])
ORDER BY run_at LIMIT %(limit)s

-- name: CONTROL_STARTED
-- When this worker's jobs among `ids` started (claimed), for inspect active's time_start.
SELECT id::text, extract(epoch FROM started_at)::float8 FROM {jobs}
WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker_id)s::uuid

-- name: LISTEN_CONTROL
-- Workers listen for commands here.
LISTEN {control_channel_identifier}

-- name: LISTEN_CONTROL_REPLIES
-- A sender listens for the answers to its command here.
LISTEN {control_replies_channel_identifier}
