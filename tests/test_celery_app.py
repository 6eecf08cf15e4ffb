"""Celery's App surface on a real PostgreSQL: ``Celery(broker=..., backend=...)``, ``AsyncResult(id)``
without an app, ``shared_task`` in apps made before and after it, ``app.worker_main``/``app.start``
in this process, ``-A`` finding the app where Celery's does (in-process and through a worker's
prefork children), and the worker finalizing its app (include, annotations, on_after_finalize)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import sqlq
from sqlq import App, AsyncResult, Celery, Task, shared_task
from sqlq import current as sqlq_current
from sqlq.errors import ConfigurationError
from sqlq.loading import load_app
from tests.apps.harness import job_row, wait_result

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def celery_app(schema: str, database_url: str) -> Iterator[App]:
    """A migrated app made with Celery's constructor; broker and backend name the test database."""
    app = Celery("proj", broker=database_url, backend=f"db+{database_url}")
    app.migrate()
    yield app
    app.close()


@pytest.fixture
def shared_definitions() -> Iterator[None]:
    """shared_task definitions made by a test are forgotten after it, so later apps do not get them."""
    before = list(sqlq_current._shared)
    yield
    sqlq_current._shared[:] = before


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for a test's modules, removed from sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_celery_constructor_sends_runs_and_gets_with_asyncresult_without_an_app(celery_app, run_worker):
    @celery_app.task(name="proj.add")
    def add(x, y):
        return x + y

    with run_worker(celery_app):
        result = add.delay(4, 4)
        assert result.get(timeout=30) == 8
    again = AsyncResult(result.id)  # the current app: the one Celery(...) just made
    assert again.app is celery_app and again.task_id == result.id == again.id
    assert (again.state, again.get(timeout=5)) == ("SUCCESS", 8)
    assert celery_app.AsyncResult(result.id).task_id == result.id


def test_shared_task_is_in_apps_made_before_and_after_and_stands_for_the_current_ones(
        schema, database_url, run_worker, shared_definitions):
    before = Celery("before", broker=database_url)

    @shared_task
    def shared_add(x, y):
        return x + y

    @shared_task(name="proj.shared_mul", max_retries=1)
    def shared_mul(x, y):
        return x * y

    after = Celery("after", broker=database_url)
    after.migrate()
    for app in (before, after):
        assert {"tests.test_celery_app.shared_add", "proj.shared_mul"} <= set(app.tasks)
    assert shared_mul.name == "proj.shared_mul" and shared_mul.max_retries == 1
    assert isinstance(shared_mul, Task) and shared_mul.app is after  # the current app's task
    assert shared_add(2, 3) == 5  # a plain call runs the function here
    with run_worker(after):
        assert shared_add.delay(2, 3).get(timeout=30) == 5
        assert shared_mul.apply_async((2, 3)).get(timeout=30) == 6
    before.set_current()
    assert shared_mul.app is before
    assert sqlq.current_app.main == "before"
    before.close()
    after.close()


def test_worker_main_runs_a_worker_in_this_process(celery_app, raw_conn, schema):
    @celery_app.task(name="proj.mul")
    def mul(x, y):
        return x * y

    result = mul.delay(6, 7)
    assert celery_app.worker_main(["worker", "--burst", "-P", "threads", "-c", "1", "--loglevel=WARNING"]) == 0
    assert wait_result(raw_conn, schema, result.id)["state"] == "SUCCESS"
    assert result.get(timeout=5) == 42
    second = mul.delay(2, 2)
    assert celery_app.worker_main(["--burst", "-P", "solo"]) == 0  # 'worker' may be left out
    assert second.get(timeout=5) == 4


def test_start_runs_any_command_for_this_app(celery_app, raw_conn, schema, capsys, monkeypatch):
    @celery_app.task(name="proj.echo")
    def echo(value):
        return value

    assert celery_app.start(["call", "proj.echo", "--args", '["hi"]']) == 0
    job_id = capsys.readouterr().out.strip()
    assert job_row(raw_conn, schema, job_id)["task"] == "proj.echo"
    monkeypatch.setattr(sys, "argv", ["proj", "queues"])  # app.start() reads sys.argv, as Celery's
    assert celery_app.start() == 0
    assert "default" in capsys.readouterr().out
    assert celery_app.start(["no-such-command"]) == 2


def test_minus_a_finds_the_app_where_celerys_does(modules):
    _write(modules, {
        "layout_pkg/__init__.py": "",
        "layout_pkg/celery.py": "from sqlq import Celery\napp = Celery('layout_pkg', set_as_current=False)\n",
        "layout_django/__init__.py": "from .celery import app as celery_app\n",
        "layout_django/celery.py": "from sqlq import Celery\napp = Celery('layout_django', set_as_current=False)\n",
        "layout_appmod/__init__.py": "",
        "layout_appmod/app.py": "from sqlq import Celery\napplication = Celery('layout_appmod', set_as_current=False)\n",
        "layout_attr.py": "from sqlq import Celery\ncelery = Celery('layout_attr', set_as_current=False)\n",
        "layout_two.py": "from sqlq import App\none = App('one', set_as_current=False)\n"
                         "two = App('two', set_as_current=False)\n",
    })
    assert load_app("layout_pkg").main == "layout_pkg"  # the package's celery submodule
    assert load_app("layout_pkg.celery").main == "layout_pkg"
    assert load_app("layout_pkg.celery:app").main == "layout_pkg"
    assert load_app("layout_django").main == "layout_django"  # Django's layout: proj/__init__ imports it
    assert load_app("layout_appmod").main == "layout_appmod"  # proj.app, its one App
    assert load_app("layout_attr").main == "layout_attr"  # the module's celery attribute
    assert load_app("layout_attr.celery").main == "layout_attr"  # module.attr
    assert load_app("layout_two:two").main == "two"
    assert load_app("layout_pkg").finalized  # -A finalizes the app it finds
    with pytest.raises(ConfigurationError, match="has several sqlq App instances; say which one with -A layout_two:name"):
        load_app("layout_two")
    with pytest.raises(ConfigurationError, match="cannot import app module 'no_such_layout'"):
        load_app("no_such_layout")
    with pytest.raises(ConfigurationError, match="module 'layout_attr' has no submodule or App attribute 'nope'"):
        load_app("layout_attr.nope")


def test_a_prefork_worker_started_with_minus_a_package_runs_its_tasks(schema, database_url, tmp_path, raw_conn):
    _write(tmp_path, {
        "guidepkg/__init__.py": "from .celery import app as celery_app\n",
        "guidepkg/celery.py": f"""\
            from sqlq import Celery
            app = Celery('guidepkg', broker={database_url!r}, include=['guidepkg.tasks'])
            """,
        "guidepkg/tasks.py": """\
            from .celery import app

            @app.task
            def add(x, y):
                return x + y
            """,
    })
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}"}
    run = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 120, "stdin": subprocess.DEVNULL,
           "env": {**os.environ, **env}}
    assert subprocess.run([sys.executable, "-m", "sqlq", "migrate"], **run).returncode == 0
    sent = subprocess.run([sys.executable, "-m", "sqlq", "call", "guidepkg.tasks.add", "--args", "[2, 3]"], **run)
    assert sent.returncode == 0, sent.stderr
    worker = subprocess.run([sys.executable, "-m", "sqlq", "-A", "guidepkg", "worker", "--burst", "-P", "prefork",
                             "-c", "1", "-l", "warning"], **run)
    assert worker.returncode == 0, worker.stderr
    row = wait_result(raw_conn, schema, sent.stdout.strip())
    assert row["state"] == "SUCCESS"


def test_the_worker_finalizes_its_app(celery_app, modules, run_worker, shared_definitions, raw_conn, schema):
    _write(modules, {"celery_app_included.py": """\
        from sqlq import shared_task

        @shared_task(name="included.double")
        def double(x):
            return 2 * x
        """})
    celery_app.conf.include = ["celery_app_included"]
    celery_app.conf.task_annotations = {"proj.routed": {"queue": "annotated"}}
    finalized: list[object] = []
    celery_app.on_after_finalize.connect(lambda sender, **kw: finalized.append(sender))

    @celery_app.task(name="proj.routed")
    def routed():
        return "ran"

    with run_worker(celery_app, queues=["default", "annotated"]):
        assert finalized == [celery_app]
        assert celery_app.send_task("included.double", [4]).get(timeout=30) == 8
        result = routed.delay()
        assert result.get(timeout=30) == "ran"
    assert routed.queue == "annotated"
    with psycopg.connect(raw_conn.info.dsn) as conn:
        assert conn.execute(f'SELECT queue FROM "{schema}".results WHERE id = %s', (result.id,)).fetchone() == \
            ("annotated",)


def test_an_app_made_with_autofinalize_false_is_not_started_unfinalized(schema, database_url):
    from sqlq.worker.worker import Worker

    app = Celery("proj", broker=database_url, autofinalize=False)
    with pytest.raises(ConfigurationError, match="autofinalize=False"):
        Worker(app, pool="threads")
    app.finalize()
    Worker(app, pool="threads")
    app.close()
