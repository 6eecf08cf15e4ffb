"""The App without a server: settings (defaults, validation on write, SQLQ_* environment overrides,
config_from_object), the task registry and autodiscovery, and what @app.task accepts and refuses."""

from __future__ import annotations

import importlib
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlq
from sqlq import App, Task
from sqlq.errors import (
    ConfigurationError,
    InvalidNameError,
    NotRegistered,
    SerializationError,
    TaskDefinitionError,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SQLQ_* variable from the caller's shell or another fixture decides these tests."""
    for key in ("SQLQ_SCHEMA", "SQLQ_DEFAULT_QUEUE", "SQLQ_DATABASE_URL", "DATABASE_URL",
                "SQLQ_WORKER_CONCURRENCY", "SQLQ_ACCEPT_CONTENT", "SQLQ_TASK_ACKS_LATE"):
        monkeypatch.delenv(key, raising=False)


def test_app_takes_name_url_and_settings(clean_env):
    app = App("proj", database_url="postgresql://u@h/db", default_queue="work", task_default_priority=3)
    assert app.main == "proj"
    assert app.conf.database_url == "postgresql://u@h/db"
    assert app.conf.default_queue == "work" and app.conf["task_default_priority"] == 3
    assert app.conf.schema == "sqlq"  # untouched settings keep their defaults


def test_conf_attribute_assignment_and_update(clean_env):
    app = App("proj")
    app.conf.result_expires = 60
    app.conf.update({"worker_concurrency": 3}, task_serializer="msgpack")
    assert (app.conf.result_expires, app.conf.worker_concurrency, app.conf.task_serializer) == (60, 3, "msgpack")
    assert app.conf.as_dict()["result_expires"] == 60


@pytest.mark.parametrize("write", [
    lambda app: App("proj", task_serialiser="json"),
    lambda app: app.conf.update(task_serialiser="json"),
    lambda app: setattr(app.conf, "task_serialiser", "json"),
])
def test_unknown_setting_is_rejected_by_name(clean_env, write):
    with pytest.raises(ConfigurationError, match="unknown sqlq setting 'task_serialiser'.*task_serializer"):
        write(App("proj"))


def test_reading_an_unknown_setting(clean_env):
    with pytest.raises(AttributeError, match="no sqlq setting named 'nope'"):
        _ = App("proj").conf.nope


def test_settings_are_validated_on_write(clean_env):
    with pytest.raises(InvalidNameError, match="schema"):
        App("proj", schema="bad-schema; drop table x")
    with pytest.raises(InvalidNameError, match="queue"):
        App("proj").conf.default_queue = ".hidden"


def test_environment_overrides_code(clean_env, monkeypatch):
    app = App("proj", default_queue="from_code", worker_concurrency=2)
    monkeypatch.setenv("SQLQ_DEFAULT_QUEUE", "from_env")
    monkeypatch.setenv("SQLQ_WORKER_CONCURRENCY", "7")
    monkeypatch.setenv("SQLQ_ACCEPT_CONTENT", "json, msgpack")
    assert app.conf.default_queue == "from_env"
    assert app.conf.worker_concurrency == 7
    assert app.conf.accept_content == ["json", "msgpack"]
    monkeypatch.setenv("SQLQ_WORKER_CONCURRENCY", "lots")
    app.conf.reload_environment()  # a variable is read once, at the setting's first read
    with pytest.raises(ConfigurationError, match="SQLQ_WORKER_CONCURRENCY='lots' is not a number"):
        _ = app.conf.worker_concurrency


class _Settings:
    default_queue = "from_class"
    result_expires = 10
    UNRELATED = "ignored"



def test_a_variable_is_read_once_until_the_environment_is_reloaded(clean_env, monkeypatch):
    app = App("proj", default_queue="from_code")
    monkeypatch.setenv("SQLQ_TASK_DEFAULT_PRIORITY", "3")
    assert (app.conf.default_queue, app.conf.task_default_priority) == ("from_code", 3)
    monkeypatch.setenv("SQLQ_DEFAULT_QUEUE", "from_env")
    monkeypatch.setenv("SQLQ_TASK_DEFAULT_PRIORITY", "4")
    assert (app.conf.default_queue, app.conf.task_default_priority) == ("from_code", 3)
    app.conf.default_queue = "changed_in_code"  # what code sets is read as it is, every time
    assert app.conf.default_queue == "changed_in_code"
    app.conf.reload_environment()
    assert (app.conf.default_queue, app.conf.task_default_priority) == ("from_env", 4)
    monkeypatch.setenv("SQLQ_DEFAULT_QUEUE", "after_close")
    app.close()  # forgets what the app read from the environment, as it forgets the database URL
    assert app.conf.default_queue == "after_close"

def test_config_from_object_class_mapping_module_and_dotted_path(clean_env, tmp_path, monkeypatch):
    app = App("proj")
    app.config_from_object(_Settings)
    assert (app.conf.default_queue, app.conf.result_expires) == ("from_class", 10)
    app.config_from_object({"default_queue": "from_mapping"})
    assert app.conf.default_queue == "from_mapping"
    module = types.ModuleType("cfg")
    module.worker_concurrency = 5
    app.config_from_object(module)
    assert app.conf.worker_concurrency == 5

    name = f"settings_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("timezone = 'Europe/Paris'\n\nclass Prod:\n    result_expires = 99\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        app.config_from_object(name)
        app.config_from_object(f"{name}:Prod")
        assert (app.conf.timezone, app.conf.result_expires) == ("Europe/Paris", 99)
    finally:
        sys.modules.pop(name, None)


def test_config_from_a_missing_module(clean_env):
    with pytest.raises(ConfigurationError, match="cannot import config module 'no_such_settings_mod'"):
        App("proj").config_from_object("no_such_settings_mod")


def test_no_module_level_app(clean_env):
    assert not [v for v in vars(sqlq).values() if isinstance(v, App)]
    one, two = App("one", schema="s_one"), App("two", schema="s_two")

    @one.task
    def only_in_one():
        return 1

    assert only_in_one.name in one.tasks and only_in_one.name not in two.tasks
    assert (one.conf.schema, two.conf.schema) == ("s_one", "s_two")
    assert one.store.jobs_channel != two.store.jobs_channel


def test_registry_and_not_registered(clean_env):
    app = App("proj")

    @app.task
    def add(x, y):
        return x + y

    assert app.tasks["tests.unit.test_app_config.add"] is add
    assert isinstance(add, Task)
    with pytest.raises(NotRegistered, match="'proj.missing' is not registered.*autodiscover_tasks") as excinfo:
        _ = app.tasks["proj.missing"]
    assert isinstance(excinfo.value, KeyError)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway package on sys.path: an app module and sub-packages with and without tasks."""
    pkg = f"proj_{uuid.uuid4().hex[:8]}"
    root = tmp_path / pkg
    files = {
        "__init__.py": "",
        "appmod.py": f"from sqlq import App\napp = App({pkg!r})\n",
        "users/__init__.py": "",
        "users/tasks.py": f"from {pkg}.appmod import app\n\n@app.task\ndef signup(email):\n    return email\n",
        "orders/__init__.py": "",
        "orders/tasks.py": f"from {pkg}.appmod import app\n\n@app.task(name='orders.ship')\ndef ship(n):\n    return n\n",
        "empty/__init__.py": "",
        "broken/__init__.py": "",
        "broken/tasks.py": "import a_dependency_that_is_not_installed_xyz\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[name]


def test_autodiscover_tasks(clean_env, project: str):
    app = importlib.import_module(f"{project}.appmod").app
    imported = app.autodiscover_tasks([f"{project}.users", f"{project}.orders", f"{project}.empty"])
    assert imported == [f"{project}.users.tasks", f"{project}.orders.tasks"]
    assert set(app.tasks) == {f"{project}.users.tasks.signup", "orders.ship"}


def test_autodiscover_tasks_takes_a_callable(clean_env, project: str):
    app = importlib.import_module(f"{project}.appmod").app
    assert app.autodiscover_tasks(lambda: [f"{project}.users"]) == [f"{project}.users.tasks"]


def test_autodiscover_surfaces_a_broken_tasks_module(clean_env, project: str):
    app = importlib.import_module(f"{project}.appmod").app
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed_xyz"):
        app.autodiscover_tasks([f"{project}.broken"])


def test_autodiscover_names_a_missing_package(clean_env, project: str):
    app = importlib.import_module(f"{project}.appmod").app
    with pytest.raises(ConfigurationError, match=f"cannot import package '{project}.typo'"):
        app.autodiscover_tasks([f"{project}.typo"])


def test_task_without_arguments_gets_module_function_name(clean_env):
    app = App("proj")

    @app.task
    def plain(x):
        return x * 2

    assert plain.name == "tests.unit.test_app_config.plain"
    assert plain(21) == 42 and plain.run(1) == 2
    assert plain.__name__ == "plain" and plain.__wrapped__ is not None


def test_task_with_every_option(clean_env):
    app = App("proj")

    @app.task(name="proj.full", bind=True, queue="q.high", priority=7, max_retries=5, default_retry_delay=2,
              retry_backoff=3, retry_backoff_max=40, retry_jitter=False, autoretry_for=(KeyError,),
              time_limit=30, soft_time_limit=20, expires=120, acks_late=False, ignore_result=True,
              serializer="msgpack")
    def full(self):
        """Docstring kept."""
        return self

    assert app.tasks["proj.full"] is full
    assert (full.bind, full.queue, full.priority, full.max_retries, full.default_retry_delay) == (
        True, "q.high", 7, 5, 2)
    assert (full.retry_backoff, full.retry_backoff_max, full.retry_jitter, full.autoretry_for) == (
        3, 40, False, (KeyError,))
    assert (full.time_limit, full.soft_time_limit, full.expires, full.acks_late, full.ignore_result,
            full.serializer) == (30, 20, 120, False, True, "msgpack")
    assert full.__doc__ == "Docstring kept."
    assert full() is full  # bound: the task itself is the first argument, even when called here


def test_task_definition_errors(clean_env):
    app = App("proj")
    with pytest.raises(TaskDefinitionError, match="unknown option.*retrys.*known options"):
        app.task(name="proj.r", retrys=3)(lambda: None)
    with pytest.raises(TaskDefinitionError, match="positional options"):
        app.task("proj.name")
    with pytest.raises(SerializationError, match="unknown serializer 'yaml'"):
        app.task(name="proj.y", serializer="yaml")(lambda: None)
    with pytest.raises(InvalidNameError, match="queue"):
        app.task(name="proj.q", queue="bad queue")(lambda: None)
    with pytest.raises(InvalidNameError, match="task name"):
        app.task(name="1bad")(lambda: None)


def test_retry_backoff_options():
    app = App("proj")
    plain = app.task(name="p.plain", default_retry_delay=7)(lambda: None)
    assert plain.backoff_delay(5) == 7
    exact = app.task(name="p.exact", retry_backoff=2, retry_backoff_max=20, retry_jitter=False)(lambda: None)
    assert [exact.backoff_delay(n) for n in range(5)] == [2, 4, 8, 16, 20]
    jittered = app.task(name="p.jit", retry_backoff=True, retry_backoff_max=8)(lambda: None)
    assert all(0 <= jittered.backoff_delay(n) <= min(8, 2 ** n) for n in range(6) for _ in range(20))
