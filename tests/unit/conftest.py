"""The unit tier: pure logic that runs without PostgreSQL (``make test-unit``, seconds).

Every test under tests/unit/ is marked ``unit`` (``pytest -m unit`` selects them; ``-m 'not unit'``
the rest). A unit test that asks for the database, or that opens a PostgreSQL connection by any
other way, fails with a message saying so: such a test belongs in tests/, next to the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlq import App
from sqlq.current import get_current_app, set_current_app

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def database_url() -> str:
    pytest.fail("a unit test may not use the database: move it to tests/, out of tests/unit/")


@pytest.fixture(autouse=True)
def _no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a PostgreSQL connection (psycopg's sync or async way) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a unit test opened a PostgreSQL connection: move it to tests/, out of tests/unit/")

    async def refuse_async(*args, **kwargs):
        refuse()

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", refuse)
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refuse_async)


@pytest.fixture
def app() -> Iterator[App]:
    """A fresh ``App("proj")``, current for the test (the app current before is current again after),
    for what needs an app but no database: signatures, eager calls, groups."""
    previous = get_current_app()
    application = App("proj")
    yield application
    set_current_app(previous)
