"""The pytest plugin ``sqlq.testing``: registered through the ``pytest11`` entry point (so this very
run loaded it), its fixtures used by a user's test module run through ``pytester`` in a pytest of
its own, and its helpers on a real database: ``drain`` runs what is due and returns the outcomes,
``assert_enqueued`` checks the waiting jobs, ``on_test_schema`` gives an app a schema and drops it."""

from __future__ import annotations

import textwrap

import psycopg
import pytest

from sqlq import App
from sqlq.errors import TimeoutError as SqlqTimeoutError
from sqlq.testing import EnqueuedJob, assert_enqueued, drain, eager, enqueued, on_test_schema
from tests.apps.harness import scalar

pytest_plugins = ["pytester"]


def _schema_exists(conn: psycopg.Connection, name: str) -> bool:
    return bool(scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", name))


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig):
    plugin = pytestconfig.pluginmanager.get_plugin("sqlq")
    assert plugin is not None and plugin.__name__ == "sqlq.testing"


USER_TESTS = '''
import pathlib

import pytest

from sqlq.testing import assert_enqueued, drain


@pytest.fixture
def sqlq_config():
    return {"default_queue": "work"}


def test_a_real_worker_runs_the_task(sqlq_app, sqlq_worker):
    pathlib.Path("schemas.txt").open("a").write(sqlq_app.conf.schema + "\\n")

    @sqlq_app.task(name="user.add")
    def add(x, y):
        return x + y

    assert sqlq_worker.queues == ["work"]
    assert add.delay(2, 3).get(timeout=30) == 5


def test_drain_and_assert_enqueued(sqlq_app):
    pathlib.Path("schemas.txt").open("a").write(sqlq_app.conf.schema + "\\n")

    @sqlq_app.task(name="user.mul")
    def mul(x, y):
        return x * y

    mul.delay(2, 3)
    mul.apply_async((4, 5), countdown=600)
    (job,) = assert_enqueued(mul, args=(2, 3), count=1)
    assert job.queue == "work"
    assert_enqueued("user.mul", count=2)
    assert [r.get() for r in drain(sqlq_app)] == [6]
    assert_enqueued(mul, args=[4, 5])  # scheduled: left waiting
    with pytest.raises(AssertionError, match="found 0"):
        assert_enqueued(mul, args=(2, 3))


def test_each_test_has_its_own_schema(sqlq_app):
    pathlib.Path("schemas.txt").open("a").write(sqlq_app.conf.schema + "\\n")
    assert sqlq_app.conf.schema.startswith("sqlq_test_")


def test_eager_mode_for_one_test(sqlq_eager):
    assert sqlq_eager.conf.task_always_eager and sqlq_eager.conf.task_eager_propagates
'''


def test_a_users_test_module_runs_with_the_fixtures(pytester, database_url, monkeypatch, raw_conn):
    monkeypatch.setenv("SQLQ_TEST_DATABASE_URL", database_url)
    for variable in ("SQLQ_SCHEMA", "SQLQ_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)
    schemas = (pytester.path / "schemas.txt").read_text().split()
    assert len(set(schemas)) == 3
    assert not any(_schema_exists(raw_conn, name) for name in schemas)  # each dropped after its test


def test_a_fixture_can_be_overridden_to_use_the_projects_own_app(pytester, database_url, monkeypatch):
    monkeypatch.setenv("SQLQ_TEST_DATABASE_URL", database_url)
    pytester.makepyfile(proj=textwrap.dedent('''
        from sqlq import App

        app = App("proj")

        @app.task(name="proj.hello")
        def hello(name):
            return f"hello {name}"
    '''), test_proj=textwrap.dedent('''
        import pytest

        from sqlq.testing import drain, on_test_schema

        @pytest.fixture
        def sqlq_app():
            from proj import app
            with on_test_schema(app):
                yield app

        def test_hello(sqlq_app):
            from proj import hello
            hello.delay("you")
            assert [r.get() for r in drain(sqlq_app)] == ["hello you"]
    '''))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)


# --- the helpers, in this process -----------------------------------------------------------------

def test_on_test_schema_migrates_a_fresh_schema_and_drops_it(database_url, raw_conn, monkeypatch):
    monkeypatch.setenv("SQLQ_SCHEMA", "outer")
    application = App("proj", set_as_current=False)
    with on_test_schema(application, database_url) as same:
        assert same is application
        inner = application.conf.schema
        assert inner.startswith("sqlq_test_") and inner != "outer"
        application.require_migrated()
    assert not _schema_exists(raw_conn, inner)
    assert application.conf.schema == "outer"  # the environment as it was


def test_drain_runs_what_is_due_follows_new_jobs_and_leaves_scheduled_ones(app):
    @app.task(name="proj.step", queue="first")
    def step(n):
        if n < 3:
            follow.delay(n + 1)
        return n

    @app.task(name="proj.follow", queue="second")
    def follow(n):
        return step.delay(n).id and n * 10

    @app.task(name="proj.later")
    def later():
        return "later"

    @app.task(name="proj.fails")
    def fails():
        raise ValueError("broken")

    first = step.delay(1)
    later.apply_async(countdown=600)
    failing = fails.delay()
    results = drain(app)
    states = {r.task_name: r.state for r in results}
    assert states == {"proj.step": "SUCCESS", "proj.follow": "SUCCESS", "proj.fails": "FAILURE"}
    assert results[0] in (first, failing) and all(r.ready() for r in results)
    assert sorted(r.get() for r in results if r.task_name == "proj.step") == [1, 2, 3]
    assert isinstance(failing.get(propagate=False), ValueError)
    assert [j.task for j in enqueued(later)] == ["proj.later"]
    assert drain(app) == []  # nothing due any more


def test_drain_of_given_queues_leaves_the_others(app):
    @app.task(name="proj.a", queue="a")
    def a():
        return "a"

    @app.task(name="proj.b", queue="b")
    def b():
        return "b"

    a.delay()
    b.delay()
    assert [r.get() for r in drain(app, ["a"], pool="threads", concurrency=2)] == ["a"]
    assert_enqueued(b, count=1)


def test_a_job_retried_within_the_drain_is_returned_once_with_its_final_outcome(app):
    @app.task(name="proj.flaky", bind=True, max_retries=3)
    def flaky(self):
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return self.request.retries

    sent = flaky.delay()
    (result,) = drain(app)
    assert result == sent and result.get() == 2


def test_drain_stops_and_says_so_when_jobs_keep_coming(app):
    @app.task(name="proj.forever")
    def forever():
        forever.delay()

    forever.delay()
    with pytest.raises(SqlqTimeoutError, match="did not finish within 1.0 s"):
        drain(app, timeout=1.0)


def test_assert_enqueued_matches_as_the_worker_would_receive(app):
    @app.task(name="proj.send")
    def send(to, subject, *, urgent=False):
        return to

    send.delay("a@example.com", ("x", "y"), urgent=True)
    send.apply_async(("b@example.com", "hi"), queue="mail", priority=3)
    jobs = assert_enqueued(send, args=("a@example.com", ["x", "y"]), kwargs={"urgent": True})
    assert len(jobs) == 1 and isinstance(jobs[0], EnqueuedJob) and jobs[0].state == "available"
    assert assert_enqueued(send, args=["a@example.com", ("x", "y")])[0].id == jobs[0].id  # tuple == list
    (mail,) = assert_enqueued("proj.send", kwargs={}, app=app)
    assert (mail.queue, mail.priority, mail.args) == ("mail", 3, ["b@example.com", "hi"])
    assert_enqueued(send, count=2)
    assert_enqueued("proj.other", app=app, count=0)


def test_assert_enqueued_says_what_is_waiting_when_it_fails(app):
    @app.task(name="proj.send")
    def send(to):
        return to

    send.delay("a@example.com")
    with pytest.raises(AssertionError) as failure:
        assert_enqueued(send, args=("z@example.com",))
    message = str(failure.value)
    assert "expected at least one waiting job(s) of proj.send with args=['z@example.com'], found 0" in message
    assert "proj.send(args=['a@example.com'], kwargs={}) queue=default state=available" in message
    with pytest.raises(AssertionError, match="expected exactly 2 .* found 1"):
        assert_enqueued(send, count=2)
    with pytest.raises(ValueError, match="count must be None or a whole number"):
        assert_enqueued(send, count=-1)


def test_eager_sets_and_restores_the_settings(app):
    assert not app.conf.task_always_eager
    with eager(app) as same:
        assert same is app and app.conf.task_always_eager and app.conf.task_eager_propagates
    assert not app.conf.task_always_eager and not app.conf.task_eager_propagates


def test_eager_refuses_an_environment_that_overrides_it(app, monkeypatch):
    monkeypatch.setenv("SQLQ_TASK_ALWAYS_EAGER", "0")
    app.conf.reload_environment()
    with pytest.raises(RuntimeError, match="SQLQ_TASK_ALWAYS_EAGER"), eager(app):
        raise AssertionError("the block must not run when the environment decides")


# --- Celery's other fixtures and the marker, through pytester ------------------------------------

CELERY_KNOBS_TESTS = '''
import logging

import pytest

import sqlq
from sqlq import current


class CountingTask(sqlq.Task):
    """A base class given through sqlq_parameters (Celery's celery_parameters task_cls=)."""


@pytest.fixture
def sqlq_config():
    return {"default_queue": "work", "result_expires": 3600}


@pytest.fixture
def sqlq_parameters():
    return {"task_cls": CountingTask}


@pytest.mark.sqlq(result_expires=60, task_default_priority=7)
def test_the_marker_merges_settings_over_sqlq_config(sqlq_app):
    assert sqlq_app.conf.result_expires == 60
    assert sqlq_app.conf.task_default_priority == 7
    assert sqlq_app.conf.default_queue == "work"  # sqlq_config's, not overridden


def test_without_the_marker_sqlq_config_alone(sqlq_app):
    assert sqlq_app.conf.result_expires == 3600


def test_sqlq_parameters_reach_the_constructor(sqlq_app):
    @sqlq_app.task(name="user.based")
    def based():
        return 1

    assert isinstance(based, CountingTask) and issubclass(sqlq_app.Task, CountingTask)


def test_the_marker_is_registered(pytestconfig):
    assert any(line.startswith("sqlq(") for line in pytestconfig.getini("markers"))


def test_the_default_worker_pool_is_threads(sqlq_worker_pool, sqlq_worker):
    assert sqlq_worker_pool == "threads" and sqlq_worker.pool_name == "threads"


def test_logging_is_left_alone_by_default(sqlq_enable_logging, sqlq_app, sqlq_worker):
    assert sqlq_enable_logging is False
    assert logging.getLogger("sqlq").propagate

    @sqlq_app.task(name="user.quiet")
    def quiet():
        return "quiet"

    assert quiet.delay().get(timeout=30) == "quiet"


def test_depends_on_current_app(sqlq_app, depends_on_current_app):
    assert depends_on_current_app is sqlq_app
    assert current.get_current_app() is sqlq_app and sqlq.current_app.conf.schema == sqlq_app.conf.schema
'''

SOLO_AND_LOGGING_TESTS = '''
import logging

import pytest

from sqlq import App, current
from sqlq.cli import LOG_FORMAT


@pytest.fixture
def sqlq_worker_pool():
    return "solo"


@pytest.fixture
def sqlq_enable_logging():
    return True


def test_the_pool_fixture_and_worker_logging(sqlq_app, sqlq_worker):
    assert sqlq_worker.pool_name == "solo"
    logger = logging.getLogger("sqlq")
    assert not logger.propagate and any(getattr(h.formatter, "_fmt", None) == LOG_FORMAT for h in logger.handlers)

    @sqlq_app.task(name="user.loud")
    def loud():
        return "loud"

    assert loud.delay().get(timeout=30) == "loud"


def test_logging_is_put_back_after_the_test():
    assert logging.getLogger("sqlq").propagate


other = None


def test_depends_on_current_app_replaces_and_restores(request):
    global other
    other = App("other", set_as_current=False)
    current.set_current_app(other)
    app = request.getfixturevalue("depends_on_current_app")
    assert current.get_current_app() is app is not other


def test_the_previous_app_is_current_again():
    assert current.get_current_app() is other
'''


def _run_user_tests(pytester, database_url, monkeypatch, source, *args):
    monkeypatch.setenv("SQLQ_TEST_DATABASE_URL", database_url)
    for variable in ("SQLQ_SCHEMA", "SQLQ_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    pytester.makepyfile(test_user=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--strict-markers", *args)


def test_the_marker_parameters_pool_logging_and_current_app_fixtures(pytester, database_url, monkeypatch):
    result = _run_user_tests(pytester, database_url, monkeypatch, CELERY_KNOBS_TESTS)
    result.assert_outcomes(passed=7)
    assert not any("succeeded in" in line for line in result.errlines)  # logging not enabled


def test_a_solo_pool_and_worker_logging_as_sqlq_worker_does(pytester, database_url, monkeypatch):
    result = _run_user_tests(pytester, database_url, monkeypatch, SOLO_AND_LOGGING_TESTS, "-s")
    result.assert_outcomes(passed=4)
    # sqlq worker's format: [time: LEVEL/process task[id]] message, on stderr
    assert any("INFO/MainProcess" in line and "Task user.loud[" in line and "succeeded in" in line
               for line in result.errlines), result.errlines


def test_the_marker_takes_keyword_arguments_only(pytester, database_url, monkeypatch):
    result = _run_user_tests(pytester, database_url, monkeypatch, '''
import pytest

@pytest.mark.sqlq("result_expires")
def test_positional(sqlq_app):
    raise AssertionError("sqlq_app must refuse the marker first")
''')
    result.assert_outcomes(errors=1)
    assert any("takes settings as keyword arguments" in line for line in result.outlines)
