"""Celery's "First steps with Celery" and "Next steps" guides, run as a new user would after changing
only ``from celery import Celery`` and the broker URL (tests/celery_guides/: the guide's files).

The files keep the URL a user writes (``postgresql://localhost/proj``); the test's
``SQLQ_DATABASE_URL``, which beats an app's own setting as a deployment's environment does, points
them at the test's database and schema. Workers run the way the guides start them
(``celery -A tasks worker`` becomes ``sqlq -A tasks worker``, with ``--burst`` so that it exits when
done), or in a thread of the test where a guide's step needs a worker while the test calls.

Left out: the guides' canvas parts (signatures, ``add.s``, groups, chains, chords: issue #13), and
the commands sqlq has no equivalent of yet (``celery multi``, ``inspect active``, ``control
rate_limit``, ``events``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from sqlq import App
from sqlq.errors import SqlqCompatibilityWarning
from tests.apps.harness import job_row, wait_for

GUIDES = Path(__file__).resolve().parent / "celery_guides"
ROOT = GUIDES.parent.parent
#: The guides wait with ``get(timeout=1)``; a shared 2-core test machine gets longer.
TIMEOUT = 30

_GUIDE_MODULES = ("tasks", "celeryconfig", "proj")


def _forget_guide_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in _GUIDE_MODULES:
            del sys.modules[name]


@pytest.fixture
def guide(schema: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``guide('first_steps')`` puts that guide's directory first on sys.path, as the guide's
    current directory; the guide's modules are forgotten before and after the test (the README's
    example project is a ``proj`` too)."""
    _forget_guide_modules()
    made: list[App] = []

    def use(name: str) -> Path:
        directory = GUIDES / name
        monkeypatch.syspath_prepend(str(directory))
        return directory

    yield use
    for module in [m for n, m in sys.modules.items() if n.split(".")[0] in _GUIDE_MODULES]:
        made.extend(v for v in vars(module).values() if isinstance(v, App))
    for app in made:
        app.close()
    _forget_guide_modules()


def _import(name: str) -> ModuleType:
    return __import__(name, fromlist=["_"])


def _sqlq(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as the guide's reader runs it, from the guide's directory."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "sqlq", *args], cwd=directory, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_first_steps_application_worker_and_results(guide, raw_conn, schema):
    directory = guide("first_steps")
    with pytest.warns(SqlqCompatibilityWarning, match="result_backend 'rpc://' is not used"):
        tasks = _import("tasks")
    tasks.app.migrate()  # (sqlq's tables: `sqlq migrate` once per database)
    from tasks import add

    result = add.delay(4, 4)
    assert result.ready() is False
    worker = _sqlq(directory, "-A", "tasks", "worker", "--loglevel=INFO", "--burst", "-P", "solo")
    assert worker.returncode == 0, worker.stderr
    assert result.ready() is True
    assert result.get(timeout=TIMEOUT) == 8
    assert result.get(propagate=False) == 8
    assert result.traceback is None
    assert job_row(raw_conn, schema, result.id) is None  # finished: its row left the queue


def test_first_steps_configuration(guide):
    guide("first_steps")
    with pytest.warns(SqlqCompatibilityWarning):
        from tasks import app
    app.conf.task_serializer = 'json'
    app.conf.update(
        task_serializer='json',
        accept_content=['json'],  # Ignore other content
        result_serializer='json',
        timezone='Europe/Oslo',
        enable_utc=True,
    )
    assert (app.conf.task_serializer, app.conf.accept_content, app.conf.timezone, app.conf.enable_utc) == \
        ("json", ["json"], "Europe/Oslo", True)


def test_first_steps_celeryconfig_module(guide, run_worker, raw_conn, schema):
    guide("first_steps")
    with pytest.warns(SqlqCompatibilityWarning):
        from tasks import add, app
    with warnings.catch_warnings():
        warnings.simplefilter("error", SqlqCompatibilityWarning)  # every setting in it means something here
        app.config_from_object('celeryconfig')
    assert app.conf.timezone == "Europe/Oslo" and app.conf.task_routes == {'tasks.add': 'low-priority'}
    app.migrate()
    result = add.delay(4, 4)
    assert job_row(raw_conn, schema, result.id)["queue"] == "low-priority"  # task_routes
    with run_worker(app, queues=["low-priority"]):
        assert add.rate_limit == '10/m'  # task_annotations, applied when the worker finalized the app
        assert result.get(timeout=TIMEOUT) == 8


def test_next_steps_project_with_the_worker_the_guide_starts(guide, raw_conn, schema):
    directory = guide("next_steps")
    from proj.celery import app
    from proj.tasks import add, mul, xsum

    assert app.conf.result_expires == 3600
    app.migrate()
    results = [add.delay(2, 2), add.apply_async((2, 2)), mul.delay(3, 4), xsum.delay([1, 2, 3])]
    worker = _sqlq(directory, "-A", "proj", "worker", "-l", "INFO", "--burst", "-c", "2")  # prefork, as Celery
    assert worker.returncode == 0, worker.stderr
    assert [r.get(timeout=TIMEOUT) for r in results] == [4, 4, 12, 6]


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_next_steps_worker_started_by_running_proj_celery(guide, pool):
    """``python -m proj.celery worker``: proj/celery.py's ``app.start()`` runs the command for the app
    made in ``__main__``, while ``proj.tasks``' ``from .celery import app`` imports proj.celery again
    and registers the tasks on that second app; the worker runs them (as Celery's ``@app.task``
    registers a task in every app), and prefork children import the second app by name."""
    directory = guide("next_steps")
    from proj.celery import app
    from proj.tasks import add, mul

    app.migrate()
    results = [add.delay(2, 2), mul.delay(3, 4)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)])}
    worker = subprocess.run([sys.executable, "-m", "proj.celery", "worker", "-l", "INFO", "--burst", "-P", pool,
                             "-c", "1"], cwd=directory, env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert worker.returncode == 0, worker.stderr
    assert [r.get(timeout=TIMEOUT) for r in results] == [4, 12]
    assert "not registered" not in worker.stderr
    assert "registered on proj.celery:app (imported again by name) run here too" in worker.stderr


def test_next_steps_calling_tasks(guide, run_worker, raw_conn, schema):
    guide("next_steps")
    from proj.celery import app
    from proj.tasks import add

    app.migrate()
    later = add.apply_async((2, 2), queue='lopri', countdown=10)
    row = job_row(raw_conn, schema, later.id)
    assert (row["queue"], row["state"]) == ("lopri", "scheduled")
    assert add(2, 2) == 4
    with run_worker(app):
        res = add.delay(2, 2)
        assert res.get(timeout=TIMEOUT) == 4
        assert res.id and res.state == 'SUCCESS'
        res = add.delay(2, '2')
        with pytest.raises(TypeError, match="unsupported operand type"):
            res.get(timeout=TIMEOUT)
        assert isinstance(res.get(propagate=False), TypeError)
        assert res.failed() is True and res.successful() is False
        assert res.state == 'FAILURE'


def test_next_steps_remote_control_status(guide, run_worker):
    directory = guide("next_steps")
    from proj.celery import app

    app.migrate()
    with run_worker(app, hostname="celery@guide"):
        status = wait_for(lambda: (lambda p: p.returncode == 0 and p)(_sqlq(directory, "-A", "proj", "status")),
                          timeout=60, message="`sqlq -A proj status` to see the worker")
    assert status.stdout.splitlines()[0] == "->  celery@guide: OK"
    assert status.stdout.splitlines()[-1] == "1 node online."


def test_next_steps_an_unknown_id_is_pending(guide):
    guide("next_steps")
    from proj.celery import app

    app.migrate()
    res = app.AsyncResult('this-id-does-not-exist')
    assert res.state == 'PENDING'


def test_next_steps_routing(guide, run_worker, raw_conn, schema):
    guide("next_steps")
    from proj.celery import app
    from proj.tasks import add, mul

    app.migrate()
    app.conf.update(
        task_routes = {  # noqa: E251 - the guide's spelling
            'proj.tasks.add': {'queue': 'hipri'},
        },
    )
    routed, explicit, plain = add.delay(1, 1), add.apply_async((2, 2), queue='hipri'), mul.delay(2, 3)
    assert [job_row(raw_conn, schema, r.id)["queue"] for r in (routed, explicit, plain)] == \
        ["hipri", "hipri", "default"]  # sqlq's default queue is 'default', Celery's 'celery'
    with run_worker(app, queues=["hipri"]):  # celery -A proj worker -Q hipri
        assert routed.get(timeout=TIMEOUT) == 2 and explicit.get(timeout=TIMEOUT) == 4
    assert plain.state == "PENDING"
    app.conf.task_default_queue = "celery"  # Celery's default queue back, for `-Q hipri,celery`
    celery_queued = mul.delay(3, 3)
    with run_worker(app, queues=["hipri", "celery"]):  # celery -A proj worker -Q hipri,celery
        assert celery_queued.get(timeout=TIMEOUT) == 9
    with psycopg.connect(raw_conn.info.dsn) as conn:
        assert conn.execute(f'SELECT queue FROM "{schema}".jobs WHERE id = %s', (plain.id,)).fetchone() == \
            ("default",)


def test_next_steps_timezone(guide):
    guide("next_steps")
    from proj.celery import app

    app.conf.timezone = 'Europe/London'
    assert app.conf.timezone == 'Europe/London'
