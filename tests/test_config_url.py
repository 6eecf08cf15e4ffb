"""Database URLs against a real server: every accepted spelling connects, and a server that cannot be
used (unreachable, no such database or role) reads as one line saying what is wrong
(DatabaseUnavailableError), on every way in. Precedence, spellings and URL errors without a server:
tests/unit/test_config_url.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from sqlq import App
from sqlq.config import libpq_url
from sqlq.db import connect, explain_connection_error
from sqlq.errors import DatabaseUnavailableError


def _other_url(database_url: str, **parts) -> str:
    """The test server's URL with some parts replaced (port, database, user, scheme...)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(**parts)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def url_app(schema: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[App]]:
    """Apps a test makes by URL; closed (and their schema dropped by `schema`) afterwards.

    `schema` exports SQLQ_DATABASE_URL for subprocesses; it is removed again so the URL under
    test is the one the app is given."""
    for key in ("SQLQ_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    made: list[App] = []
    yield made
    for application in made:
        application.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


# --- spellings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_each_spelling_really_works(scheme, url_app, database_url, schema):
    app = App("tests", database_url=_other_url(database_url, drivername=scheme), schema=schema)
    url_app.append(app)
    assert app.database_url.startswith(f"{scheme}://")
    app.migrate()  # the SQLAlchemy engine
    add = app.task(name="tests.add")(lambda x, y: x + y)
    assert add.delay(1, 2).state == "PENDING"  # the psycopg pool


# --- servers that cannot be used ----------------------------------------------------------------

def test_unreachable_server(database_url):
    url = _other_url(database_url, port=1, password="hunter2")
    with pytest.raises(DatabaseUnavailableError) as excinfo:
        connect(url)
    text = _one_line(excinfo.value)
    assert text.startswith("cannot reach PostgreSQL at ") and "is the server running" in text
    assert "hunter2" not in text and ":***@" in text


def test_missing_database(database_url):
    url = _other_url(database_url, database=f"no_such_db_{uuid.uuid4().hex[:8]}")
    with pytest.raises(DatabaseUnavailableError) as excinfo:
        connect(url)
    assert "does not exist; create it (createdb NAME)" in _one_line(excinfo.value)


def test_missing_role(database_url):
    url = _other_url(database_url, username=f"no_such_role_{uuid.uuid4().hex[:8]}")
    with pytest.raises(DatabaseUnavailableError) as excinfo:
        connect(url)
    assert "user named in" in _one_line(excinfo.value) and "create the role or fix the URL" in str(excinfo.value)


def test_explaining_errors_raised_by_psycopg_itself(database_url):
    url = _other_url(database_url, port=1)
    with pytest.raises(psycopg.OperationalError) as raw:
        psycopg.connect(libpq_url(url), connect_timeout=10)
    assert "\n" in str(raw.value)  # libpq's own message spans several lines...
    text = _one_line(explain_connection_error(url, raw.value))  # ...ours does not
    assert "cannot reach PostgreSQL" in text and "Connection refused" in text


def test_every_way_in_reports_an_unreachable_server(url_app, database_url, schema):
    app = App("tests", database_url=_other_url(database_url, port=1), schema=schema)
    url_app.append(app)
    add = app.task(name="tests.add")(lambda x, y: x + y)
    for attempt in (app.migrate, app.migration_status, lambda: add.delay(1, 2),
                    lambda: app.AsyncResult(str(uuid.uuid4())).state):
        with pytest.raises(DatabaseUnavailableError, match="cannot reach PostgreSQL"):
            attempt()


async def test_async_way_in_reports_a_missing_database(url_app, database_url, schema):
    app = App("tests", database_url=_other_url(database_url, database="no_such_db_async"), schema=schema)
    url_app.append(app)
    add = app.task(name="tests.add")(lambda x, y: x + y)
    with pytest.raises(DatabaseUnavailableError, match="does not exist"):
        await add.adelay(1, 2)
