"""Concurrency limits without a server: the limits accepted, the key a call is counted under, the
limits an app's code declares, and the claim statements kept in step with CLAIM."""

from __future__ import annotations

import pytest

from sqlq import App
from sqlq.concurrency_limits import (
    MAX_LIMIT,
    check_key_function,
    compute_key,
    declared_concurrency_limits,
    parse_limit,
)
from sqlq.errors import ConfigurationError, TaskDefinitionError
from sqlq.store.statements import STATEMENTS


@pytest.mark.parametrize("value, limit", [(1, 1), (5, 5), ("3", 3), (" 7 ", 7), (2.0, 2), (MAX_LIMIT, MAX_LIMIT)])
def test_whole_numbers_are_limits(value, limit):
    assert parse_limit(value) == limit


@pytest.mark.parametrize("value", [None, 0, "0", ""])
def test_none_and_zero_mean_no_limit(value):
    assert parse_limit(value) is None


@pytest.mark.parametrize("value, said", [
    (-1, "out of range"), (MAX_LIMIT + 1, "out of range"), (2.5, "not a number of jobs"),
    ("five", "not a number of jobs"), (True, "not a number of jobs"), ([3], "not a number of jobs"),
])
def test_anything_else_is_refused_naming_it(value, said):
    with pytest.raises(ConfigurationError, match=said) as caught:
        parse_limit(value, "concurrency_limit of task 'x'")
    assert "concurrency_limit of task 'x'" in str(caught.value) and "None / 0 for no limit" in str(caught.value)


def test_a_key_is_the_functions_str_or_int_as_text():
    assert compute_key(lambda a, k: k["account"], "t", (), {"account": "acme"}) == "acme"
    assert compute_key(lambda a, k: a[0], "t", (42,), None) == "42"


@pytest.mark.parametrize("fn, said", [
    (lambda a, k: k["account"], "raised KeyError"), (lambda a, k: None, "returned None"),
    (lambda a, k: True, "returned True"), (lambda a, k: 1.5, "returned 1.5"),
])
def test_a_key_function_that_fails_or_returns_no_key_fails_the_enqueue_naming_the_task(fn, said):
    with pytest.raises(ConfigurationError, match=said) as caught:
        compute_key(fn, "proj.sync", (1,), {})
    assert "'proj.sync'" in str(caught.value)


def test_a_key_that_is_not_a_function_is_refused_at_definition():
    with pytest.raises(ConfigurationError, match="must be a function of"):
        check_key_function("account", "proj.sync")
    app = App("unit")
    with pytest.raises(ConfigurationError, match="must be a function of"):
        app.task(concurrency_key="account", name="unit.keyed")(lambda: None)


def test_each_task_declares_its_own_limit_and_a_bad_one_names_its_task():
    app = App("unit")

    @app.task(concurrency_limit=3)
    def bounded() -> None: ...

    @app.task(concurrency_limit=2, concurrency_key=lambda args, kwargs: kwargs["account"])
    def keyed(account: str) -> None: ...

    @app.task
    def free() -> None: ...

    limits = declared_concurrency_limits(app)
    assert limits[bounded.name] == 3 and limits[keyed.name] == 2 and limits[free.name] is None
    # the function given to @app.task is the key function, not a method of the task
    assert keyed.concurrency_key((), {"account": "acme"}) == "acme"
    assert keyed.build_job((), {"account": "acme"}).concurrency_key == "acme"
    assert bounded.build_job().concurrency_key is None
    with pytest.raises((ConfigurationError, TaskDefinitionError), match="concurrency_limit of task"):
        app.task(concurrency_limit="many", name="unit.bad")(lambda: None)


def test_the_concurrency_claims_return_claims_columns_and_claim_like_it():
    def returning(text: str) -> str:
        return " ".join(text[text.index("RETURNING"):].split("\n), summary AS")[0].split())

    claim = STATEMENTS["CLAIM"].text
    set_line = "SET state = 'running', worker_id = %(worker_id)s, attempt = j.attempt + 1, started_at = now()"
    for name in ("CLAIM_CONCURRENCY_LIMITED", "CLAIM_CONCURRENCY_KEYED"):
        text = STATEMENTS[name].text
        assert returning(text) == returning(claim), name
        assert set_line in text and "FOR UPDATE SKIP LOCKED" in text, name
        # the count is jobs_concurrency_running's predicate, and every job claimed enters that index
        assert "WHERE state = 'running' AND task = %(task)s AND concurrency_key IS NOT NULL" in text, name
        assert "concurrency_key = coalesce(j.concurrency_key, '')" in text, name


def test_a_task_with_a_rate_limit_and_a_concurrency_limit_is_refused():
    app = App("unit")
    with pytest.raises(ConfigurationError, match="both rate_limit='10/s' and concurrency_limit=2"):
        app.task(rate_limit="10/s", concurrency_limit=2, name="unit.both")(lambda: None)
