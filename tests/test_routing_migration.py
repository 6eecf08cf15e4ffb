"""Migration 0002: the routing tables match sqlq/schema.py, and it downgrades and upgrades cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sqlq import migrate
from sqlq.schema import build_metadata

ROUTING_TABLES = {"exchanges", "bindings"}
SQL_API = {"topic_regex", "topic_matches", "route_queues", "insert_jobs", "enqueue", "publish"}


def _functions(raw_conn, schema: str) -> dict[str, str]:
    rows = raw_conn.execute(
        "SELECT p.proname, p.provolatile FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s", [schema]).fetchall()
    return dict(rows)


def _tables(raw_conn, schema: str) -> set[str]:
    rows = raw_conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                            [schema]).fetchall()
    return {r[0] for r in rows}


def test_routing_tables_match_schema_py(app):
    schema = app.conf.schema
    with app.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "compare_type": True, "compare_server_default": True, "include_schemas": True,
            "include_name": lambda name, kind, parent: name == schema if kind == "schema" else True,
        })
        diffs = compare_metadata(ctx, build_metadata(schema))
    assert [d for d in diffs if any(t in repr(d) for t in ROUTING_TABLES)] == []


def test_sql_functions_exist_with_the_right_volatility(app, raw_conn):
    functions = _functions(raw_conn, app.conf.schema)
    assert SQL_API <= set(functions)
    assert functions["topic_regex"] == functions["topic_matches"] == "i"  # immutable: usable in indexes
    assert functions["route_queues"] == "s"


def test_downgrade_to_0001_and_upgrade_again(app, raw_conn):
    schema = app.conf.schema
    migrate.downgrade(app.engine, schema, "0001")
    assert not ROUTING_TABLES & _tables(raw_conn, schema)
    assert not SQL_API & set(_functions(raw_conn, schema))
    app.migrate()
    assert ROUTING_TABLES <= _tables(raw_conn, schema)
    assert raw_conn.execute(f'SELECT "{schema}".topic_matches(%s, %s)', ["a.#", "a.b.c"]).fetchone()[0] is True


def test_offline_sql_keeps_function_bodies_intact(database_url):
    """DBAs who apply `sqlq migrate --sql` get the same regex and RAISE text (no escaping damage)."""
    text = migrate.upgrade_sql(database_url, "offline_check")
    assert r"'(?:\.[^.]*)*'" in text
    assert r"regexp_replace(w, '([.^$*+?()[\]{}|\\])', '\\\1', 'g')" in text
    assert "RAISE EXCEPTION 'sqlq: unknown exchange %'" in text and "%%" not in text
    assert 'CREATE FUNCTION "offline_check".publish(' in text
