-- Workflows: writing a workflow's first jobs, and reading a workflow back (parents, children, the
-- whole tree). Everything after the first jobs is written by the database itself, by the trigger
-- workflow_step on results (migration 0007), in the transaction that records each outcome.
--
-- Statement format: sqlq/store/statements.py.

-- name: WORKFLOW_START
-- Write a workflow's first jobs from its plan (sqlq/workflows.py): the first step of a chain, the
-- members of a group or a chord's header (with the chord's counter row and the saved member order),
-- a step with callbacks. One statement, so all of it or nothing, in the caller's transaction when
-- there is one; an error in a first step fails the statement (caught = false), so nothing is
-- written. `parent`: the job that sends the workflow, when a running task sends it.
SELECT {workflow_start}(%(plan)s::jsonb, NULL, NULL, %(parent)s::uuid, NULL, false)

-- name: WORKFLOW_FAILED
-- What an errback is told of the job that failed (sqlq.errback builds Celery's request from it):
-- its task, arguments and group. The columns are FailedJob's.
SELECT task, args::text, kwargs::text, group_id::text FROM {results} WHERE id = %(id)s

-- name: WORKFLOW_PARENT
-- AsyncResult.parent read from the tables: the job whose outcome (or run) sent this one, from its
-- results row or, while it waits or runs, its jobs row; `is_group` when that id is a chord's header
-- (a chord's body has the header's group as its parent).
SELECT p.parent_id::text, EXISTS (SELECT 1 FROM {groups} AS g WHERE g.id = p.parent_id)
FROM (SELECT parent_id FROM {results} WHERE id = %(id)s
      UNION ALL
      SELECT parent_id FROM {jobs} WHERE id = %(id)s
      LIMIT 1) AS p
WHERE p.parent_id IS NOT NULL

-- name: WORKFLOW_CHILDREN
-- AsyncResult.children: the jobs this one sent (a chain's next step, its callbacks, tasks it sent
-- while running), finished or not, in the order they were enqueued. Both lookups use the partial
-- indexes on parent_id.
SELECT id::text, task FROM (
    SELECT id, task, enqueued_at FROM {results} WHERE parent_id = %(id)s
    UNION ALL
    SELECT id, task, enqueued_at FROM {jobs} WHERE parent_id = %(id)s
) AS c
ORDER BY enqueued_at NULLS LAST, id

-- name: WORKFLOW_TREE
-- A whole workflow with its states, from its first job: the README's recursive query. A job's
-- children are the rows whose parent_id is its id (a chain's next step, its callbacks, the tasks
-- it sent) or its group's id (a chord's body hangs under its header's group), finished ones in
-- results, the others in jobs, each lookup through the partial index on parent_id. UNION (not
-- UNION ALL) keeps one row for a chord's body, which every member of its header finds. `depth`
-- counts the steps from the first job. The columns are WorkflowRow's.
WITH RECURSIVE tree AS (
    SELECT s.id, s.parent_id, s.group_id, s.task, s.state, 0 AS depth
    FROM (SELECT id, parent_id, group_id, task, state FROM {results} WHERE id = %(id)s
          UNION ALL
          SELECT id, parent_id, group_id, task, CASE WHEN state = 'running' THEN 'STARTED' ELSE 'PENDING' END
          FROM {jobs} WHERE id = %(id)s) AS s
    UNION
    SELECT c.id, c.parent_id, c.group_id, c.task, c.state, t.depth + 1
    FROM tree AS t
    CROSS JOIN LATERAL (
        SELECT r.id, r.parent_id, r.group_id, r.task, r.state FROM {results} AS r
        WHERE r.parent_id = t.id OR r.parent_id = t.group_id
        UNION ALL
        SELECT j.id, j.parent_id, j.group_id, j.task,
               CASE WHEN j.state = 'running' THEN 'STARTED' ELSE 'PENDING' END
        FROM {jobs} AS j
        WHERE j.parent_id = t.id OR j.parent_id = t.group_id
    ) AS c
)
SELECT id::text, parent_id::text, group_id::text, task, state, depth FROM tree ORDER BY depth, id

-- name: WORKFLOW_GROUP_BEGIN
-- A group or chord sent with its members written by COPY (WORKFLOW_COPY_JOBS, same transaction):
-- the chord's counter row (when there is a body) and the group's saved member order, which the
-- chord's last member reads its results by. What workflow_start does for a group, for the bulk path.
-- `results` is the member ids joined by commas (UUIDs have none), one text parameter: a Python list
-- of ids dumped as a text[] parameter (element by element, in Python) was most of the statement's cost.
WITH counter AS (
    INSERT INTO {chords} (id, remaining, body)
    SELECT %(id)s::uuid, %(remaining)s::int, %(body)s::jsonb WHERE %(body)s::jsonb IS NOT NULL
    ON CONFLICT (id) DO NOTHING
)
INSERT INTO {groups} (id, results) VALUES (%(id)s::uuid, string_to_array(%(results)s::text, ','))
ON CONFLICT (id) DO NOTHING

-- name: WORKFLOW_COPY_JOBS
-- The members of a group or chord's header due now, with their plans (a chord member's names its
-- chord), by COPY: the bulk path of a large chord, several times faster than inserting them from
-- the plan in SQL. Workers are woken by NOTIFY_QUEUES after it.
COPY {jobs} (id, task, queue, priority, state, args, kwargs, payload, content_type, headers, acks_late, group_id,
             root_id, parent_id, workflow)
FROM STDIN
