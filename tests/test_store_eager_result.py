"""``store_eager_result`` (the task option) and ``task_store_eager_result`` (the setting), as in
Celery: an eager call's outcome is written to the results table, so ``AsyncResult(id)`` in another
process reads it as it reads a worker's; without them an eager call writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sqlq import App
from tests.apps.harness import result_row


class HttpError(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _read_elsewhere(*ids: str) -> list[dict]:
    """Each id's state and value as a fresh process sees them (SQLQ_DATABASE_URL/SQLQ_SCHEMA are the test's)."""
    code = (
        "import json, sys\n"
        "from sqlq import App\n"
        "app = App('reader')\n"
        "out = []\n"
        "for i in sys.argv[1:]:\n"
        "    r = app.AsyncResult(i)\n"
        "    out.append({'state': r.state, 'value': repr(r.result), 'traceback': r.traceback})\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *ids], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.fixture
def eager_app(schema, database_url):
    application = App("tests.eager_store", database_url=database_url, schema=schema, task_always_eager=True,
                      task_store_eager_result=True, set_as_current=False)
    application.migrate()
    yield application
    application.close()


def test_the_setting_stores_successes_and_failures(eager_app, raw_conn, schema):
    @eager_app.task(name="tests.add")
    def add(x, y):
        return x + y

    @eager_app.task(name="tests.http")
    def http():
        raise HttpError(404)

    ok = add.delay(2, 3)
    failed = http.delay()
    named = add.apply((1, 1), task_id="report-2024-01")
    assert (ok.get(), failed.state, named.get()) == (5, "FAILURE", 2)
    seen = _read_elsewhere(ok.id, failed.id, "report-2024-01")
    assert seen[0]["state"] == "SUCCESS" and seen[0]["value"] == "5"
    assert seen[1]["state"] == "FAILURE" and "404" in seen[1]["value"] and "HttpError" in seen[1]["traceback"]
    assert seen[2]["state"] == "SUCCESS" and seen[2]["value"] == "2"
    row = result_row(raw_conn, schema, ok.id)
    assert row["task"] == "tests.add" and row["args"] == [2, 3] and row["attempts"] == 1
    assert row["queue"] == "default" and row["worker_id"] is None


def test_rebuilt_in_this_process_with_the_exception_args(eager_app):
    @eager_app.task(name="tests.http2")
    def http():
        raise HttpError(500)

    failed = http.delay()
    reader = App("tests.reader", database_url=eager_app.conf.database_url, schema=eager_app.conf.schema,
                 set_as_current=False)
    try:
        handle = reader.AsyncResult(failed.id)
        with pytest.raises(HttpError) as raised:
            handle.get(timeout=10)
        assert raised.value.status == 500  # its args travel, as with a worker's failure
    finally:
        reader.close()


def test_a_second_eager_call_with_the_same_id_replaces_the_first(eager_app):
    @eager_app.task(name="tests.echo")
    def echo(value):
        return value

    echo.apply(("first",), task_id="same-id")
    echo.apply(("second",), task_id="same-id")
    assert _read_elsewhere("same-id")[0]["value"] == "'second'"


def test_the_task_option_wins_over_the_setting(schema, database_url):
    application = App("tests.eager_opt", database_url=database_url, schema=schema, task_always_eager=True,
                      set_as_current=False)
    application.migrate()
    try:
        @application.task(name="tests.stored", store_eager_result=True)
        def stored():
            return "kept"

        @application.task(name="tests.plain")
        def plain():
            return "not kept"

        application.conf.task_store_eager_result = True

        @application.task(name="tests.unstored", store_eager_result=False)
        def unstored():
            return "not kept either"

        kept, dropped = stored.delay(), unstored.delay()
        application.conf.task_store_eager_result = False
        off = plain.delay()
        seen = _read_elsewhere(kept.id, dropped.id, off.id)
        assert [s["state"] for s in seen] == ["SUCCESS", "PENDING", "PENDING"]
        assert seen[0]["value"] == "'kept'"
    finally:
        application.close()


def test_the_celery_setting_names_are_read(schema, database_url):
    class Settings:
        CELERY_TASK_STORE_EAGER_RESULT = True
        CELERY_TASK_ALWAYS_EAGER = True

    application = App("tests.eager_celery", database_url=database_url, schema=schema, set_as_current=False)
    application.config_from_object(Settings, namespace="CELERY")
    try:
        assert application.conf.task_store_eager_result is True
    finally:
        application.close()
