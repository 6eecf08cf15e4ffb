"""The admin pages over sqlq's tables (sqlq.contrib.django.admin): read-only lists and details
(a failure's traceback), and the actions retry, revoke, run now, pause/resume, on a real worker's
rows. Runs in .venv-django (make test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

pytest.importorskip("django", minversion="6.0")

from sqlq import App  # noqa: E402
from sqlq.periodic import definitions  # noqa: E402
from tests.apps import django_project  # noqa: E402
from tests.apps.harness import job_row, result_row, scalar, wait_for, wait_result  # noqa: E402


@pytest.fixture
def proj_app(database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """The project's app on this test's schema, and the admin's models pointed at it (their
    schema is read once, when Django loads them)."""
    django_project.setup(database_url)
    from proj.celery import app

    from sqlq.contrib.django import models

    app.close()
    app.migrate()
    tables = ((models.Job, "jobs"), (models.Result, "results"), (models.Worker, "workers"),
              (models.Schedule, "schedules"))
    for model, table in tables:
        monkeypatch.setattr(model._meta, "db_table", f'{schema}"."{table}')
        _forget_columns(model)
    yield app
    app.close()
    monkeypatch.undo()
    for model, _ in tables:
        _forget_columns(model)


def _forget_columns(model: Any) -> None:
    """Django caches each field's column reference, table name included (Field.cached_col)."""
    for field in model._meta.concrete_fields:
        field.__dict__.pop("cached_col", None)


@pytest.fixture
def admin_client(proj_app: App) -> Any:
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser(f"admin-{uuid.uuid4().hex[:8]}", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def act(client: Any, model: str, action: str, *ids: str) -> str:
    """Run an admin action on the changelist of ``model``; the page it led to (with its messages)."""
    response = client.post(f"/admin/sqlq/{model}/", {"action": action, "_selected_action": list(ids)}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_results_page_shows_a_failure_with_its_traceback_and_retry_enqueues_it_again(
        proj_app: App, admin_client: Any, run_worker, raw_conn: psycopg.Connection, schema: str) -> None:
    from orders.tasks import ship_order

    failed = ship_order.delay(999)  # no such order
    with run_worker(proj_app):
        wait_result(raw_conn, schema, failed.id)
    listing = admin_client.get("/admin/sqlq/result/")
    assert listing.status_code == 200
    assert failed.id in listing.content.decode() and "FAILURE" in listing.content.decode()
    detail = admin_client.get(f"/admin/sqlq/result/{failed.id}/change/").content.decode()
    assert "Order matching query does not exist" in detail and "Order.objects.get(pk=order_id)" in detail
    assert "1 job(s) enqueued again" in act(admin_client, "result", "retry", failed.id)
    again = raw_conn.execute(f'SELECT task, args::text, state FROM "{schema}".jobs').fetchall()
    assert again == [("orders.tasks.ship_order", "[999]", "available")]
    assert result_row(raw_conn, schema, failed.id)["state"] == "FAILURE"  # the finished row is kept


def test_jobs_page_run_now_and_revoke(proj_app: App, admin_client: Any, raw_conn: psycopg.Connection,
                                      schema: str) -> None:
    from orders.tasks import ship_order

    later = ship_order.apply_async((1,), countdown=3600)
    other = ship_order.apply_async((2,), countdown=3600)
    page = admin_client.get("/admin/sqlq/job/?state=scheduled").content.decode()
    assert later.id in page and other.id in page
    assert "1 scheduled job(s) made due now" in act(admin_client, "job", "run_now", later.id)
    assert job_row(raw_conn, schema, later.id)["state"] == "available"
    assert job_row(raw_conn, schema, other.id)["state"] == "scheduled"
    assert "2 job(s) revoked" in act(admin_client, "job", "revoke", later.id, other.id)
    assert scalar(raw_conn, f'SELECT count(*) FROM "{schema}".results WHERE state = %s', "REVOKED") == 2


def test_workers_page_lists_a_running_worker(proj_app: App, admin_client: Any, run_worker,
                                             raw_conn: psycopg.Connection, schema: str) -> None:
    with run_worker(proj_app, pool="threads", concurrency=3):
        hostname = wait_for(lambda: scalar(raw_conn, f'SELECT hostname FROM "{schema}".workers'),
                            message="the worker's row")
        page = admin_client.get("/admin/sqlq/worker/").content.decode()
    assert "threads" in page and hostname in page


def test_schedules_page_pause_resume_and_run_now(proj_app: App, admin_client: Any, raw_conn: psycopg.Connection,
                                                 schema: str) -> None:
    definitions.add_schedule(proj_app, "nightly-ship", "orders.tasks.ship_order", 3600.0, args=[5])
    assert "nightly-ship" in admin_client.get("/admin/sqlq/schedule/").content.decode()
    assert "1 schedule(s) paused" in act(admin_client, "schedule", "pause", "nightly-ship")
    assert scalar(raw_conn, f'SELECT enabled FROM "{schema}".schedules') is False
    assert "1 schedule(s) resumed" in act(admin_client, "schedule", "resume", "nightly-ship")
    assert scalar(raw_conn, f'SELECT enabled FROM "{schema}".schedules') is True
    assert "1 schedule(s) sent" in act(admin_client, "schedule", "run_now", "nightly-ship")
    assert raw_conn.execute(f'SELECT task, args::text FROM "{schema}".jobs').fetchall() == [
        ("orders.tasks.ship_order", "[5]")]


@pytest.mark.parametrize("model", ["job", "result", "worker", "schedule"])
def test_pages_are_read_only(admin_client: Any, model: str) -> None:
    assert admin_client.get(f"/admin/sqlq/{model}/").status_code == 200
    assert admin_client.get(f"/admin/sqlq/{model}/add/").status_code == 403
