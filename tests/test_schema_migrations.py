"""The tables, their migrations, and what happens on a database never migrated."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from sqlq import App
from sqlq import migrate as sqlq_migrate
from sqlq.config import sqlalchemy_url
from sqlq.errors import SchemaNotMigratedError
from sqlq.schema import VERSION_TABLE, build_metadata
from sqlq.worker.worker import Worker


@pytest.fixture
def bare_app(schema: str, database_url: str) -> Iterator[App]:
    """An app whose schema was never migrated."""
    application = App("tests", database_url=database_url, schema=schema)
    yield application
    application.close()


@pytest.fixture
def other_schema(database_url: str) -> Iterator[str]:
    """A second schema standing in for the user's own application tables."""
    name = f"t_app_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _schema_diff(app: App) -> list:
    """What alembic's autogenerate finds different between the migrated schema and schema.py."""
    schema = app.conf.schema

    def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
        return name == schema if type_ == "schema" else True

    with app.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_schemas": True,
            "include_name": include_name,
            "compare_type": True,
            "version_table": VERSION_TABLE,
            "version_table_schema": schema,
        })
        return compare_metadata(ctx, build_metadata(schema))


def _tables(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                        (schema,)).fetchall()
    return {r[0] for r in rows}


# --- the migrated database is schema.py ---------------------------------------------------------

def test_migrated_database_equals_schema_py(app: App):
    assert _schema_diff(app) == []


def test_schema_comparison_sees_a_missing_index(app: App, raw_conn: psycopg.Connection):
    """The comparison above is not vacuous: drifting from schema.py is reported."""
    raw_conn.execute(f'DROP INDEX "{app.conf.schema}".jobs_scheduled')
    diff = _schema_diff(app)
    assert [d[0] for d in diff] == ["add_index"]
    assert diff[0][1].name == "jobs_scheduled"


def test_tables_live_in_the_configured_schema_only(app: App, raw_conn: psycopg.Connection):
    schema = app.conf.schema
    described = {t.name for t in build_metadata(schema).tables.values()}
    assert {"jobs", "results", "workers"} <= described
    assert _tables(raw_conn, schema) == described | {VERSION_TABLE}
    assert not {"jobs", "results", "workers", VERSION_TABLE} & _tables(raw_conn, "public")


def test_results_have_the_documented_columns(app: App, raw_conn: psycopg.Connection):
    cols = {r[0] for r in raw_conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'results'",
        (app.conf.schema,)).fetchall()}
    assert {"id", "task", "queue", "state", "args", "kwargs", "result", "exc_type", "exc_message",
            "traceback", "enqueued_at", "started_at", "finished_at", "attempts", "worker_id"} <= cols


def test_jobs_hold_only_unfinished_states_and_results_only_final_ones(app: App, raw_conn: psycopg.Connection):
    schema = app.conf.schema
    with pytest.raises(psycopg.errors.CheckViolation):
        raw_conn.execute(f"""INSERT INTO "{schema}".jobs (id, task, queue, state)
                             VALUES (gen_random_uuid(), 't', 'q', 'SUCCESS')""")
    with pytest.raises(psycopg.errors.CheckViolation):
        raw_conn.execute(f"""INSERT INTO "{schema}".results (id, task, queue, state)
                             VALUES (gen_random_uuid(), 't', 'q', 'running')""")


def test_migrate_twice_is_a_no_op(app: App):
    app.migrate()
    assert app.migration_status() == (sqlq_migrate.head_revision(), sqlq_migrate.head_revision())
    assert _schema_diff(app) == []


def test_migration_status_before_and_after(bare_app: App):
    head = sqlq_migrate.head_revision()
    assert bare_app.migration_status() == (None, head)
    bare_app.migrate()
    assert bare_app.migration_status() == (head, head)


def test_downgrade_to_base_and_back(app: App, raw_conn: psycopg.Connection):
    schema = app.conf.schema
    sqlq_migrate.downgrade(app.engine, schema, "base")
    assert _tables(raw_conn, schema) == {VERSION_TABLE}
    assert app.migration_status()[0] is None
    app.migrate()
    assert _schema_diff(app) == []


def test_own_version_table_leaves_the_apps_alembic_history_alone(
        schema: str, other_schema: str, database_url: str, raw_conn: psycopg.Connection,
        monkeypatch: pytest.MonkeyPatch):
    """An app with its own alembic history (alembic_version on its search_path) keeps it untouched."""
    raw_conn.execute(f'CREATE SCHEMA "{other_schema}"')
    raw_conn.execute(f'CREATE TABLE "{other_schema}".alembic_version (version_num varchar(32) PRIMARY KEY)')
    raw_conn.execute(f"INSERT INTO \"{other_schema}\".alembic_version VALUES ('abc123def456')")
    # the app's own schema comes first on the search path, where a naive alembic would look
    url = f"{database_url}?options=-csearch_path%3D{other_schema}"
    monkeypatch.delenv("SQLQ_DATABASE_URL")  # exported by the `schema` fixture; this test needs its own URL
    sqlq_app = App("tests", database_url=url, schema=schema)
    try:
        assert sqlq_app.database_url == url
        with sqlq_app.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW search_path").scalar() == other_schema
        sqlq_app.migrate()
        head = sqlq_migrate.head_revision()
        assert sqlq_app.migration_status() == (head, head)
    finally:
        sqlq_app.close()
    rows = raw_conn.execute(f'SELECT version_num FROM "{other_schema}".alembic_version').fetchall()
    assert rows == [("abc123def456",)]
    assert _tables(raw_conn, other_schema) == {"alembic_version"}
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:  # the app's alembic still sees its own revision
            assert MigrationContext.configure(conn).get_current_revision() == "abc123def456"
    finally:
        engine.dispose()


def test_upgrade_sql_applied_by_hand_equals_schema_py(bare_app: App, raw_conn: psycopg.Connection):
    """A DBA who runs the printed SQL gets the same database as app.migrate()."""
    text = sqlq_migrate.upgrade_sql(bare_app.database_url, bare_app.conf.schema)
    raw_conn.execute(text)
    assert bare_app.migration_status()[0] == sqlq_migrate.head_revision()
    assert _schema_diff(bare_app) == []


# --- an unmigrated database says what to do -----------------------------------------------------

def _assert_says_migrate(excinfo: pytest.ExceptionInfo, schema: str) -> None:
    message = str(excinfo.value)
    assert "sqlq migrate" in message and schema in message


def test_delay_on_unmigrated_database(bare_app: App, raw_conn: psycopg.Connection):
    add = bare_app.task(name="tests.add")(lambda x, y: x + y)
    with pytest.raises(SchemaNotMigratedError) as excinfo:
        add.delay(1, 2)
    _assert_says_migrate(excinfo, bare_app.conf.schema)


def test_delay_in_callers_transaction_on_unmigrated_database(bare_app: App):
    add = bare_app.task(name="tests.add")(lambda x, y: x + y)
    with bare_app.engine.connect() as conn, pytest.raises(SchemaNotMigratedError) as excinfo:
        add.delay_many([(1, 2), (3, 4)], connection=conn)
    _assert_says_migrate(excinfo, bare_app.conf.schema)


async def test_adelay_on_unmigrated_database(bare_app: App):
    add = bare_app.task(name="tests.add")(lambda x, y: x + y)
    with pytest.raises(SchemaNotMigratedError) as excinfo:
        await add.adelay(1, 2)
    _assert_says_migrate(excinfo, bare_app.conf.schema)


def test_result_state_on_unmigrated_database(bare_app: App):
    with pytest.raises(SchemaNotMigratedError) as excinfo:
        _ = bare_app.AsyncResult(str(uuid.uuid4())).state
    _assert_says_migrate(excinfo, bare_app.conf.schema)


def test_worker_start_on_unmigrated_database(bare_app: App):
    """With database_wait_timeout=0 a worker does not wait for migrations: it refuses to start and
    says to migrate (by default it waits for them: tests/test_database_outages.py)."""
    bare_app.conf.database_wait_timeout = 0
    worker = Worker(bare_app, pool="threads", concurrency=1)
    with pytest.raises(SchemaNotMigratedError) as excinfo:
        worker.run()
    _assert_says_migrate(excinfo, bare_app.conf.schema)
