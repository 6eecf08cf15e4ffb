"""Store methods that replaced SQL run elsewhere: the claiming session (once executed by the worker
itself) and the embedded database's set-up statements (once in sqlq/embedded.py)."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from sqlq import App
from sqlq.errors import TaskRevokedError
from sqlq.result import rebuild_exception
from sqlq.store import server

_SESSION = ("SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode'), "
            "current_setting('enable_seqscan'), current_setting('enable_sort')")


def test_the_claiming_session_begins_and_ends_with_the_servers_settings(app: App):
    with app.connection() as conn:
        before = conn.execute(_SESSION).fetchone()
        app.store.begin_claiming(conn)
        assert conn.execute(_SESSION).fetchone() == ("off", "force_generic_plan", "off", "off")
        app.store.end_claiming(conn)
        assert conn.execute(_SESSION).fetchone() == before == ("on", "auto", "on", "on")


def test_a_claiming_session_that_cannot_end_closes_its_connection(app: App, database_url: str):
    with psycopg.connect(database_url, autocommit=True) as conn:
        app.store.begin_claiming(conn)
        conn.pgconn.finish()  # the connection breaks while claiming
        app.store.end_claiming(conn)  # no error: the connection is closed instead
        assert conn.closed


def test_a_revoked_job_records_the_dotted_name_of_its_exception(app: App, raw_conn: psycopg.Connection, schema: str):
    job = app.task(name="store.noop")(lambda: None).delay()
    assert job.revoke()
    exc_type, message = raw_conn.execute(
        sql.SQL("SELECT exc_type, exc_message FROM {} WHERE id = %s").format(sql.Identifier(schema, "results")),
        (job.id,)).fetchone()
    assert exc_type == "sqlq.errors.TaskRevokedError"
    assert isinstance(rebuild_exception(exc_type, message, None), TaskRevokedError)


def test_ensure_database_creates_it_once(database_url: str):
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            server.ping(conn)
            server.ensure_database(conn, name)
            server.ensure_database(conn, name)  # already there: nothing to do
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 1
        finally:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
