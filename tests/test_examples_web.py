"""examples/fastapi_app and examples/flask_app as written: a request's row and its job commit
together (a worker runs the job), a failed request leaves neither; on the test's own schema."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import psycopg
import pytest

from sqlq import App
from tests.apps.harness import scalar, wait_for

pytest.importorskip("fastapi")
pytest.importorskip("flask")


def counts(conn: psycopg.Connection, schema: str) -> tuple[int, int, int]:
    """(signups, waiting jobs, results) in the test's schema."""
    return (scalar(conn, f'SELECT count(*) FROM "{schema}".signups'),
            scalar(conn, f'SELECT count(*) FROM "{schema}".jobs'),
            scalar(conn, f'SELECT count(*) FROM "{schema}".results'))


@pytest.fixture
def example(schema: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The example's web module, imported afresh for this schema, with its sqlq app."""
    monkeypatch.setenv("APP_DB_SCHEMA", schema)
    tasks = importlib.import_module(f"examples.{request.param}.tasks")
    tasks.app.close()  # (forget a previous test's schema)
    module = importlib.reload(importlib.import_module(f"examples.{request.param}.{_web[request.param]}"))
    yield module
    tasks.app.close()


_web = {"fastapi_app": "main", "flask_app": "app"}


@pytest.mark.parametrize("example", ["fastapi_app"], indirect=True)
def test_fastapi_signup_and_job_share_the_request_transaction(example: ModuleType, run_worker,
                                                              raw_conn: psycopg.Connection, schema: str) -> None:
    from fastapi.testclient import TestClient

    with TestClient(example.api) as client:
        refused = client.post("/signups", json={"email": "taken@example.com", "fail": True})
        assert refused.status_code == 409
        assert counts(raw_conn, schema) == (0, 0, 0)  # rolled back: no row, no job
        made = client.post("/signups", json={"email": "ann@example.com"})
        assert made.status_code == 201, made.text
        body = made.json()
        assert counts(raw_conn, schema) == (1, 1, 0)  # committed before the response
        assert client.get(f"/jobs/{body['job']}").json() == {"state": "PENDING", "result": None}
        with run_worker(_sqlq_app(example)):
            done = wait_for(lambda: (s := client.get(f"/jobs/{body['job']}").json())["state"] == "SUCCESS" and s,
                            message="the welcome job to succeed")
    assert done["result"] == f"welcome mail for signup {body['signup']} sent to ann@example.com"


@pytest.mark.parametrize("example", ["flask_app"], indirect=True)
def test_flask_signup_and_job_share_the_request_transaction(example: ModuleType, run_worker,
                                                            raw_conn: psycopg.Connection, schema: str) -> None:
    client = example.create_app().test_client()
    refused = client.post("/signups", json={"email": "taken@example.com", "fail": True})
    assert refused.status_code == 409
    assert counts(raw_conn, schema) == (0, 0, 0)
    made = client.post("/signups", json={"email": "bob@example.com"})
    assert made.status_code == 201
    body = made.get_json()
    assert counts(raw_conn, schema) == (1, 1, 0)
    with run_worker(_sqlq_app(example)):
        done = wait_for(lambda: (s := client.get(f"/jobs/{body['job']}").get_json())["state"] == "SUCCESS" and s,
                        message="the welcome job to succeed")
    assert done["result"] == f"welcome mail for signup {body['signup']} sent to bob@example.com"


def _sqlq_app(example: ModuleType) -> App:
    return example.sqlq_app
