"""Smaller parts of Celery's task surface found missing when its Tasks and Calling guides were
ported: an app's ``gen_task_name``, ``dont_autoretry_for``, ``task.OperationalError`` and
``get_task_logger`` (its lines carry the running task's name and id)."""

from __future__ import annotations

import logging

import pytest

from sqlq import App, Celery, get_task_logger
from sqlq.errors import DatabaseUnavailableError
from sqlq.log import TASK_LOGGER
from tests.apps.harness import result_row

TIMEOUT = 30


class Flaky(Exception):
    """Retried by autoretry_for."""


class Broken(Flaky):
    """A Flaky that dont_autoretry_for says not to retry."""


def test_an_apps_gen_task_name_names_its_tasks():
    class ShortNames(Celery):
        def gen_task_name(self, name: str, module: str) -> str:
            if module.endswith(".tasks"):
                module = module[: -len(".tasks")]
            return super().gen_task_name(name, module)

    app = ShortNames("proj", set_as_current=False)

    def task_a():
        return "a"

    task_a.__module__ = "module_a.tasks"
    assert app.task(task_a).name == "module_a.task_a"
    assert app.task(name="explicit.name")(lambda: None).name == "explicit.name"  # a given name wins


def test_dont_autoretry_for_fails_at_once_what_autoretry_for_would_retry(app, run_worker, raw_conn, schema):
    calls: list[str] = []

    @app.task(name="proj.fetch", autoretry_for=(Flaky,), dont_autoretry_for=(Broken,),
              retry_kwargs={"countdown": 0})
    def fetch(kind):
        calls.append(kind)
        if len([c for c in calls if c == kind]) == 1:
            raise (Broken if kind == "broken" else Flaky)(kind)
        return kind

    flaky, broken = fetch.delay("flaky"), fetch.delay("broken")
    with run_worker(app, pool="threads"):
        assert flaky.get(timeout=TIMEOUT) == "flaky"  # retried once, then succeeded
        with pytest.raises(Broken):
            broken.get(timeout=TIMEOUT)
    assert calls.count("flaky") == 2 and calls.count("broken") == 1
    assert result_row(raw_conn, schema, broken.id)["state"] == "FAILURE"
    # eager mode asks the same question
    calls.clear()
    assert fetch.apply(("flaky",)).get() == "flaky"
    assert fetch.apply(("broken",)).failed() and calls == ["flaky", "flaky", "broken"]
    with pytest.raises(Exception, match="dont_autoretry_for= of task 'proj.bad' must be exception classes"):
        app.task(name="proj.bad", dont_autoretry_for=("ValueError",))(lambda: None)


def test_task_operational_error_is_what_delay_raises_without_a_database():
    app = App("proj", database_url="postgresql://127.0.0.1:1/nowhere", set_as_current=False)
    add = app.task(name="proj.add")(lambda x, y: x + y)
    assert add.OperationalError is DatabaseUnavailableError
    try:
        with pytest.raises(add.OperationalError):
            add.delay(2, 2)
    finally:
        app.close()


def test_get_task_logger_lines_reach_sqlq_and_carry_the_task(app: App):
    from sqlq.cli import _TaskContextFilter

    logger = get_task_logger("proj.tasks")
    assert logger.name == "proj.tasks" and logger.parent is logging.getLogger(TASK_LOGGER)
    with pytest.raises(ValueError, match="give the task module's __name__"):
        get_task_logger(TASK_LOGGER)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.task} {record.getMessage()}")  # type: ignore[attr-defined]

    handler = Keep()
    handler.addFilter(_TaskContextFilter())
    sqlq_logger = logging.getLogger("sqlq")
    old_level = sqlq_logger.level
    sqlq_logger.addHandler(handler)
    sqlq_logger.setLevel(logging.INFO)
    try:
        @app.task(name="proj.report")
        def report():
            logger.info("making the report")

        report.apply(task_id="r-1")
    finally:
        sqlq_logger.removeHandler(handler)
        sqlq_logger.setLevel(old_level)
    assert " proj.report[r-1] making the report" in seen


def test_argsrepr_and_kwargsrepr_stand_in_for_the_arguments(app: App, run_worker):
    """Celery's argsrepr=/kwargsrepr= keep secrets out of what is shown of a call: the publish
    signals' headers and the running task's request carry them; the task gets the real arguments."""
    from sqlq import signals

    seen: dict[str, object] = {}

    @app.task(name="proj.login", bind=True)
    def login(self, user, password):
        return [password == "s3cret", self.request.argsrepr, self.request.kwargsrepr]

    def published(sender=None, headers=None, **kwargs):
        seen.update(argsrepr=headers["argsrepr"], kwargsrepr=headers["kwargsrepr"], shadow=headers["shadow"])

    signals.before_task_publish.connect(published)
    try:
        result = login.apply_async(("ann", "s3cret"), argsrepr="('ann', '***')", kwargsrepr="{}", shadow="login")
    finally:
        signals.before_task_publish.disconnect(published)
    assert seen == {"argsrepr": "('ann', '***')", "kwargsrepr": "{}", "shadow": "login"}
    with run_worker(app, pool="threads"):
        assert result.get(timeout=TIMEOUT) == [True, "('ann', '***')", "{}"]
    with pytest.raises(Exception, match="argsrepr must be a string"):
        login.apply_async(("ann", "x"), argsrepr=("ann", "***"))
