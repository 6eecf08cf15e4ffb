-- Groups: what a GroupResult reads and writes. The members' states in one statement, however many
-- members a group has, and the saved member lists of GroupResult.save()/restore().
--
-- Statement format: sqlq/store/statements.py.

-- name: GROUP_STATES
-- FETCH_STATE for many jobs at once, in the order of the ids given (ord is the 1-based position):
-- a GroupResult's ready(), completed_count() and get() read all their members in this one
-- statement instead of one FETCH_STATE per member. A results row wins over a jobs row (a job
-- leaves jobs in the statement that writes its result); an id in neither table has no row (PENDING
-- for an unknown id, as in Celery). A running job's update_state and worker show as in FETCH_STATE. The other
-- columns are JobState's.
SELECT u.ord, r.state, r.result::text, r.result_payload, r.result_content_type, r.exc_type, r.exc_message,
       r.traceback, r.finished_at, r.task, r.retries, r.group_id::text, NULL::int, NULL::text
FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS u(id, ord)
JOIN {results} AS r ON r.id = u.id
UNION ALL
SELECT u.ord, CASE WHEN j.state = 'running' AND j.progress_attempt = j.attempt THEN j.progress_state
                   WHEN j.state = 'running' THEN 'STARTED'
                   WHEN j.retries > 0 THEN 'RETRY'
                   ELSE 'PENDING' END,
       CASE WHEN j.state = 'running' AND j.progress_attempt = j.attempt THEN j.progress_meta::text END,
       NULL, NULL, NULL, j.last_error, NULL, NULL, j.task, j.retries, j.group_id::text, w.pid, w.hostname
FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS u(id, ord)
JOIN {jobs} AS j ON j.id = u.id
LEFT JOIN {workers} AS w ON w.id = j.worker_id AND j.state = 'running'
WHERE NOT EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = u.id)

-- name: GROUP_SAVE
-- GroupResult.save(): the group's member task ids, in order. Saving again replaces the list (Celery's
-- save overwrites too) and restarts its expiry clock.
INSERT INTO {groups} (id, results) VALUES (%(id)s, %(results)s::text[])
ON CONFLICT (id) DO UPDATE SET results = excluded.results, saved_at = now()

-- name: GROUP_RESTORE
-- GroupResult.restore(id): the saved member task ids, in order; no row for a group never saved.
SELECT results FROM {groups} WHERE id = %(id)s

-- name: GROUP_FORGET
-- GroupResult.forget(): the saved group and its members' stored outcomes go in one statement (jobs
-- still waiting or running are not affected, as AsyncResult.forget() leaves them).
WITH saved AS (
    DELETE FROM {groups} WHERE id = %(id)s::uuid
)
DELETE FROM {results} WHERE id = ANY(%(ids)s::uuid[])
