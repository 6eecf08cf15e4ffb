"""``sqlq_worker`` with ``sqlq_worker_pool = 'prefork'`` (Celery's ``celery_worker_pool``): it works
for an app its children can import by module name (a project's app put on the test schema by an
overridden ``sqlq_app``), and the default ``sqlq_app``, made inside the fixture, gets an error that
says exactly that and how to override it. Run through ``pytester`` in a pytest of its own."""

from __future__ import annotations

import textwrap

pytest_plugins = ["pytester"]

PROJECT = textwrap.dedent('''
    import os

    from sqlq import App

    app = App("proj")

    @app.task(name="proj.where")
    def where():
        return os.getpid()
''')


def test_prefork_runs_an_app_importable_by_module_name(pytester, database_url, monkeypatch):
    monkeypatch.setenv("SQLQ_TEST_DATABASE_URL", database_url)
    pytester.makepyfile(proj=PROJECT, test_proj=textwrap.dedent('''
        import os

        import pytest

        from sqlq.testing import on_test_schema

        @pytest.fixture
        def sqlq_app():
            from proj import app
            with on_test_schema(app):
                yield app

        @pytest.fixture
        def sqlq_worker_pool():
            return "prefork"

        def test_where(sqlq_app, sqlq_worker):
            from proj import where
            assert sqlq_worker.pool_name == "prefork"
            assert where.delay().get(timeout=60) != os.getpid()  # ran in a child process
    '''))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)


def test_prefork_with_the_default_app_says_why_and_what_to_do(pytester, database_url, monkeypatch):
    monkeypatch.setenv("SQLQ_TEST_DATABASE_URL", database_url)
    pytester.makepyfile(test_default=textwrap.dedent('''
        import pytest

        @pytest.fixture
        def sqlq_worker_pool():
            return "prefork"

        def test_uses_it(sqlq_worker):
            raise AssertionError("not reached")
    '''))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*sqlq_worker with the prefork pool: its child processes import the app by its module name, and the app "
        "'sqlq_test' is not found at module level of any imported module (the default sqlq_app makes its app "
        "inside the fixture)*",
        "*with on_test_schema(proj.celery.app) as app:*",
    ])
