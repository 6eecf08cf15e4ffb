"""Where the database URL comes from (argument, conf, SQLQ_DATABASE_URL, DATABASE_URL, --database-url), which
spellings are accepted, and how a URL or a connection error reads: one line saying what is wrong."""

from __future__ import annotations

import psycopg
import pytest

from sqlq import App
from sqlq.config import libpq_url, resolve_database_url, sqlalchemy_url
from sqlq.db import explain_connection_error
from sqlq.errors import DatabaseUnavailableError, DatabaseURLError

CLI, SQLQ_ENV, ENV, APP = ("postgresql://cli@h/db", "postgresql://sqlq-env@h/db",
                          "postgresql://env@h/db", "postgresql://app@h/db")


@pytest.fixture
def no_url_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("SQLQ_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SQLQ_SCHEMA", raising=False)
    return monkeypatch


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(("cli", "environ", "app_url", "expected"), [
    (CLI, {"SQLQ_DATABASE_URL": SQLQ_ENV, "DATABASE_URL": ENV}, APP, CLI),
    (None, {"SQLQ_DATABASE_URL": SQLQ_ENV, "DATABASE_URL": ENV}, APP, SQLQ_ENV),
    (None, {"DATABASE_URL": ENV}, APP, ENV),
    (None, {}, APP, APP),
    (None, {"SQLQ_DATABASE_URL": "", "DATABASE_URL": ""}, APP, APP),  # empty means unset
    (None, {}, None, None),
])
def test_resolve_database_url_precedence(cli, environ, app_url, expected):
    assert resolve_database_url(cli, app_url, environ) == expected


def test_resolve_database_url_reads_the_process_environment(no_url_env):
    no_url_env.setenv("DATABASE_URL", ENV)
    assert resolve_database_url(None, APP) == ENV
    no_url_env.setenv("SQLQ_DATABASE_URL", SQLQ_ENV)
    assert resolve_database_url(None, APP) == SQLQ_ENV


def test_app_database_url_precedence(no_url_env):
    assert App("proj", database_url=APP).database_url == APP
    no_url_env.setenv("DATABASE_URL", ENV)
    assert App("proj", database_url=APP).database_url == ENV
    no_url_env.setenv("SQLQ_DATABASE_URL", SQLQ_ENV)
    app = App("proj", database_url=APP)
    assert app.database_url == SQLQ_ENV
    app.set_database_url(CLI)  # --database-url beats everything, even after a first resolution
    assert app.database_url == CLI
    app.set_database_url(None)
    assert app.database_url == SQLQ_ENV


def test_app_setting_may_come_from_conf(no_url_env):
    app = App("proj")
    app.conf.database_url = APP
    assert app.database_url == APP


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_accepted_spellings_normalise(scheme):
    url = f"{scheme}://bob:s3cret@db.example.com:6543/prod?sslmode=require"
    assert sqlalchemy_url(url) == "postgresql+psycopg://bob:s3cret@db.example.com:6543/prod?sslmode=require"
    assert libpq_url(url) == "postgresql://bob:s3cret@db.example.com:6543/prod?sslmode=require"


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://bob:hunter2@h/db", "unsupported database URL scheme 'mysql'"),
    ("sqlite:///local.db", "unsupported database URL scheme 'sqlite'"),
    ("not a url", "cannot parse database URL 'not a url'"),
    ("postgresql://bob:hunter2@h:notaport/db", "cannot parse database URL"),
    ("postgresql://bob:hunter2@h:5432", "names no database"),
    ("", "the database URL is empty"),
])
def test_bad_urls_are_one_clear_line(url, says, no_url_env):
    with pytest.raises(DatabaseURLError) as excinfo:
        sqlalchemy_url(url)
    text = _one_line(excinfo.value)
    assert says in text and "hunter2" not in text
    if url:
        with pytest.raises(DatabaseURLError, match=says):
            _ = App("proj", database_url=url).database_url


@pytest.mark.parametrize("libpq_message", [
    'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  password '
    'authentication failed for user "bob"',
    'connection failed: connection to server at "10.0.0.5", port 5432 failed: fe_sendauth: no password supplied',
])
def test_wrong_password(libpq_message):
    # the local server trusts every login, so libpq's exact wording stands in for the real thing
    err = explain_connection_error("postgresql://bob:hunter2@10.0.0.5/db", psycopg.OperationalError(libpq_message))
    text = _one_line(err)
    assert isinstance(err, DatabaseUnavailableError)
    assert "rejected the login (wrong user or password)" in text and "hunter2" not in text


def test_unrecognised_errors_keep_libpq_first_line():
    err = explain_connection_error("postgresql://h/db", psycopg.OperationalError("SSL error: bad record\nmore"))
    assert _one_line(err) == "cannot connect to PostgreSQL at postgresql://h/db: SSL error: bad record"
