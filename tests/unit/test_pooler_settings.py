"""The settings for running behind a transaction pooler (README "PgBouncer"), without a server:
``listen_database_url`` and ``database_prepared_statements``, from code and from the environment."""

from __future__ import annotations

import pytest

from sqlq import App
from sqlq.errors import DatabaseURLError

POOLER = "postgresql://app@pgbouncer:6432/mydb"
DIRECT = "postgresql://app@db:5432/mydb"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("SQLQ_DATABASE_URL", "DATABASE_URL", "SQLQ_LISTEN_DATABASE_URL", "SQLQ_DATABASE_PREPARED_STATEMENTS"):
        monkeypatch.delenv(key, raising=False)


def test_unset_listen_goes_where_everything_goes_and_nothing_is_taken_for_a_pooler():
    app = App("proj", database_url=DIRECT)
    assert app.listen_database_url == DIRECT
    assert not app.pooled
    assert app.conf.database_prepared_statements is True


def test_listen_database_url_from_code_or_environment_marks_database_url_a_pooler(monkeypatch: pytest.MonkeyPatch):
    app = App("proj", database_url=POOLER, listen_database_url=DIRECT)
    assert (app.database_url, app.listen_database_url, app.pooled) == (POOLER, DIRECT, True)
    monkeypatch.setenv("SQLQ_LISTEN_DATABASE_URL", "postgresql://app@other:5432/mydb")
    other = App("proj", database_url=POOLER)
    assert other.listen_database_url == "postgresql://app@other:5432/mydb" and other.pooled


@pytest.mark.parametrize(("raw", "expected"), [("0", False), ("false", False), ("1", True), ("true", True)])
def test_prepared_statements_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool):
    monkeypatch.setenv("SQLQ_DATABASE_PREPARED_STATEMENTS", raw)
    assert App("proj", database_url=DIRECT).conf.database_prepared_statements is expected


def test_a_listen_url_that_cannot_work_is_refused_when_given(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(DatabaseURLError, match="unsupported database URL scheme 'redis'"):
        App("proj", database_url=DIRECT, listen_database_url="redis://localhost:6379/0")
    monkeypatch.setenv("SQLQ_LISTEN_DATABASE_URL", "postgresql://host:5432")
    app = App("proj", database_url=DIRECT)
    with pytest.raises(DatabaseURLError, match="names no database"):
        app.listen_database_url  # noqa: B018 - the read is what fails
