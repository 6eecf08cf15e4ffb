"""Routing: exchanges, bindings, topic matching, and the SQL API (enqueue/publish) for any language.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Routing runs in SQL so that it happens in the same statement (and transaction) as the insert, and
so that a producer written in any language can enqueue with nothing but a PostgreSQL driver:

* ``topic_regex(pattern)`` / ``topic_matches(pattern, key)``: AMQP topic matching. A key is a list
  of dot-separated words (the empty key has none); in a pattern ``*`` is exactly one word and ``#``
  zero or more. Both are translated to one anchored regular expression over ``'.' || key``, with
  every regex metacharacter of a literal word escaped, so a key can contain anything.
* ``route_queues(exchange, routing_key) -> text[]``: the queues a message goes to. NULL means the
  exchange does not exist, ``'{}'`` that nothing matched and there is no alternate queue. The Python
  producer's statement (which the planner inlines it into) and ``publish()`` both use it, so there
  is one matcher. Topic patterns are matched through ``bindings.key_regex``, computed by
  ``topic_regex`` when a binding is written.
* ``enqueue(...) -> uuid`` and ``publish(...) -> uuid[]``: write rows of exactly the shape Python's
  enqueue writes and NOTIFY ``<schema>.jobs`` with the queue (delivered at commit).

Identifiers are the validated schema name, double-quoted; nothing user-supplied is formatted in.
The SQL avoids ``:word`` sequences because alembic passes it through ``sqlalchemy.text()``.
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Same rules as sqlq/names.py (_QUEUE, _TASK), so SQL producers get the same errors as Python ones.
QUEUE_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$"
TASK_RE = r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,254}$"

# Topic matching. plpgsql rather than SQL functions: PostgreSQL (before 18) plans a non-inlined SQL
# function body on every call, which costs far more than the match itself.
TOPIC_FUNCTIONS = r"""
CREATE FUNCTION {s}.topic_regex(pattern text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    w text;
    re text := '^';
BEGIN
    IF pattern = '' THEN
        RETURN '^$';
    END IF;
    FOREACH w IN ARRAY string_to_array(pattern, '.') LOOP
        re := re || CASE w WHEN '#' THEN '(?:\.[^.]*)*'
                           WHEN '*' THEN '\.[^.]*'
                           ELSE '\.' || regexp_replace(w, '([.^$*+?()[\]{{}}|\\])', '\\\1', 'g') END;
    END LOOP;
    RETURN re || '$';
END
$fn$;

COMMENT ON FUNCTION {s}.topic_regex(text) IS
    'AMQP topic pattern -> anchored regex over ''.''||key (* = one word, # = zero or more words)';

CREATE FUNCTION {s}.topic_matches(pattern text, routing_key text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT (CASE WHEN routing_key = '' THEN '' ELSE '.' || routing_key END) ~ {s}.topic_regex(pattern)
$fn$;

COMMENT ON FUNCTION {s}.topic_matches(text, text) IS
    'AMQP topic match: words split on ".", "*" matches exactly one word, "#" zero or more';
"""

# Routing and the SQL API. route_queues matches against bindings.key_regex (topic_regex of the
# binding key, computed once when the binding is written), so a publish compiles no pattern. It is a
# set-returning SQL function with a single SELECT and neither STRICT nor VOLATILE, so the planner
# inlines it into the statement that calls it (no per-call function overhead on the hot path); in a
# select list it reads as a scalar: SELECT sqlq.route_queues('media', 'media.video.hd').
FUNCTIONS = r"""
CREATE FUNCTION {s}.route_queues(exchange text, routing_key text) RETURNS TABLE (queues text[])
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN e.name IS NULL THEN NULL
                WHEN m.matched IS NOT NULL THEN m.matched
                WHEN e.alternate_queue IS NOT NULL THEN ARRAY[e.alternate_queue]
                ELSE '{{}}'::text[] END
    FROM (SELECT 1) AS one
    LEFT JOIN {s}.exchanges AS e ON e.name = $1
    LEFT JOIN LATERAL (
        SELECT array_agg(DISTINCT b.queue ORDER BY b.queue) AS matched
        FROM {s}.bindings AS b
        WHERE b.exchange = e.name
          AND (e.type = 'fanout'
               OR (e.type = 'direct' AND b.binding_key = $2)
               OR (e.type = 'topic' AND (CASE WHEN $2 = '' THEN '' ELSE '.' || $2 END) ~ b.key_regex))
    ) AS m ON true
$fn$;

COMMENT ON FUNCTION {s}.route_queues(text, text) IS
    'queues a message published to (exchange, routing_key) goes to; NULL: no such exchange; {{}}: unroutable';

CREATE FUNCTION {s}.insert_jobs(queues text[], task text, args jsonb, kwargs jsonb, priority int,
                                countdown float8, eta timestamptz, expires_in float8, headers jsonb,
                                job_id uuid, group_id uuid, acks_late boolean) RETURNS uuid[]
LANGUAGE plpgsql AS $fn$
DECLARE
    ids uuid[];
    woken_count bigint;
BEGIN
    IF task IS NULL OR task !~ '{task_re}' THEN
        RAISE EXCEPTION 'sqlq: invalid task name %', quote_nullable(task)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use a dotted Python-style name such as ''proj.tasks.add''';
    END IF;
    IF args IS NULL OR jsonb_typeof(args) <> 'array' THEN
        RAISE EXCEPTION 'sqlq: args must be a JSON array, got %', coalesce(args::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass e.g. ''[1, 2]''::jsonb';
    END IF;
    IF kwargs IS NULL OR jsonb_typeof(kwargs) <> 'object' THEN
        RAISE EXCEPTION 'sqlq: kwargs must be a JSON object, got %', coalesce(kwargs::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pass e.g. ''{{"x": 1}}''::jsonb';
    END IF;
    IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION 'sqlq: headers must be a JSON object, got %', coalesce(headers::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF priority IS NULL OR priority NOT BETWEEN -32768 AND 32767 THEN
        RAISE EXCEPTION 'sqlq: priority must be an integer from -32768 to 32767, got %', priority
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF countdown IS NOT NULL AND eta IS NOT NULL AND countdown <> 0 THEN
        RAISE EXCEPTION 'sqlq: pass either countdown or eta, not both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH ins AS (
        INSERT INTO {s}.jobs (id, task, queue, priority, state, args, kwargs, payload, content_type,
                              headers, run_at, expires_at, enqueued_at, acks_late, group_id)
        SELECT CASE WHEN q.n = 1 AND job_id IS NOT NULL THEN job_id ELSE gen_random_uuid() END,
               task, q.queue, priority,
               CASE WHEN v.run_at > statement_timestamp() THEN 'scheduled' ELSE 'available' END,
               args, kwargs, NULL, 'application/json', headers, v.run_at,
               statement_timestamp() + make_interval(secs => expires_in),
               statement_timestamp(), coalesce(acks_late, true), group_id
        FROM unnest(queues) WITH ORDINALITY AS q(queue, n),
             (SELECT coalesce(eta, statement_timestamp()
                                   + make_interval(secs => coalesce(countdown, 0))) AS run_at) AS v
        RETURNING id, queue, state
    ), woken AS (
        SELECT pg_notify('{channel}', w.queue)
        FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') AS w
    )
    SELECT array_agg(ins.id), (SELECT count(*) FROM woken) INTO ids, woken_count FROM ins;
    RETURN ids;
END
$fn$;

COMMENT ON FUNCTION {s}.insert_jobs(text[], text, jsonb, jsonb, int, float8, timestamptz, float8, jsonb, uuid, uuid, boolean) IS
    'sqlq internal: the INSERT behind enqueue() and publish() (queue names are not checked here)';

CREATE FUNCTION {s}.enqueue(task text, args jsonb DEFAULT '[]', kwargs jsonb DEFAULT '{{}}',
                            queue text DEFAULT 'default', priority int DEFAULT 0,
                            countdown float8 DEFAULT 0, eta timestamptz DEFAULT NULL,
                            expires_in float8 DEFAULT NULL, headers jsonb DEFAULT '{{}}',
                            job_id uuid DEFAULT NULL, acks_late boolean DEFAULT true) RETURNS uuid
LANGUAGE plpgsql AS $fn$
BEGIN
    IF queue IS NULL OR queue !~ '{queue_re}' OR length(queue) > 200 THEN
        RAISE EXCEPTION 'sqlq: invalid queue name %', quote_nullable(queue)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use letters, digits and _ . : - (at most 200 characters, not starting with . : or -)';
    END IF;
    RETURN ({s}.insert_jobs(ARRAY[queue], task, args, kwargs, priority, countdown, eta, expires_in,
                            headers, job_id, NULL, acks_late))[1];
END
$fn$;

COMMENT ON FUNCTION {s}.enqueue(text, jsonb, jsonb, text, int, float8, timestamptz, float8, jsonb, uuid, boolean) IS
    'sqlq: enqueue one job on a queue; returns its id; workers are woken at commit';

CREATE FUNCTION {s}.publish(exchange text, routing_key text, task text, args jsonb DEFAULT '[]',
                            kwargs jsonb DEFAULT '{{}}', priority int DEFAULT 0,
                            countdown float8 DEFAULT 0, eta timestamptz DEFAULT NULL,
                            expires_in float8 DEFAULT NULL, headers jsonb DEFAULT '{{}}',
                            acks_late boolean DEFAULT true) RETURNS uuid[]
LANGUAGE plpgsql AS $fn$
DECLARE
    dest text[] := (SELECT r.queues FROM {s}.route_queues(exchange, coalesce(routing_key, '')) AS r);
BEGIN
    IF dest IS NULL THEN
        RAISE EXCEPTION 'sqlq: unknown exchange %', quote_nullable(exchange)
            USING ERRCODE = 'SQ404',
                  HINT = 'declare it (sqlq routes add EXCHANGE QUEUE --type ..., or task_queues and '
                         'sqlq routes apply); sqlq routes list shows what exists';
    END IF;
    IF cardinality(dest) = 0 THEN
        RAISE EXCEPTION 'sqlq: unroutable message: no binding of exchange % matches routing key %',
                        quote_literal(exchange), quote_literal(coalesce(routing_key, ''))
            USING ERRCODE = 'SQ422',
                  HINT = 'bind a queue that matches this key (sqlq routes add), fix the key, or give '
                         'the exchange an alternate queue (sqlq routes add EXCHANGE --alternate QUEUE)';
    END IF;
    RETURN {s}.insert_jobs(dest, task, args, kwargs, priority, countdown, eta, expires_in, headers,
                           NULL, CASE WHEN cardinality(dest) > 1 THEN gen_random_uuid() END, acks_late);
END
$fn$;

COMMENT ON FUNCTION {s}.publish(text, text, text, jsonb, jsonb, int, float8, timestamptz, float8, jsonb, boolean) IS
    'sqlq: publish one message through an exchange; one job per queue it routes to (sharing a group id)';
"""

DROP_FUNCTIONS = [
    "publish(text, text, text, jsonb, jsonb, int, float8, timestamptz, float8, jsonb, boolean)",
    "enqueue(text, jsonb, jsonb, text, int, float8, timestamptz, float8, jsonb, uuid, boolean)",
    "insert_jobs(text[], text, jsonb, jsonb, int, float8, timestamptz, float8, jsonb, uuid, uuid, boolean)",
    "route_queues(text, text)",
    "topic_matches(text, text)",
    "topic_regex(text)",
]


def _schema() -> str:
    schema: str = context.config.attributes["sqlq_schema"]
    return schema


def upgrade() -> None:
    schema = _schema()
    fmt = {"s": f'"{schema}"', "channel": f"{schema}.jobs", "task_re": TASK_RE, "queue_re": QUEUE_RE}
    op.execute(sa.text(TOPIC_FUNCTIONS.format(**fmt)))
    op.create_table(
        "exchanges",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("alternate_queue", sa.Text),
        sa.PrimaryKeyConstraint("name", name="exchanges_pkey"),
        sa.CheckConstraint("type IN ('direct', 'fanout', 'topic')", name="exchanges_type_check"),
        schema=schema,
    )
    op.create_table(
        "bindings",
        sa.Column("exchange", sa.Text, nullable=False),
        sa.Column("binding_key", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("key_regex", sa.Text, sa.Computed(key_regex_sql(schema), persisted=True)),
        sa.PrimaryKeyConstraint("exchange", "binding_key", "queue", name="bindings_pkey"),
        sa.ForeignKeyConstraint(["exchange"], [f"{schema}.exchanges.name"], name="bindings_exchange_fkey",
                                ondelete="CASCADE"),
        schema=schema,
    )
    op.execute(sa.text(FUNCTIONS.format(**fmt)))


def key_regex_sql(schema: str) -> str:
    """The generated column's expression (sqlq/schema.py declares the same)."""
    return f'"{schema}".topic_regex(binding_key)'


def downgrade() -> None:
    schema = _schema()
    for signature in DROP_FUNCTIONS[:4]:
        op.execute(f'DROP FUNCTION IF EXISTS "{schema}".{signature}')
    op.drop_table("bindings", schema=schema)
    op.drop_table("exchanges", schema=schema)
    for signature in DROP_FUNCTIONS[4:]:
        op.execute(f'DROP FUNCTION IF EXISTS "{schema}".{signature}')
