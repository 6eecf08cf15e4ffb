"""Celery's ``use_celery_app_trap`` as the plugin's ``use_sqlq_app_trap``: a user's test module that
overrides it (session-scoped, as in Celery's testing guide) gets a ``RuntimeError`` wherever its
code falls back on the current app, while code given ``sqlq_app`` works and
``depends_on_current_app`` lifts the trap (run by pytester in a pytest of its own, on the test
database)."""

from __future__ import annotations

import textwrap

pytest_plugins = ["pytester"]

TRAPPED_TESTS = textwrap.dedent('''
    import pytest

    from sqlq import AsyncResult, current_app, shared_task
    from sqlq.testing import drain


    @pytest.fixture(scope='session')
    def use_celery_app_trap():  # (the guide's name, kept to show it is not sqlq's)
        return True


    @pytest.fixture(scope='session')
    def use_sqlq_app_trap():
        return True


    @shared_task(name="lib.double")
    def double(x):
        return 2 * x


    def test_code_given_the_app_works(sqlq_app):
        @sqlq_app.task(name="t.add")
        def add(x, y):
            return x + y

        result = add.delay(1, 2)
        assert [r.get() for r in drain(sqlq_app)] == [3]
        assert sqlq_app.AsyncResult(result.id).get() == 3


    def test_falling_back_on_the_current_app_raises(sqlq_app):
        with pytest.raises(RuntimeError, match="Test depends on current_app"):
            AsyncResult("an-id")
        with pytest.raises(RuntimeError, match="Test depends on current_app"):
            current_app.conf
        with pytest.raises(RuntimeError, match="Test depends on current_app"):
            double.delay(2)


    def test_depends_on_current_app_lifts_it(sqlq_app, depends_on_current_app):
        assert current_app.main == sqlq_app.main
        double.delay(2)
        assert [r.get() for r in drain(sqlq_app)] == [4]


    def test_without_sqlq_app_nothing_is_trapped():
        assert current_app.conf.default_queue == "default"  # (would raise if the trap had stayed)
''')


def test_the_app_trap(pytester, database_url, monkeypatch):
    monkeypatch.setenv("SQLQ_TEST_DATABASE_URL", database_url)
    for variable in ("SQLQ_SCHEMA", "SQLQ_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    pytester.makepyfile(test_trapped=TRAPPED_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)
