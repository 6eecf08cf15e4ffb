-- Periodic tasks (`sqlq beat`, sqlq/beat.py and sqlq/periodic.py). `schedules.next_fire_at` is the
-- cursor: the first tick not yet sent. A beat claims due rows with SKIP LOCKED and, in the same
-- transaction, writes one `schedule_ticks` row per tick next to the job it enqueued, then moves the
-- cursor. The tick row's primary key makes a tick fire at most once, whatever the beats do.
--
-- The statements that read whole rows select ScheduleRow's columns, in its order (a test keeps
-- them so). Statement format: sqlq/store/statements.py.

-- name: SCHEDULE_CLOCK
-- The time every schedule decision is made against: the database's, never a beat host's.
SELECT clock_timestamp()

-- name: SCHEDULE_UPSERT
-- Write a definition. An existing row keeps its cursor while its timing (cron, interval, anchor,
-- time zone) is unchanged, so a restarted beat neither repeats nor skips a tick; `enabled` belongs to
-- the operator (pause/resume) and is never touched. A NULL next_fire_at marks an invalid definition.
INSERT INTO {schedules} AS s (name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone,
                              enabled, source, next_fire_at, last_error, owner)
VALUES (%(name)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(options)s::jsonb, %(cron)s,
        %(interval_seconds)s, %(anchor)s, %(timezone)s, %(enabled)s, %(source)s, %(next_fire_at)s,
        %(last_error)s, %(owner)s)
ON CONFLICT (name) DO UPDATE SET
    task = excluded.task, args = excluded.args, kwargs = excluded.kwargs, options = excluded.options,
    cron = excluded.cron, interval_seconds = excluded.interval_seconds, anchor = excluded.anchor,
    timezone = excluded.timezone, source = excluded.source, owner = excluded.owner,
    next_fire_at = CASE
        WHEN excluded.next_fire_at IS NOT NULL AND s.next_fire_at IS NOT NULL
             AND (s.cron, s.interval_seconds, s.anchor, s.timezone)
                 IS NOT DISTINCT FROM (excluded.cron, excluded.interval_seconds, excluded.anchor, excluded.timezone)
        THEN s.next_fire_at ELSE excluded.next_fire_at END,
    last_error = CASE
        WHEN excluded.last_error IS NOT NULL THEN excluded.last_error
        WHEN (s.task, s.args, s.kwargs, s.options, s.cron, s.interval_seconds, s.anchor, s.timezone)
             IS NOT DISTINCT FROM (excluded.task, excluded.args, excluded.kwargs, excluded.options,
                                   excluded.cron, excluded.interval_seconds, excluded.anchor, excluded.timezone)
        THEN s.last_error END,
    updated_at = CASE
        WHEN (s.task, s.args, s.kwargs, s.options, s.cron, s.interval_seconds, s.anchor, s.timezone, s.source)
             IS NOT DISTINCT FROM (excluded.task, excluded.args, excluded.kwargs, excluded.options,
                                   excluded.cron, excluded.interval_seconds, excluded.anchor, excluded.timezone,
                                   excluded.source)
        THEN s.updated_at ELSE now() END

-- name: SCHEDULE_INSERT
-- Add a schedule only if the name is free (RETURNING says whether it was).
INSERT INTO {schedules} (name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone,
                         enabled, source, next_fire_at, last_error, owner)
VALUES (%(name)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(options)s::jsonb, %(cron)s,
        %(interval_seconds)s, %(anchor)s, %(timezone)s, %(enabled)s, %(source)s, %(next_fire_at)s,
        %(last_error)s, %(owner)s)
ON CONFLICT (name) DO NOTHING
RETURNING name

-- name: SCHEDULE_DELETE_STALE_CONFIG
-- This owner's config schedules that its config no longer names; schedules added by hand, and
-- those of other apps sharing the schema (another owner, or none: rows older than owners), stay.
DELETE FROM {schedules}
WHERE source = 'config' AND owner = %(owner)s AND name <> ALL(%(names)s::text[])
RETURNING name

-- name: SCHEDULE_FOREIGN_CONFIG
-- Config schedules of other owners, and whether this owner's config names them too: read before a
-- sync so that the beat can say which it leaves alone and which it takes over. The columns are
-- ForeignSchedule's.
SELECT name, owner, name = ANY(%(names)s::text[]) FROM {schedules}
WHERE source = 'config' AND owner IS DISTINCT FROM %(owner)s
ORDER BY name

-- name: SCHEDULE_DELETE
-- `sqlq schedule remove` (RETURNING says whether there was one).
DELETE FROM {schedules} WHERE name = %(name)s RETURNING name

-- name: SCHEDULE_GET
-- One schedule, as it is now.
SELECT name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone, enabled,
       source, next_fire_at, last_fire_at, total_run_count, last_error, created_at, updated_at, owner
FROM {schedules} WHERE name = %(name)s

-- name: SCHEDULE_GET_FOR_UPDATE
-- SCHEDULE_GET, locked: run-now and resume wait for a beat that is firing it.
SELECT name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone, enabled,
       source, next_fire_at, last_fire_at, total_run_count, last_error, created_at, updated_at, owner
FROM {schedules} WHERE name = %(name)s FOR UPDATE

-- name: SCHEDULE_LIST
-- `sqlq schedule list`.
SELECT name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone, enabled,
       source, next_fire_at, last_fire_at, total_run_count, last_error, created_at, updated_at, owner
FROM {schedules} ORDER BY name

-- name: SCHEDULE_CLAIM_DUE
-- Due schedules for this beat; rows another beat is firing right now are skipped, not waited for.
SELECT name, task, args, kwargs, options, cron, interval_seconds, anchor, timezone, enabled,
       source, next_fire_at, last_fire_at, total_run_count, last_error, created_at, updated_at, owner
FROM {schedules}
WHERE enabled AND next_fire_at <= %(now)s
ORDER BY next_fire_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: SCHEDULE_TICKS_INSERT
-- One row per tick, written with its job; a tick that already has a row is not sent again.
INSERT INTO {schedule_ticks} (schedule, tick, job_id, fired_by)
SELECT %(name)s, u.tick, u.job_id, %(fired_by)s
FROM unnest(%(ticks)s::timestamptz[], %(job_ids)s::uuid[]) AS u(tick, job_id)
ON CONFLICT (schedule, tick) DO NOTHING
RETURNING job_id::text

-- name: SCHEDULE_ADVANCE
-- Move the cursor after a pass: `fired` ticks were sent (last_fire_at only ever grows). Tick rows
-- before `prune_before` go in the same statement: the cursor only moves forward, so they can never
-- be proposed again, and the history stays bounded.
WITH pruned AS (
    DELETE FROM {schedule_ticks} WHERE schedule = %(name)s AND tick < %(prune_before)s::timestamptz
)
UPDATE {schedules}
SET next_fire_at = %(next_fire_at)s, last_fire_at = greatest(last_fire_at, %(last_fire_at)s),
    total_run_count = total_run_count + %(fired)s, last_error = %(last_error)s
WHERE name = %(name)s

-- name: SCHEDULE_PAUSE
-- `sqlq schedule pause` (no row: no such schedule, or it was already paused).
UPDATE {schedules} SET enabled = false, updated_at = now() WHERE name = %(name)s AND enabled RETURNING name

-- name: SCHEDULE_RESUME
-- Resuming starts from now: ticks that fell while paused are not sent.
UPDATE {schedules} SET enabled = true, next_fire_at = %(next_fire_at)s, last_error = %(last_error)s,
                       updated_at = now()
WHERE name = %(name)s AND NOT enabled RETURNING name

-- name: SCHEDULE_NEXT_DUE
-- How long a beat may sleep: the database's time and the earliest cursor of an enabled schedule.
SELECT clock_timestamp(), min(next_fire_at) FROM {schedules} WHERE enabled
