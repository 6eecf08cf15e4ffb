"""Celery's setting names doing what they say on a real PostgreSQL and worker: Celery's default queue
back with ``task_default_queue='celery'``, settings modules of either era and Django's
``namespace='CELERY'`` style driving a worker, content types in ``accept_content`` deciding what a
worker decodes, and ``result_expires`` as a timedelta deleting old results."""

from __future__ import annotations

import datetime as dt
import types
import warnings
from collections.abc import Iterator

import pytest

from sqlq import App, Celery
from sqlq.errors import SqlqCompatibilityWarning
from tests.apps.harness import job_row, result_row, wait_for, wait_result


@pytest.fixture
def make_app(schema: str) -> Iterator:
    """Apps made by a test, migrated, and closed after it."""
    made: list[App] = []

    def make(*args, **kwargs) -> App:
        app = Celery(*args, **kwargs)
        app.migrate()
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def test_task_default_queue_celery_gives_celerys_default_queue_back(make_app, database_url, run_worker, raw_conn,
                                                                    schema):
    app = make_app("proj", broker=database_url, task_default_queue="celery")

    @app.task(name="proj.add")
    def add(x, y):
        return x + y

    result = add.delay(1, 2)
    assert job_row(raw_conn, schema, result.id)["queue"] == "celery"
    with run_worker(app) as worker:  # a worker told no queue consumes the default one
        assert worker.queues == ["celery"]
        assert result.get(timeout=30) == 3


def test_an_old_style_settings_module_drives_the_worker(make_app, database_url, run_worker):
    celeryconfig = types.ModuleType("celeryconfig")
    vars(celeryconfig).update(BROKER_URL=database_url, CELERY_RESULT_BACKEND=f"db+{database_url}",
                              CELERYD_CONCURRENCY=1, CELERYD_PREFETCH_MULTIPLIER=1, CELERY_DEFAULT_QUEUE="celery",
                              CELERY_TASK_SERIALIZER="json", CELERY_ACCEPT_CONTENT=["application/json"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SqlqCompatibilityWarning)  # every one of them means something here
        app = make_app("proj", config_source=celeryconfig)

    @app.task(name="proj.mul")
    def mul(x, y):
        return x * y

    with run_worker(app, concurrency=None) as worker:
        assert (worker.concurrency, worker.queues) == (1, ["celery"])
        assert mul.delay(3, 4).get(timeout=30) == 12


def test_djangos_namespaced_settings_drive_the_worker(make_app, database_url, run_worker):
    settings = types.SimpleNamespace(DEBUG=True, SECRET_KEY="x", CELERY_BROKER_URL=database_url,
                                     CELERY_RESULT_BACKEND=f"db+{database_url}", CELERY_TASK_DEFAULT_QUEUE="tasks",
                                     CELERY_WORKER_PREFETCH_MULTIPLIER=1, CELERY_TASK_TRACK_STARTED=True)
    app = make_app("proj", config_source=settings, namespace="CELERY")

    @app.task(name="proj.echo")
    def echo(value):
        return value

    with run_worker(app) as worker:
        assert worker.queues == ["tasks"]
        assert echo.delay({"a": [1, 2]}).get(timeout=30) == {"a": [1, 2]}


def test_accept_content_given_as_content_types_decides_what_a_worker_decodes(make_app, database_url, run_worker,
                                                                             raw_conn, schema):
    producer = make_app("proj", broker=database_url)
    consumer = make_app("proj", broker=database_url, accept_content=["application/x-msgpack"])
    for app in (producer, consumer):
        app.task(name="proj.echo")(lambda value: value)
    refused = producer.send_task("proj.echo", ["json"])  # JSON, which the consumer does not accept
    with run_worker(consumer):
        row = wait_result(raw_conn, schema, refused.id)
    assert row["state"] == "FAILURE" and "ContentDisallowed" in row["exc_type"]
    consumer.conf.accept_content = ["application/json"]
    with run_worker(consumer):
        assert producer.send_task("proj.echo", ["json"]).get(timeout=30) == "json"


def test_result_expires_as_a_timedelta_deletes_old_results(make_app, database_url, run_worker, raw_conn, schema):
    app = make_app("proj", broker=database_url, result_expires=dt.timedelta(seconds=1),
                   worker_maintenance_interval=0.1)

    @app.task(name="proj.add")
    def add(x, y):
        return x + y

    with run_worker(app):
        result = add.delay(1, 1)
        assert result.get(timeout=30) == 2
        wait_for(lambda: result_row(raw_conn, schema, result.id) is None, message="the result to expire")


def test_enable_utc_false_reads_naive_datetimes_in_the_apps_timezone(make_app, raw_conn, schema):
    """Celery's enable_utc=False: a naive eta or expires is wall time in ``timezone``; an aware
    one, and every naive one while enable_utc is on (the default), is unchanged."""
    app = make_app("proj", timezone="Asia/Tokyo", enable_utc=False)
    report = app.task(name="proj.report")(lambda: None)
    naive = dt.datetime(2030, 1, 1, 9, 0)
    tokyo = report.apply_async(eta=naive, expires=naive + dt.timedelta(hours=1))
    row = job_row(raw_conn, schema, tokyo.id)
    assert row is not None
    assert row["run_at"] == dt.datetime(2030, 1, 1, 0, 0, tzinfo=dt.UTC)
    assert row["expires_at"] == dt.datetime(2030, 1, 1, 1, 0, tzinfo=dt.UTC)
    app.conf.enable_utc = True
    utc = job_row(raw_conn, schema, report.apply_async(eta=naive).id)
    assert utc is not None and utc["run_at"] == dt.datetime(2030, 1, 1, 9, 0, tzinfo=dt.UTC)
