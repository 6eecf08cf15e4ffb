"""Rate limits without a server: Celery's rate strings, the bucket's size, the limits an app's code
declares, and the claim statements of rate-limited workers kept in step with CLAIM."""

from __future__ import annotations

import math
import re

import pytest

from sqlq import App
from sqlq.errors import ConfigurationError
from sqlq.rate_limits import BURST_SECONDS, capacity, declared_rate_limits, limits_arrays, parse_rate
from sqlq.store.statements import STATEMENTS


@pytest.mark.parametrize("value, per_second", [
    ("10/s", 10.0), ("100/m", 100 / 60), ("1000/h", 1000 / 3600), ("10", 10.0), ("2.5/s", 2.5),
    (" 6 / m ", 0.1), (".5", 0.5), ("1e2/h", 100 / 3600), (10, 10.0), (0.25, 0.25),
])
def test_celerys_rates_are_tasks_per_second(value, per_second):
    assert parse_rate(value) == pytest.approx(per_second)


@pytest.mark.parametrize("value", [None, 0, 0.0, "0", "0/m", ""])
def test_none_and_zero_mean_no_limit(value):
    assert parse_rate(value) is None


@pytest.mark.parametrize("value, said", [
    ("ten/s", "'ten/s' is not a rate"), ("10/x", "'10/x' is not a rate"), ("10/sec", "'10/sec' is not a rate"),
    ("-1/s", "'-1/s' is not a rate"), (-3, "-3 is not a rate (it must be a finite number, 0 or more)"),
    (math.inf, "inf is not a rate"), (math.nan, "nan is not a rate"), (True, "True is not a rate"),
    ([10], "[10] (list) is not a rate"), ("10/s/s", "'10/s/s' is not a rate"),
])
def test_anything_else_is_refused_naming_it_and_the_forms_accepted(value, said):
    with pytest.raises(ConfigurationError, match=re.escape(said)) as excinfo:
        parse_rate(value, "rate_limit")
    assert "'10/s', '100/m', '1000/h'" in str(excinfo.value)


def test_a_bucket_holds_a_second_of_tokens_and_at_least_one():
    assert BURST_SECONDS == 1.0
    assert capacity(10.0) == 10.0
    assert capacity(1 / 60) == 1.0
    assert capacity(0.5) == 1.0


def _app() -> App:
    return App("unit.rates", database_url="postgresql://nobody@127.0.0.1:1/none", set_as_current=False)


def test_each_task_declares_its_own_limit_else_the_default():
    app = _app()
    plain = app.task(name="unit.plain")(lambda: None)
    own = app.task(name="unit.own")(lambda: None)
    own.rate_limit = "6/m"
    assert declared_rate_limits(app) == {"unit.plain": None, "unit.own": pytest.approx(0.1)}
    app.conf.task_default_rate_limit = "2/s"
    assert declared_rate_limits(app) == {"unit.plain": 2.0, "unit.own": pytest.approx(0.1)}
    plain.rate_limit = 0  # an explicit "no limit" (0) overrides the default; None takes it
    assert declared_rate_limits(app)["unit.plain"] is None


def test_a_bad_declared_rate_names_its_task():
    app = _app()
    bad = app.task(name="unit.bad")(lambda: None)
    bad.rate_limit = "fast"
    with pytest.raises(ConfigurationError, match=r"rate_limit of task 'unit.bad'='fast' is not a rate"):
        declared_rate_limits(app)


def test_the_declaration_arrays_carry_each_rate_and_its_capacity():
    assert limits_arrays({"b": None, "a": 20.0, "c": 0.5}) == {
        "tasks": ["a", "b", "c"], "rates": [20.0, None, 0.5], "capacities": [20.0, None, 1.0]}


def test_claim_unlimited_is_claim_but_for_the_limited_tasks():
    claim = STATEMENTS["CLAIM"].text
    unlimited = STATEMENTS["CLAIM_UNLIMITED"].text
    assert unlimited.replace("      AND task <> ALL(%(limited)s::text[])\n", "") == claim


def test_claim_rate_limited_returns_claims_columns_and_claims_like_it():
    def returning(text: str) -> str:
        return " ".join(text[text.index("RETURNING"):].split("\n), spent AS")[0].split())

    limited = STATEMENTS["CLAIM_RATE_LIMITED"].text
    assert returning(limited) == returning(STATEMENTS["CLAIM"].text)
    set_line = "SET state = 'running', worker_id = %(worker_id)s, attempt = j.attempt + 1, started_at = now()"
    assert set_line in limited and set_line in STATEMENTS["CLAIM"].text
    assert "ORDER BY priority DESC, seq" in limited and "FOR UPDATE SKIP LOCKED" in limited
