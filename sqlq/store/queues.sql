-- Paused queues: one row per queue whose jobs every worker leaves waiting (`sqlq queues pause`,
-- App.pause_queue). Workers read the set at start and about once a second (housekeeping), and a
-- pause or resume notifies the queues channel so that it applies at once; a paused queue's jobs
-- stay in jobs, untouched, and run when it is resumed.
--
-- Statement format: sqlq/store/statements.py.

-- name: PAUSE_QUEUE
-- Pause a queue (pausing a paused queue changes nothing: its first pause time stays). The row
-- back says whether this call paused it; the notification tells the workers to look again.
WITH paused AS (
    INSERT INTO {queue_pauses} (queue) VALUES (%(queue)s)
    ON CONFLICT (queue) DO NOTHING
    RETURNING queue
)
SELECT EXISTS (SELECT 1 FROM paused), pg_notify({queues_channel}, %(queue)s)

-- name: RESUME_QUEUE
-- Resume a paused queue: the row goes and the workers are told, then they claim its jobs again
-- (the jobs channel wakes the ones that sleep).
WITH resumed AS (
    DELETE FROM {queue_pauses} WHERE queue = %(queue)s RETURNING queue
)
SELECT EXISTS (SELECT 1 FROM resumed), pg_notify({queues_channel}, %(queue)s),
       pg_notify({jobs_channel}, %(queue)s)

-- name: PAUSED_QUEUES
-- The paused queues, oldest pause first, and since when (a worker reads the names only).
SELECT queue, paused_at FROM {queue_pauses} ORDER BY paused_at, queue

-- name: LISTEN_QUEUES
-- What a worker listens on to hear of pauses and resumes at once.
LISTEN {queues_channel_identifier}
