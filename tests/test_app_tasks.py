"""Issue #2, items 2 and 3: the App (settings, registry, discovery, send_task) and @app.task."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import sqlq
from sqlq import App, SoftTimeLimitExceeded, Task
from sqlq.errors import (
    ConfigurationError,
    InvalidNameError,
    NotRegistered,
    SerializationError,
    TaskDefinitionError,
    TimeLimitExceeded,
)

TIMEOUT = 60


def _job_row(conn: psycopg.Connection, schema: str, job_id: str) -> dict:
    cur = conn.execute(f'SELECT *, extract(epoch FROM expires_at - enqueued_at) AS expires_after '
                       f'FROM "{schema}".jobs WHERE id = %s', (job_id,))
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SQLQ_* variable from the caller's shell or another fixture decides these tests."""
    for key in ("SQLQ_SCHEMA", "SQLQ_DEFAULT_QUEUE", "SQLQ_DATABASE_URL", "DATABASE_URL",
                "SQLQ_WORKER_CONCURRENCY", "SQLQ_ACCEPT_CONTENT", "SQLQ_TASK_ACKS_LATE"):
        monkeypatch.delenv(key, raising=False)


# --- App and settings ---------------------------------------------------------------------------

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


class _Settings:
    default_queue = "from_class"
    result_expires = 10
    UNRELATED = "ignored"


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


# --- registry, discovery, send_task, AsyncResult ------------------------------------------------

def test_registry_and_not_registered(clean_env):
    app = App("proj")

    @app.task
    def add(x, y):
        return x + y

    assert app.tasks["tests.test_app_tasks.add"] is add
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


def test_send_task_by_name_without_the_code(app: App, database_url: str, run_worker):
    """The producer never imported the task; a worker whose app has it runs the job."""
    worker_app = App("tests", database_url=database_url, schema=app.conf.schema)

    @worker_app.task(name="remote.multiply")
    def multiply(x, y, factor=1):
        return x * y * factor

    assert "remote.multiply" not in app.tasks
    result = app.send_task("remote.multiply", (3, 4), {"factor": 2}, queue="remote", priority=2)
    assert result.task_name == "remote.multiply"
    try:
        with run_worker(worker_app, queues=["remote"]):
            assert result.get(timeout=TIMEOUT) == 24
    finally:
        worker_app.close()


def test_send_task_validates_the_name_and_options(app: App, raw_conn: psycopg.Connection):
    with pytest.raises(InvalidNameError, match="invalid task name"):
        app.send_task("not a name")
    with pytest.raises(ConfigurationError, match="unknown option.*no_such_option"):
        app.send_task("remote.x", (), {}, no_such_option=1)
    assert raw_conn.execute(f'SELECT count(*) FROM "{app.conf.schema}".jobs').fetchone()[0] == 0


def test_app_async_result_handle(app: App):
    task_id = str(uuid.uuid4())
    result = app.AsyncResult(task_id)
    assert result.id == task_id and result.app is app
    assert result.state == "PENDING"
    assert result == app.AsyncResult(task_id)


# --- @app.task ----------------------------------------------------------------------------------

def test_task_without_arguments_gets_module_function_name(clean_env):
    app = App("proj")

    @app.task
    def plain(x):
        return x * 2

    assert plain.name == "tests.test_app_tasks.plain"
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


def test_calling_the_task_runs_it_here(app: App, raw_conn: psycopg.Connection):
    calls = []

    @app.task
    def record(x, y=0):
        calls.append((x, y))
        return x + y

    assert record(1, y=2) == 3
    assert calls == [(1, 2)]
    assert raw_conn.execute(f'SELECT count(*) FROM "{app.conf.schema}".jobs').fetchone()[0] == 0


def test_task_options_shape_the_job(app: App, raw_conn: psycopg.Connection):
    @app.task(queue="reports", priority=9, expires=60, acks_late=False, serializer="msgpack")
    def report(n):
        return n

    row = _job_row(raw_conn, app.conf.schema, report.delay(1).id)
    assert (row["queue"], row["priority"], row["acks_late"]) == ("reports", 9, False)
    assert row["expires_after"] == 60
    assert row["content_type"] == "application/x-msgpack" and row["args"] is None and row["payload"]
    override = _job_row(raw_conn, app.conf.schema, report.apply_async((2,), queue="other", priority=1).id)
    assert (override["queue"], override["priority"]) == ("other", 1)


def test_bind_ignore_result_and_request(app: App, run_worker):
    seen = {}

    @app.task(bind=True, ignore_result=True)
    def introspect(self, x):
        seen.update(task=self, id=self.request.id, args=self.request.args, eager=self.request.is_eager)
        return x

    result = introspect.delay(5)
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) is None  # the outcome is stored, the value is not
    assert result.state == "SUCCESS"
    assert seen == {"task": introspect, "id": result.id, "args": [5], "eager": False}


def test_autoretry_for_with_max_retries(app: App, run_worker):
    attempts = []

    @app.task(autoretry_for=(ValueError,), max_retries=2, default_retry_delay=0)
    def flaky():
        attempts.append(1)
        raise ValueError("still broken")

    result = flaky.delay()
    with run_worker(app):
        with pytest.raises(ValueError, match="still broken"):
            result.get(timeout=TIMEOUT)
    assert len(attempts) == 3 and result.retries == 2


def test_retry_backoff_options():
    app = App("proj")
    plain = app.task(name="p.plain", default_retry_delay=7)(lambda: None)
    assert plain.backoff_delay(5) == 7
    exact = app.task(name="p.exact", retry_backoff=2, retry_backoff_max=20, retry_jitter=False)(lambda: None)
    assert [exact.backoff_delay(n) for n in range(5)] == [2, 4, 8, 16, 20]
    jittered = app.task(name="p.jit", retry_backoff=True, retry_backoff_max=8)(lambda: None)
    assert all(0 <= jittered.backoff_delay(n) <= min(8, 2 ** n) for n in range(6) for _ in range(20))


def _busy(seconds: float) -> None:
    """Pure-Python waiting, so an exception raised into this thread arrives promptly."""
    done = threading.Event()
    for _ in range(int(seconds * 20)):
        done.wait(0.05)


def test_soft_time_limit(app: App, run_worker):
    @app.task(soft_time_limit=0.3)
    def cleanup():
        try:
            _busy(TIMEOUT)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "ran to the end"

    result = cleanup.delay()
    with run_worker(app):
        assert result.get(timeout=TIMEOUT * 2) == "cleaned up"


def test_time_limit(app: App, run_worker):
    @app.task(time_limit=0.3)
    def endless():
        _busy(TIMEOUT)
        return "ran to the end"

    result = endless.delay()
    with run_worker(app):
        with pytest.raises(TimeLimitExceeded):
            result.get(timeout=TIMEOUT * 2)


# --- tasks defined in __main__ ------------------------------------------------------------------

def _run_python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


_MAIN_TASK = textwrap.dedent("""
    from sqlq import App
    app = App({main})

    @app.task{options}
    def job():
        return 1

    print(job.name)
""")


def test_task_in_main_without_an_importable_name_is_refused():
    proc = _run_python("-c", _MAIN_TASK.format(main="", options=""))
    assert proc.returncode != 0
    assert "TaskDefinitionError" in proc.stderr and "pass name='yourmodule.job'" in proc.stderr


def test_task_in_main_named_after_the_app():
    proc = _run_python("-c", _MAIN_TASK.format(main="'proj.jobs'", options=""))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "proj.jobs.job"


def test_task_in_main_with_explicit_name():
    proc = _run_python("-c", _MAIN_TASK.format(main="", options="(name='proj.explicit')"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "proj.explicit"


def test_task_in_main_run_with_dash_m(tmp_path: Path):
    pkg = tmp_path / "mainpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "runner.py").write_text(_MAIN_TASK.format(main="", options=""))
    proc = _run_python("-m", "mainpkg.runner", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "mainpkg.runner.job"
