"""sqlq in a Django project (sqlq.contrib.django), on the example project in Celery's layout
(examples/django_project): settings by namespace, autodiscovery over INSTALLED_APPS, the database
URL from DATABASES, jobs in Django's transactions, on_commit sends, ``manage.py sqlq``.

Django 6 needs Python 3.12: these tests run in .venv-django (make test runs them there)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

pytest.importorskip("django", minversion="6.0")

from sqlq import App  # noqa: E402
from sqlq.errors import ConfigurationError  # noqa: E402
from tests.apps import django_project  # noqa: E402
from tests.apps.harness import scalar, wait_for, wait_result  # noqa: E402


@pytest.fixture
def project(database_url: str) -> str:
    """The example project, set up in this process; the schema of its own tables."""
    return django_project.setup(database_url)


@pytest.fixture
def proj_app(project: str, schema: str) -> Iterator[App]:
    """The project's app (proj/celery.py), on this test's sqlq schema, migrated."""
    from proj.celery import app

    app.close()  # (forget the previous test's schema and connections)
    app.migrate()
    yield app
    app.close()


def jobs_of(conn: psycopg.Connection, schema: str) -> int:
    return scalar(conn, f'SELECT count(*) FROM "{schema}".jobs')


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=django_project.PROJECT)


# configuration ---------------------------------------------------------------------------------

def test_settings_come_from_django_settings_by_namespace(proj_app: App) -> None:
    """proj/celery.py's config_from_object('django.conf:settings', namespace='CELERY')."""
    assert proj_app.conf.task_time_limit == 30 * 60  # CELERY_TASK_TIME_LIMIT
    assert proj_app.conf.task_track_started is True
    assert proj_app.conf.timezone == "UTC"


def test_sqlq_namespace_reads_sqlq_settings(project: str, schema: str) -> None:
    from django.test import override_settings

    with override_settings(SQLQ_DEFAULT_QUEUE="web", SQLQ_TASK_DEFAULT_PRIORITY=5, CELERY_DEFAULT_QUEUE="no"):
        app = App("ns", set_as_current=False)
        app.config_from_object("django.conf:settings", namespace="SQLQ")
    assert app.conf.default_queue == "web"
    assert app.conf.task_default_priority == 5


def test_database_url_defaults_to_django_default_database(project: str, schema: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQLQ_DATABASE_URL")
    app = App("dj", set_as_current=False)
    try:
        assert app.database_url == (f"postgresql://postgres@127.0.0.1:5432/test"
                                    f"?options=-c%20search_path%3D{project}")
        app.migrate()  # the URL works: sqlq's tables made through it
        with app.connection() as conn:
            assert app.store.schema_revision(conn) is not None
    finally:
        app.close()


def test_database_url_from_django_entries() -> None:
    from sqlq.contrib.django.database import database_url

    assert database_url({"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "USER": "web",
                         "PASSWORD": "p@ss:word", "HOST": "db.internal", "PORT": 6432,
                         "OPTIONS": {"sslmode": "require", "server_side_binding": True}}) \
        == "postgresql://web:p%40ss%3Aword@db.internal:6432/shop?sslmode=require"
    assert database_url({"ENGINE": "django.contrib.gis.db.backends.postgis", "NAME": "geo",
                         "HOST": "/var/run/postgresql", "PORT": "5433"}) \
        == "postgresql:///geo?host=%2Fvar%2Frun%2Fpostgresql&port=5433"


def test_a_default_database_that_is_not_postgresql_is_an_error() -> None:
    from sqlq.contrib.django.database import database_url

    with pytest.raises(ConfigurationError, match=r"'django.db.backends.sqlite3'.*needs PostgreSQL.*SQLQ_DATABASE_URL"):
        database_url({"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"})


def test_system_checks_pass_and_makemigrations_has_nothing_to_do(proj_app: App) -> None:
    """sqlq's models are unmanaged and shipped with their migration, whose tables are the app's
    schema as the models' are: a project's `manage.py check` and `makemigrations --check` stay
    clean (an ArrayField would have required django.contrib.postgres in INSTALLED_APPS)."""
    from django.core.management import call_command

    call_command("check", fail_level="WARNING")
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # (exits 1 when a change is detected)


# autodiscovery -----------------------------------------------------------------------------------

def test_autodiscover_imports_installed_apps_tasks_at_finalize(database_url: str, schema: str, project: str) -> None:
    """Celery's layout in a fresh process: importing proj imports no tasks module; finalizing the
    app (what a worker does) sets Django up and imports every installed app's tasks.py."""
    env = django_project.environment(database_url, schema, project)
    env.pop("DJANGO_SETTINGS_MODULE")  # proj/celery.py sets it, as in Celery's guide
    done = run_python("""
        import sys
        import proj
        app = proj.celery_app
        assert "orders.tasks" not in sys.modules, "discovered too early"
        assert app.autodiscover_tasks() == []  # (another call: still lazy)
        app.finalize()
        from django.apps import apps
        assert apps.ready
        assert "orders.tasks" in sys.modules
        print(sorted(name for name in app.tasks if name.startswith("orders.")))
    """, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "['orders.tasks.send_receipt', 'orders.tasks.ship_order']"


def test_autodiscover_without_a_django_project_says_what_to_do(schema: str) -> None:
    done = run_python("""
        import os
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        from sqlq import App
        App("x").autodiscover_tasks()
    """, {k: v for k, v in __import__("os").environ.items() if k != "DJANGO_SETTINGS_MODULE"})
    assert done.returncode == 1
    assert "has no Django settings: set DJANGO_SETTINGS_MODULE" in done.stderr


# jobs in Django's transactions ---------------------------------------------------------------

def test_job_on_django_connection_commits_with_atomic(proj_app: App, raw_conn: psycopg.Connection,
                                                     schema: str) -> None:
    from django.db import connection, transaction
    from orders.models import Order
    from orders.tasks import ship_order

    with transaction.atomic():
        order = Order.objects.create(item="teapot")
        result = ship_order.apply_async((order.pk,), connection=connection)
        assert jobs_of(raw_conn, schema) == 0  # not committed yet: no one else sees it
    assert jobs_of(raw_conn, schema) == 1
    assert scalar(raw_conn, f'SELECT task FROM "{schema}".jobs WHERE id = %s', result.id) == "orders.tasks.ship_order"


def test_rolled_back_atomic_leaves_no_job(proj_app: App, raw_conn: psycopg.Connection, schema: str) -> None:
    from django.db import connection, transaction
    from orders.models import Order
    from orders.tasks import ship_order

    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(item="kettle")
        ship_order.apply_async((order.pk,), connection=connection)
        raise RuntimeError("payment declined")
    assert jobs_of(raw_conn, schema) == 0
    assert not Order.objects.filter(item="kettle").exists()


def test_django_connection_outside_atomic_commits_at_once(proj_app: App, raw_conn: psycopg.Connection,
                                                          schema: str) -> None:
    from django.db import connection
    from orders.tasks import ship_order

    ship_order.apply_async((1,), connection=connection)
    assert jobs_of(raw_conn, schema) == 1


def test_delay_on_commit_sends_after_the_commit_only(proj_app: App, raw_conn: psycopg.Connection,
                                                     schema: str) -> None:
    from django.db import connection, transaction
    from orders.tasks import ship_order

    with transaction.atomic():
        assert ship_order.delay_on_commit(1) is None
        ship_order.apply_async_on_commit((2,), priority=7)
        with connection.cursor() as cursor:  # not even in the transaction itself
            cursor.execute(f'SELECT count(*) FROM "{schema}".jobs')
            assert cursor.fetchone()[0] == 0
    assert scalar(raw_conn, f'SELECT array_agg(priority ORDER BY priority) FROM "{schema}".jobs') == [0, 7]
    with transaction.atomic():
        ship_order.delay_on_commit(3)
        transaction.set_rollback(True)
    assert jobs_of(raw_conn, schema) == 2


def test_apply_async_on_commit_checks_options_at_the_call(proj_app: App) -> None:
    from django.db import transaction
    from orders.tasks import ship_order

    with transaction.atomic(), pytest.raises(ConfigurationError, match="unknown option"):
        ship_order.apply_async_on_commit((1,), colour="red")


def test_view_creates_row_and_job_in_one_transaction(proj_app: App, run_worker, raw_conn: psycopg.Connection,
                                                     schema: str) -> None:
    """The example's view: the order and its job commit together and a worker ships it; a declined
    order leaves neither."""
    from django.test import Client
    from orders.models import Order

    client = Client()
    declined = client.post("/orders/", data={"item": "kettle", "fail": True}, content_type="application/json")
    assert declined.status_code == 402
    assert jobs_of(raw_conn, schema) == 0 and not Order.objects.filter(item="kettle").exists()
    placed = client.post("/orders/", data={"item": "teapot"}, content_type="application/json")
    assert placed.status_code == 201
    body = placed.json()
    with run_worker(proj_app, queues=["default", "emails"]):
        row = wait_result(raw_conn, schema, body["job"])
        assert row["state"] == "SUCCESS", row
        wait_result(raw_conn, schema, body["receipt"])
    status = client.get(f"/orders/{body['order']}/").json()
    assert status == {"order": body["order"], "status": "shipped", "tracking": f"TRACK-{body['order']:06d}"}


def test_an_eager_task_inside_atomic_keeps_the_request_transaction(proj_app: App,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's connection hygiene (close_old_connections around each task) skips eager runs:
    inside atomic() Django would take the open transaction for a connection to close."""
    from django.db import transaction
    from orders.models import Order
    from orders.tasks import ship_order

    monkeypatch.setattr(proj_app.conf, "task_always_eager", True)
    with transaction.atomic():
        order = Order.objects.create(item="eager")
        assert ship_order.delay(order.pk).get() == f"TRACK-{order.pk:06d}"
        assert Order.objects.get(pk=order.pk).status == "shipped"  # the same transaction, still open
    assert Order.objects.get(pk=order.pk).status == "shipped"


# manage.py sqlq ------------------------------------------------------------------------------

def test_manage_py_sqlq_passes_through_to_the_cli(database_url: str, schema: str, project: str,
                                                  raw_conn: psycopg.Connection) -> None:
    env = django_project.environment(database_url, schema, project)
    manage = [sys.executable, "manage.py", "sqlq"]
    migrated = subprocess.run([*manage, "migrate"], env=env, capture_output=True, text=True, timeout=120,
                              cwd=django_project.PROJECT)
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema {schema!r} migrated" in migrated.stdout + migrated.stderr
    sent = subprocess.run([*manage, "call", "orders.tasks.ship_order", "--args", "[999]"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=django_project.PROJECT)
    assert sent.returncode == 0, sent.stderr
    # a real worker through manage.py: the job fails (no order 999), recorded with its traceback
    worked = subprocess.run([*manage, "worker", "--pool", "threads", "--burst", "-l", "INFO"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=django_project.PROJECT)
    assert worked.returncode == 0, worked.stderr
    row = wait_for(lambda: raw_conn.execute(
        f'SELECT state, exc_type, traceback FROM "{schema}".results').fetchone(), message="the job's result")
    assert row[0] == "FAILURE" and row[1].endswith("DoesNotExist") and "Order.objects.get" in row[2]


def test_celerys_worker_command_with_the_name_changed(database_url: str, schema: str, project: str,
                                                      raw_conn: psycopg.Connection, proj_app: App) -> None:
    """`celery -A proj worker -l INFO` is `sqlq -A proj worker -l INFO`: -A proj finds proj/celery.py's
    app, which sets DJANGO_SETTINGS_MODULE itself; the worker sets Django up and ships the order."""
    from orders.models import Order
    from orders.tasks import ship_order

    order = Order.objects.create(item="lamp")
    result = ship_order.delay(order.pk)
    env = django_project.environment(database_url, schema, project)
    env.pop("DJANGO_SETTINGS_MODULE")
    sqlq = str(Path(sys.executable).with_name("sqlq"))
    worked = subprocess.run([sqlq, "-A", "proj", "worker", "-l", "INFO", "--pool", "threads", "--burst"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=django_project.PROJECT)
    assert worked.returncode == 0, worked.stderr
    assert wait_result(raw_conn, schema, result.id)["state"] == "SUCCESS"
    order.refresh_from_db()
    assert order.status == "shipped"


def test_call_command_sqlq_runs_in_this_process(proj_app: App, capsys: pytest.CaptureFixture[str]) -> None:
    """`call_command('sqlq', ...)` (Django's way from code and tests) runs the CLI for the current
    app without leaving the process; a failing command raises SystemExit with its status."""
    from django.core.management import call_command
    from orders.tasks import ship_order

    ship_order.apply_async((1,), queue="shipping")
    call_command("sqlq", "queues")
    assert "shipping" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        call_command("sqlq", "result")  # (a missing argument: click's usage error)
    assert exited.value.code == 2
