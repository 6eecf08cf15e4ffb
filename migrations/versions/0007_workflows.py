"""Workflows: chains, chords, callbacks and errbacks run by the database, and revoked ids.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

* ``jobs`` and ``results`` gain ``root_id``, ``parent_id`` (uuid, nullable: the first job of a
  workflow or of a line of tasks sent from tasks, and the job whose outcome sent this one) and
  ``workflow`` (jsonb, NULL for every plain job): what is to happen once this job's outcome is
  recorded, a plan built by the sender (``sqlq.workflows``). Every statement that moves a job into
  ``results`` copies the three columns. Partial indexes on ``results(parent_id)``,
  ``results(root_id)`` and ``jobs(parent_id)`` (only rows that have one) serve
  ``AsyncResult.children`` and the README's recursive query.
* ``chords``: one row per chord whose header is running: ``remaining`` members, the ``body``'s
  plan, ``failed`` (the first failed member, once one failed). The member order is the saved
  group's (``groups`` row written with the header).
* ``revoked``: every id ``revoke()`` named, so that a step not yet enqueued is not enqueued later
  (the trigger records it REVOKED), and, for the worker, a table that outlives its memory.
* ``workflow_step()``: the row trigger ``AFTER INSERT ON results ... WHEN (NEW.workflow IS NOT
  NULL)``, so the next step of a workflow is written in the transaction that records the outcome
  of the previous one, whichever statement records it (FINISH, REVOKE, RESCUE, LOST, QUARANTINE);
  plain results pay only the WHEN test. ``workflow_start(plan)`` is also what a sender calls to
  write a workflow's first jobs, so the plan is read by one piece of code.
* ``workflow_chord_count()``: the statement trigger ``AFTER INSERT ON results FOR EACH STATEMENT``
  that counts down, once per chord, the chord members that succeeded in the statement (the row
  trigger lists them in a transaction-local setting, ``chord_parts_setting``); a statement without
  any pays one function call that reads the setting.

The SQL avoids ``:word`` sequences because alembic passes it through ``sqlalchemy.text()``.
"""

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from sqlq.names import validate_identifier

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# A plan "node" is either a task step, a JSON object with the job row's columns ready to insert:
#   {"id", "task", "queue", "priority", "args", "kwargs", "headers", "countdown", "eta",
#    "expires_in", "expires_at", "acks_late", "group_id", "root_id", "mutable", "workflow"}
# ("mutable": the value of the step before is put first in its args), or a group step:
#   {"group": id, "members": [nodes], "results": [member result ids, in order], "body": node|null,
#    "mutable": bool}
# (with a body: a chord). A step's "workflow" is what its own outcome sets off:
#   {"chain": [nodes after it], "link": [nodes], "link_error": [nodes], "chord": chord id}
FUNCTIONS = r"""
CREATE FUNCTION {s}.workflow_record(node jsonb, state text, exc_type text, exc_message text,
                                    tb text, parent uuid, root uuid, keep_workflow boolean) RETURNS void
LANGUAGE plpgsql AS $fn$
-- One step that will not run gets its outcome without a job: FAILURE (or REVOKED when its id was
-- revoked). With keep_workflow the row carries the step's plan, so the trigger carries on from it
-- (its errbacks, the rest of its chain, its chord); without, the steps after it are recorded here,
-- each once, and nothing of theirs runs.
DECLARE
    step jsonb;
    final text;
BEGIN
    IF node ? 'group' THEN
        FOR step IN SELECT e FROM jsonb_array_elements(node->'members') AS e LOOP
            PERFORM {s}.workflow_record(step, state, exc_type, exc_message, tb, parent, root, false);
        END LOOP;
        IF jsonb_typeof(node->'body') = 'object' THEN
            PERFORM {s}.workflow_record(node->'body', state, exc_type, exc_message, tb, parent, root,
                                        keep_workflow);
        END IF;
        RETURN;
    END IF;
    final := CASE WHEN EXISTS (SELECT 1 FROM {s}.revoked WHERE id = (node->>'id')::uuid) THEN 'REVOKED'
                  ELSE state END;
    INSERT INTO {s}.results (id, task, queue, priority, state, args, kwargs, content_type, exc_type,
                             exc_message, traceback, enqueued_at, finished_at, group_id, root_id,
                             parent_id, workflow)
    VALUES ((node->>'id')::uuid, node->>'task', node->>'queue', (node->>'priority')::smallint, final,
            node->'args', node->'kwargs', 'application/json',
            CASE WHEN final = 'REVOKED' AND state <> 'REVOKED' THEN 'sqlq.errors.TaskRevokedError' ELSE exc_type END,
            CASE WHEN final = 'REVOKED' AND state <> 'REVOKED' THEN 'revoked before it started' ELSE exc_message END,
            tb, NULL, clock_timestamp(), (node->>'group_id')::uuid,
            coalesce((node->>'root_id')::uuid, root), parent,
            CASE WHEN keep_workflow THEN nullif(node->'workflow', 'null'::jsonb) END)
    ON CONFLICT (id) DO NOTHING;
    PERFORM pg_notify('{results_channel}', node->>'id');
    IF NOT keep_workflow THEN
        FOR step IN SELECT e FROM jsonb_array_elements(coalesce(node->'workflow'->'chain', '[]')) AS e LOOP
            PERFORM {s}.workflow_record(step, state, exc_type, exc_message, tb, parent, root, false);
        END LOOP;
        IF node->'workflow' ? 'chord' THEN  -- a chord member that will not run still counts
            PERFORM {s}.workflow_chord_part((node->'workflow'->>'chord')::uuid, (node->>'id')::uuid, false,
                                            exc_type, exc_message, root);
        END IF;
    END IF;
END
$fn$;

CREATE FUNCTION {s}.workflow_insert(nodes jsonb, value jsonb, parent uuid, root uuid) RETURNS void
LANGUAGE plpgsql AS $fn$
-- Insert the jobs of task steps (a JSON array of them: one step, or a group's members) in one
-- statement: each step's args led by `value` when it is mutable, its headers naming its parent and
-- root for the task's request, one NOTIFY per queue that got due jobs. A step whose id was revoked
-- is recorded REVOKED instead, its plan kept so that the trigger stops what follows it.
DECLARE
    step jsonb;
    woken bigint;
BEGIN
    WITH v AS (
        SELECT e AS node, coalesce((e->>'root_id')::uuid, root) AS job_root,
               coalesce((e->>'eta')::timestamptz,
                        statement_timestamp() + make_interval(secs => coalesce((e->>'countdown')::float8, 0))) AS run_at
        FROM jsonb_array_elements(nodes) AS e
        WHERE NOT EXISTS (SELECT 1 FROM {s}.revoked AS r WHERE r.id = (e->>'id')::uuid)
    ), ins AS (
        INSERT INTO {s}.jobs (id, task, queue, priority, state, args, kwargs, content_type, headers, run_at,
                              expires_at, enqueued_at, acks_late, group_id, root_id, parent_id, workflow)
        SELECT (node->>'id')::uuid, node->>'task', node->>'queue', (node->>'priority')::smallint,
               CASE WHEN run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
               CASE WHEN (node->>'mutable')::boolean AND value IS NOT NULL
                    THEN jsonb_build_array(value) || (node->'args') ELSE node->'args' END,
               node->'kwargs', 'application/json',
               CASE WHEN parent IS NULL THEN coalesce(node->'headers', '{{}}'::jsonb)
                    ELSE jsonb_set(coalesce(node->'headers', '{{}}'::jsonb), '{{sqlq}}',
                                   coalesce(node->'headers'->'sqlq', '{{}}'::jsonb)
                                   || jsonb_build_object('parent_id', parent::text, 'root_id', job_root::text)) END,
               run_at,
               coalesce((node->>'expires_at')::timestamptz,
                        statement_timestamp() + make_interval(secs => (node->>'expires_in')::float8)),
               statement_timestamp(), coalesce((node->>'acks_late')::boolean, true), (node->>'group_id')::uuid,
               job_root, parent, nullif(node->'workflow', 'null'::jsonb)
        FROM v
        RETURNING queue, state
    )
    SELECT count(*) INTO woken
    FROM (SELECT pg_notify('{jobs_channel}', q.queue)
          FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS q) AS n;
    FOR step IN SELECT e FROM jsonb_array_elements(nodes) AS e
                WHERE EXISTS (SELECT 1 FROM {s}.revoked AS r WHERE r.id = (e->>'id')::uuid) LOOP
        PERFORM {s}.workflow_record(step, 'REVOKED', 'sqlq.errors.TaskRevokedError', 'revoked before it started',
                                    NULL, parent, coalesce((step->>'root_id')::uuid, root), true);
    END LOOP;
END
$fn$;

CREATE FUNCTION {s}.workflow_start(node jsonb, value jsonb, why text, parent uuid, root uuid,
                                   caught boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql AS $fn$
-- Start one step of a plan: insert its job (workflow_insert), or, for a group, its members in one
-- statement (and, for a chord, its counter row and saved member order first; an empty header runs
-- the body at once with []). `why`: the value could not be handed on (not JSON, not kept): a
-- mutable step then fails saying so. `caught` (the trigger's calls): any error is the step's
-- FAILURE WorkflowError, never the statement's, since the statement that recorded the outcome
-- before it must not fail; a sender's WORKFLOW_START passes false, so a bad first step fails the
-- send instead.
DECLARE
    step jsonb;
    members jsonb;
BEGIN
    IF node ? 'group' THEN
        members := node->'members';
        IF jsonb_typeof(node->'body') = 'object' THEN
            IF jsonb_array_length(members) = 0 THEN
                PERFORM {s}.workflow_start(node->'body', '[]'::jsonb, NULL, parent, root, caught);
                RETURN;
            END IF;
            INSERT INTO {s}.chords (id, remaining, body)
            VALUES ((node->>'group')::uuid, jsonb_array_length(members), node->'body')
            ON CONFLICT (id) DO NOTHING;
        END IF;
        INSERT INTO {s}.groups (id, results)
        SELECT (node->>'group')::uuid, array(SELECT jsonb_array_elements_text(node->'results'))
        ON CONFLICT (id) DO NOTHING;
        IF why IS NULL AND NOT caught THEN
            PERFORM {s}.workflow_insert(members, value, parent, root);
            RETURN;
        ELSIF why IS NULL THEN
            BEGIN
                PERFORM {s}.workflow_insert(members, value, parent, root);
                RETURN;
            EXCEPTION WHEN OTHERS THEN
                NULL;  -- one member's row was refused: start them one by one, each failing on its own
            END;
        END IF;
        FOR step IN SELECT e FROM jsonb_array_elements(members) AS e LOOP
            PERFORM {s}.workflow_start(step, value, why, parent, root, caught);
        END LOOP;
        RETURN;
    END IF;
    IF NOT caught THEN
        PERFORM {s}.workflow_insert(jsonb_build_array(node), value, parent, root);
        RETURN;
    END IF;
    BEGIN
        IF (node->>'mutable')::boolean AND why IS NOT NULL THEN
            RAISE EXCEPTION '%', why USING ERRCODE = 'SQ409';
        END IF;
        PERFORM {s}.workflow_insert(jsonb_build_array(node), value, parent, root);
    EXCEPTION WHEN OTHERS THEN
        PERFORM {s}.workflow_record(node, 'FAILURE', 'sqlq.errors.WorkflowError',
                                    CASE WHEN SQLSTATE = 'SQ409' THEN SQLERRM
                                         ELSE format('the step could not be enqueued: %s (SQLSTATE %s)', SQLERRM, SQLSTATE) END,
                                    NULL, parent, coalesce((node->>'root_id')::uuid, root), true);
    END;
END
$fn$;

CREATE FUNCTION {s}.workflow_chord_done(chord uuid, root uuid) RETURNS void
LANGUAGE plpgsql AS $fn$
-- The last member of a chord has its outcome and none failed: the body starts with every result,
-- in the saved member order. This runs after every other member's transaction committed (their
-- UPDATEs of the chord's row came first, under its row lock, and read committed gives each
-- statement here a fresh snapshot), so it reads all results.
DECLARE
    body jsonb;
    why text;
    val jsonb;
    all_json boolean;
BEGIN
    SELECT ch.body INTO body FROM {s}.chords AS ch WHERE ch.id = chord;
    SELECT coalesce(jsonb_agg(r.result ORDER BY u.ord), '[]'::jsonb),
           coalesce(bool_and(r.result_content_type = 'application/json' AND r.result IS NOT NULL), true)
    INTO val, all_json
    FROM {s}.groups AS g
    CROSS JOIN LATERAL unnest(g.results) WITH ORDINALITY AS u(id, ord)
    JOIN {s}.results AS r ON r.id = u.id::uuid
    WHERE g.id = chord;
    IF NOT all_json THEN
        why := 'a member of the chord has a result that is not JSON, or none kept (ignore_result), so the '
               'body cannot be given the results; give the header''s tasks the json result serializer '
               'and keep their results, or make the body immutable (.si())';
        val := NULL;
    END IF;
    PERFORM {s}.workflow_start(body, val, why, chord, root);
END
$fn$;

CREATE FUNCTION {s}.workflow_chord_part(chord uuid, member uuid, ok boolean, exc_type text, exc_message text,
                                        root uuid) RETURNS void
LANGUAGE plpgsql AS $fn$
-- One member of a chord has its outcome (successes are counted by workflow_chord_count at the end
-- of their statement; this is for members that failed, were revoked or expired, or will not run,
-- and it counts at once). The UPDATE takes the chord's row lock, so members count down one at a
-- time. The first failed member fails the body (ChordError naming it); the body never runs then;
-- later members only count down, and the count reaching zero after a failure starts nothing.
DECLARE
    c record;
    why text;
BEGIN
    why := format('Dependency %s raised %s: %s', member, exc_type, exc_message);
    UPDATE {s}.chords AS ch
    SET remaining = ch.remaining - 1,
        failed = coalesce(ch.failed, CASE WHEN NOT ok THEN why END)
    WHERE ch.id = chord
    RETURNING ch.remaining, ch.body, ch.failed, (NOT ok AND ch.failed = why) AS first_failure
    INTO c;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF c.first_failure THEN
        PERFORM {s}.workflow_record(c.body, 'FAILURE', 'sqlq.errors.ChordError', c.failed, NULL, chord, root, true);
    ELSIF c.remaining = 0 AND c.failed IS NULL THEN
        PERFORM {s}.workflow_chord_done(chord, root);
    END IF;
END
$fn$;

CREATE FUNCTION {s}.workflow_step() RETURNS trigger
LANGUAGE plpgsql AS $fn$
-- A workflow job's outcome was recorded (AFTER INSERT ON results, only rows whose workflow is not
-- NULL): on SUCCESS its callbacks and the next step of its chain start with its result; otherwise
-- its errbacks start (on FAILURE, with its id) and the rest of its chain is recorded as failed
-- with its error; a chord member counts down its chord either way: a failed one at once
-- (workflow_chord_part), a successful one by adding itself to the transaction-local setting that
-- workflow_chord_count reads at the end of the statement, which then updates each chord's row once
-- for all its members in the statement (one UPDATE per member in one transaction walks an ever
-- longer chain of versions of the same row). The setting is a list of runs ",<chord> <root>+++":
-- a member of the same chord as the run before it adds one "+", so the text (copied whole by every
-- set_config) grows by a character a member, not by an entry. Each part is guarded by a key test,
-- so a chord member's success costs that append and little else.
DECLARE
    wf jsonb := NEW.workflow;
    step jsonb;
    rest jsonb;
    why text;
    val jsonb;
    root uuid := coalesce(NEW.root_id, NEW.id);
    entry text;
    parts text;
BEGIN
    IF NEW.state = 'SUCCESS' THEN
        IF wf ? 'link' OR wf ? 'chain' THEN
            IF NEW.result_content_type = 'application/json' AND NEW.result IS NOT NULL THEN
                val := NEW.result;
            ELSIF NEW.result_content_type IS NOT NULL AND NEW.result_content_type <> 'application/json' THEN
                why := format('the result of %s (%s) is %s, not JSON, so the database cannot hand it to the next '
                              'step; give that task the json result serializer, or make the next step immutable '
                              '(.si())', NEW.id, NEW.task, NEW.result_content_type);
            ELSE
                why := format('the result of %s (%s) was not kept (ignore_result), so it cannot be handed to the '
                              'next step; keep its result, or make the next step immutable (.si())', NEW.id, NEW.task);
            END IF;
        END IF;
        IF wf ? 'link' THEN
            FOR step IN SELECT e FROM jsonb_array_elements(wf->'link') AS e LOOP
                PERFORM {s}.workflow_start(step, val, why, NEW.id, root);
            END LOOP;
        END IF;
        IF wf ? 'chain' AND jsonb_array_length(wf->'chain') > 0 THEN
            step := wf->'chain'->0;
            rest := (wf->'chain') - 0;
            IF jsonb_array_length(rest) > 0 THEN
                step := jsonb_set(step, '{{workflow}}',
                                  coalesce(nullif(step->'workflow', 'null'::jsonb), '{{}}'::jsonb)
                                  || jsonb_build_object('chain', rest));
            END IF;
            PERFORM {s}.workflow_start(step, val, why, NEW.id, root);
        END IF;
        IF wf ? 'chord' THEN  -- (counted at the end of the statement: workflow_chord_count)
            entry := (wf->>'chord')::uuid::text || ' ' || root::text;
            parts := coalesce(current_setting('{chord_parts}', true), '');
            PERFORM set_config('{chord_parts}',
                               CASE WHEN right(rtrim(parts, '+'), 73) = entry THEN parts || '+'
                                    ELSE parts || ',' || entry || '+' END, true);
        END IF;
    ELSE
        IF NEW.state = 'FAILURE' AND wf ? 'link_error' THEN
            FOR step IN SELECT e FROM jsonb_array_elements(wf->'link_error') AS e LOOP
                PERFORM {s}.workflow_start(step, to_jsonb(NEW.id::text), NULL, NEW.id, root);
            END LOOP;
        END IF;
        IF wf ? 'chain' THEN
            FOR step IN SELECT e FROM jsonb_array_elements(wf->'chain') AS e LOOP
                PERFORM {s}.workflow_record(step, 'FAILURE', NEW.exc_type, NEW.exc_message, NEW.traceback,
                                            NEW.id, root, false);
            END LOOP;
        END IF;
        IF wf ? 'chord' THEN
            PERFORM {s}.workflow_chord_part((wf->>'chord')::uuid, NEW.id, false, NEW.exc_type, NEW.exc_message,
                                            root);
        END IF;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER workflow_step AFTER INSERT ON {s}.results
FOR EACH ROW WHEN (NEW.workflow IS NOT NULL) EXECUTE FUNCTION {s}.workflow_step();

CREATE FUNCTION {s}.workflow_chord_count() RETURNS trigger
LANGUAGE plpgsql AS $fn$
-- The end of a statement that inserted into results (AFTER INSERT ... FOR EACH STATEMENT): the
-- chord members that succeeded in it (workflow_step added each to the transaction-local setting:
-- runs ",<chord> <root>+++", one "+" a member) count down their chords, one UPDATE per chord for
-- all its members (the root handed to the body is the first run's, the same for every member),
-- chords in id order (two statements lock them in the same order); the chord reaching zero with
-- no failed member starts its body, once: the count reaches zero once, under the row's lock.
-- The setting is read and cleared before anything is counted, so an entry is counted once even
-- when starting a body inserts into results (that nested statement's own run of this function
-- finds the setting empty, or only what was appended since). Every append is made by a row
-- trigger of an INSERT into results, and that statement's run of this function comes after all
-- its row triggers, so no entry outlives its statement. Being local to the transaction, the
-- setting rolls back with it and with a subtransaction (workflow_start's EXCEPTION blocks), the
-- count with it. A trigger's WHEN cannot test the setting: PostgreSQL evaluates a statement
-- trigger's WHEN when it queues the event, before the row triggers run; so every INSERT into
-- results calls this function, and one without chord members leaves at the first test.
DECLARE
    parts text := current_setting('{chord_parts}', true);
    c record;
    left_over integer;
    failed text;
BEGIN
    IF parts IS NULL OR parts = '' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('{chord_parts}', '', true);
    FOR c IN SELECT left(run, 36)::uuid AS chord, (array_agg(substr(run, 38, 36) ORDER BY i))[1]::uuid AS root,
                    sum(length(run) - 73)::integer AS n
             FROM unnest(string_to_array(parts, ',')) WITH ORDINALITY AS e(run, i)
             WHERE run <> ''
             GROUP BY 1
             ORDER BY 1 LOOP
        UPDATE {s}.chords AS ch SET remaining = ch.remaining - c.n
        WHERE ch.id = c.chord
        RETURNING ch.remaining, ch.failed INTO left_over, failed;
        IF FOUND AND left_over = 0 AND failed IS NULL THEN
            PERFORM {s}.workflow_chord_done(c.chord, c.root);
        END IF;
    END LOOP;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER workflow_chord_count AFTER INSERT ON {s}.results
FOR EACH STATEMENT EXECUTE FUNCTION {s}.workflow_chord_count();
"""

DROP_FUNCTIONS = [
    "workflow_chord_count()",
    "workflow_step()",
    "workflow_chord_part(uuid, uuid, boolean, text, text, uuid)",
    "workflow_chord_done(uuid, uuid)",
    "workflow_start(jsonb, jsonb, text, uuid, uuid, boolean)",
    "workflow_insert(jsonb, jsonb, uuid, uuid)",
    "workflow_record(jsonb, text, text, text, text, uuid, uuid, boolean)",
]


def chord_parts_setting(schema: str) -> str:
    """The name of the transaction-local setting in which ``schema``'s chord members that succeeded
    wait for the end of their statement (``workflow_chord_count``).

    One per schema, since several sqlq schemas may share a database and a transaction. A custom
    setting's name is ``prefix.name`` of letters, digits and underscores, compared without case, so
    the schema name is spelled injectively in lower case: ``_`` as ``__``, an upper-case letter as
    ``_`` and the letter (``Jobs_2`` -> ``sqlq.chord_parts__jobs__2``)."""
    validate_identifier(schema)
    spelled = "".join("__" if ch == "_" else f"_{ch.lower()}" if ch.isupper() else ch for ch in schema)
    return f"sqlq.chord_parts_{spelled}"


def functions_sql(schema: str) -> str:
    """The functions and the triggers for ``schema`` (quoted identifiers, channel and setting names
    as literals)."""
    return FUNCTIONS.format(s=f'"{schema}"', jobs_channel=f"{schema}.jobs", results_channel=f"{schema}.results",
                            chord_parts=chord_parts_setting(schema))


def upgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    for table in ("jobs", "results"):
        op.add_column(table, sa.Column("root_id", UUID(as_uuid=False)), schema=schema)
        op.add_column(table, sa.Column("parent_id", UUID(as_uuid=False)), schema=schema)
        op.add_column(table, sa.Column("workflow", JSONB), schema=schema)
    op.create_index("results_parent", "results", ["parent_id"], schema=schema,
                    postgresql_where=sa.text("parent_id IS NOT NULL"))
    op.create_index("results_root", "results", ["root_id"], schema=schema,
                    postgresql_where=sa.text("root_id IS NOT NULL"))
    op.create_index("jobs_parent", "jobs", ["parent_id"], schema=schema,
                    postgresql_where=sa.text("parent_id IS NOT NULL"))
    op.create_table(
        "chords",
        sa.Column("id", UUID(as_uuid=False), nullable=False),
        sa.Column("remaining", sa.Integer, nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("failed", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id", name="chords_pkey"),
        schema=schema,
    )
    op.create_index("chords_created_at", "chords", ["created_at"], schema=schema)
    op.create_table(
        "revoked",
        sa.Column("id", UUID(as_uuid=False), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("terminate", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("signal", sa.Text),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="revoked_pkey"),
        schema=schema,
    )
    op.create_index("revoked_revoked_at", "revoked", ["revoked_at"], schema=schema)
    op.execute(sa.text(functions_sql(schema)))


def downgrade() -> None:
    schema = context.config.attributes["sqlq_schema"]
    op.execute(f'DROP TRIGGER IF EXISTS workflow_chord_count ON "{schema}".results')
    op.execute(f'DROP TRIGGER IF EXISTS workflow_step ON "{schema}".results')
    for signature in DROP_FUNCTIONS:
        op.execute(f'DROP FUNCTION IF EXISTS "{schema}".{signature}')
    op.drop_index("revoked_revoked_at", table_name="revoked", schema=schema)
    op.drop_table("revoked", schema=schema)
    op.drop_index("chords_created_at", table_name="chords", schema=schema)
    op.drop_table("chords", schema=schema)
    op.drop_index("jobs_parent", table_name="jobs", schema=schema)
    op.drop_index("results_root", table_name="results", schema=schema)
    op.drop_index("results_parent", table_name="results", schema=schema)
    for table in ("results", "jobs"):
        for column in ("workflow", "parent_id", "root_id"):
            op.drop_column(table, column, schema=schema)
