"""Bad input at the edges gets one clear error and changes nothing.

NaN/Infinity (and NUL) in a call's arguments are refused before the database sees them; a task id
that is not a UUID, at the API or the CLI, is one line, never a raw psycopg error; ``sqlq purge``
validates its queue name; ``AsyncResult.get()`` never imports a module a row names.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from sqlq.cli import main
from sqlq.errors import SerializationError, TaskError
from sqlq.errors import TimeoutError as SqlqTimeoutError
from tests.apps.harness import ROOT, scalar


@pytest.fixture
def add(app):
    @app.task(name="bad_input.add")
    def add(x, y=0):
        return x + y

    return add


@pytest.mark.parametrize("call, names", [
    (lambda t: t.delay(math.nan), "positional argument 0 (float)"),
    (lambda t: t.delay(1, y=[1.0, math.inf]), "keyword argument 'y' (list)"),
    (lambda t: t.apply_async((1,), {"y": {"deep": -math.inf}}, countdown=10), "keyword argument 'y' (dict)"),
    (lambda t: t.delay_many([(1,), (math.nan,)]), "positional argument 0 (float)"),
    (lambda t: t.delay("NUL \x00 inside"), "positional argument 0 (str)"),
])
def test_unstorable_arguments_are_refused_naming_the_argument(app, add, raw_conn, schema, call, names):
    """NaN, ±Infinity and NUL in arguments: SerializationError naming the argument and the value's
    kind, and no row is written."""
    with pytest.raises(SerializationError) as caught:
        call(add)
    message = str(caught.value)
    assert names in message
    assert any(word in message for word in ("NaN", "Infinity", "NUL"))
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 0


def test_a_refused_argument_leaves_the_callers_transaction_usable(app, add, database_url, raw_conn, schema):
    """On the caller's own connection the refusal happens before any SQL, so the transaction is not
    aborted: the caller's earlier and later writes commit, with the other job."""
    table = sql.Identifier(schema, "mine")
    raw_conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(table))
    with psycopg.connect(database_url) as conn:
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
        with pytest.raises(SerializationError, match="NaN"):
            add.apply_async((math.nan,), connection=conn)
        conn.execute(sql.SQL("INSERT INTO {} VALUES (2)").format(table))
        kept = add.apply_async((1,), connection=conn)
        conn.commit()
    assert scalar(raw_conn, "SELECT array_agg(x ORDER BY x) FROM {s}.mine", schema=schema) == [1, 2]
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs WHERE id = %s", kept.id, schema=schema) == 1


@pytest.mark.parametrize("use", ["state", "get", "forget", "revoke"])
def test_a_task_id_that_is_not_a_uuid_never_reaches_postgresql_raw(app, use):
    """Any string is a task id, as in Celery (tests/test_task_ids.py): a handle on one that no job
    has is an unknown id like any other (PENDING), never a raw psycopg error."""
    handle = app.AsyncResult("not-a-uuid")
    assert handle.id == "not-a-uuid"
    if use == "state":
        assert handle.state == "PENDING"
    elif use == "get":
        with pytest.raises(SqlqTimeoutError, match="not-a-uuid"):
            handle.get(timeout=0.2)
    elif use == "revoke":
        assert handle.revoke() is False
    else:
        handle.forget()
        assert handle.state == "PENDING"


def test_sqlq_result_with_an_id_no_job_has(schema):
    """`sqlq result <any string>`: an id no job has reads PENDING, as a UUID nobody used does."""
    subprocess.run([sys.executable, "-m", "sqlq", "migrate"], cwd=ROOT, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "sqlq", "result", "12-not-a-uuid"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"id": "12-not-a-uuid", "state": "PENDING"}


def test_sqlq_purge_validates_the_queue_name(app, add, raw_conn, schema):
    """`sqlq purge -Q <bad name>` fails like every other command given a bad queue name, and
    deletes nothing."""
    add.delay(1)
    result = CliRunner().invoke(main, ["purge", "-Q", "no spaces; allowed", "-f"])
    assert result.exit_code == 1
    assert "invalid queue name 'no spaces; allowed'" in result.output
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.jobs", schema=schema) == 1


# --- exceptions are rebuilt only from what the client already has ---------------------------------

def _failed_row(raw_conn: psycopg.Connection, schema: str, exc_type: str) -> str:
    job_id = str(uuid.uuid4())
    raw_conn.execute(sql.SQL(
        "INSERT INTO {}.results (id, task, queue, state, exc_type, exc_message, traceback) "
        "VALUES (%s, 'x', 'default', 'FAILURE', %s, 'remote message', 'remote traceback')"
    ).format(sql.Identifier(schema)), (job_id, exc_type))
    return job_id


def test_get_never_imports_the_module_a_row_names(app, raw_conn, schema, tmp_path, monkeypatch):
    """A results row naming ``planted.Boom`` (a module on the path, not imported): get() raises
    TaskError with the remote type, message and traceback, and the module's code never runs."""
    marker = tmp_path / "imported"
    (tmp_path / "planted.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Boom(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "planted", raising=False)
    job_id = _failed_row(raw_conn, schema, "planted.Boom")
    with pytest.raises(TaskError) as caught:
        app.AsyncResult(job_id).get(timeout=5)
    error = caught.value
    assert (error.exc_type, error.exc_message, error.remote_traceback) == (
        "planted.Boom", "remote message", "remote traceback")
    assert not marker.exists() and "planted" not in sys.modules


@pytest.mark.parametrize("exc_type, expected", [
    ("KeyError", KeyError),
    ("sqlq.errors.TaskRevokedError", __import__("sqlq.errors").errors.TaskRevokedError),
    ("decimal.InvalidOperation", __import__("decimal").InvalidOperation),
])
def test_get_rebuilds_builtins_sqlq_errors_and_classes_already_imported(app, raw_conn, schema, exc_type, expected):
    """The type is rebuilt when the client already has it: a builtin, sqlq's own, or a class of a
    module in sys.modules; the remote traceback rides along."""
    job_id = _failed_row(raw_conn, schema, exc_type)
    with pytest.raises(expected) as caught:
        app.AsyncResult(job_id).get(timeout=5)
    assert caught.value.remote_traceback == "remote traceback"


def test_nan_in_headers_is_refused_before_the_database_sees_it(app):
    """Headers are JSON too: a NaN there is a SerializationError naming it, and nothing is written."""
    from sqlq.errors import SerializationError

    @app.task
    def noop() -> None:
        return None

    with pytest.raises(SerializationError, match="headers must be JSON-serializable.*NaN"):
        noop.apply_async(headers={"ratio": float("nan")})
    with app.connection() as conn:
        assert conn.execute(f'SELECT count(*) FROM "{app.conf.schema}".jobs').fetchone()[0] == 0
