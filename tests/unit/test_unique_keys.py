"""Unique keys without a server: what a task's ``unique_on`` derives from a call, and the options
refused before anything is written. Enforcement (the index, skip/replace/error, windows):
tests/test_unique_jobs.py."""

from __future__ import annotations

import datetime as dt

import pytest

from sqlq import App
from sqlq.errors import ConfigurationError, TaskDefinitionError
from sqlq.unique import MAX_KEY_LENGTH, check_options, check_unique_on, derive_key, key_hash


@pytest.fixture
def app() -> App:
    return App("proj", database_url="postgresql://nobody@127.0.0.1:1/none", set_as_current=False)


def test_args_and_kwargs_keys_are_stable_and_distinct():
    key = derive_key("t", ("args",), (1, "a"), {"z": 1})
    assert key == derive_key("t", ("args",), [1, "a"], {"other": 2})  # kwargs are not part of it
    assert key.startswith("t:") and len(key) == 2 + 32
    assert key != derive_key("t", ("args",), (1, "b"), {})
    assert key != derive_key("u", ("args",), (1, "a"), {})  # the task's name is part of the key
    both = derive_key("t", ("args", "kwargs"), (1,), {"a": 1, "b": {"x": 1, "y": 2}})
    assert both == derive_key("t", ("args", "kwargs"), (1,), {"b": {"y": 2, "x": 1}, "a": 1})  # dict order
    assert both != derive_key("t", ("args", "kwargs"), (1,), {"a": 2, "b": {"x": 1, "y": 2}})
    assert derive_key("t", ("kwargs",), (1,), {"a": 1}) == derive_key("t", ("kwargs",), (2,), {"a": 1})


def test_tagged_values_count_by_value():
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert derive_key("t", ("args",), (when,), {}) == derive_key("t", ("args",), (when,), {})
    assert derive_key("t", ("args",), (when,), {}) != derive_key("t", ("args",), (when.isoformat(),), {})


def test_keyword_names_find_positional_arguments_through_the_signature():
    def run(doc, text="", *, lang="en"):
        return None

    by_position = derive_key("t", ("doc",), ("readme",), {"text": "v1"}, run)
    assert by_position == derive_key("t", ("doc",), (), {"doc": "readme", "text": "v2"}, run)
    assert by_position != derive_key("t", ("doc",), ("other",), {}, run)
    assert derive_key("t", ("doc", "lang"), ("r",), {"lang": "fr"}, run) != derive_key("t", ("doc", "lang"),
                                                                                      ("r",), {}, run)
    # a name the call leaves out counts as absent (calls relying on a default share the key)
    assert derive_key("t", ("lang",), ("a",), {}, run) == derive_key("t", ("lang",), ("b",), {}, run)
    # without a signature that fits, the keyword arguments alone
    assert derive_key("t", ("doc",), ("x",), {}, None) == derive_key("t", ("doc",), ("y",), {}, None)


def test_a_callable_gives_the_key_itself():
    key = derive_key("t", lambda args, kwargs: f"user-{kwargs['user']}", (), {"user": 7})
    assert key == "t:user-7"
    with pytest.raises(ConfigurationError, match="must return a non-empty string, returned 7"):
        derive_key("t", lambda args, kwargs: 7, (), {})


@pytest.mark.parametrize("bad, message", [
    ("args", "got the string 'args'"),
    ((), "non-empty tuple"),
    (("args", 3), "non-empty tuple"),
    (42, "non-empty tuple"),
])
def test_unique_on_that_no_call_could_use_is_refused(bad, message):
    with pytest.raises(ConfigurationError, match=message):
        check_unique_on("t", bad)


@pytest.mark.parametrize("options, message", [
    (("", None, "skip"), "non-empty string"),
    ((1, None, "skip"), "non-empty string"),
    (("x" * (MAX_KEY_LENGTH + 1), None, "skip"), "hash of it"),
    (("k", -1, "skip"), "positive number of seconds"),
    (("k", True, "skip"), "positive number of seconds"),
    (("k", float("inf"), "skip"), "positive number of seconds"),
    (("k", None, "merge"), "one of 'skip', 'replace', 'error'"),
])
def test_bad_call_options_are_refused(options, message):
    with pytest.raises(ConfigurationError, match=message):
        check_options(*options)


def test_task_options_become_the_jobs_key(app):
    @app.task(name="proj.index", unique_on=("args",), unique_for=30, on_conflict="replace")
    def index(doc):
        return doc

    @app.task(name="proj.by_user", unique_on=lambda args, kwargs: str(args[0]))
    def by_user(user):
        return user

    spec = index.build_job(("readme",), {})
    assert spec.unique_key == derive_key("proj.index", ("args",), ("readme",), {})
    assert (spec.unique_for, spec.on_conflict) == (30.0, "replace")
    assert index.build_job(("readme",), {}, unique_key="mine", on_conflict="error").unique_key == "mine"
    assert by_user.build_job((5,), {}).unique_key == "proj.by_user:5"
    plain = app.task(name="proj.plain")(lambda: None)
    spec = plain.build_job((), {})
    assert (spec.unique_key, spec.unique_for, spec.on_conflict) == (None, None, "skip")
    with pytest.raises(ConfigurationError, match="need a unique key"):
        plain.build_job((), {}, on_conflict="replace")
    with pytest.raises(TaskDefinitionError, match="unique_for must be a positive number"):
        app.task(name="proj.bad", unique_on=("args",), unique_for=0)(lambda: None)


def test_a_keyed_call_cannot_go_through_an_exchange(app):
    add = app.task(name="proj.add")(lambda x, y: x + y)
    with pytest.raises(ConfigurationError, match="cannot be used with an exchange"):
        add.build_job((1, 2), {}, unique_key="k", exchange="events", routing_key="a")


def test_a_key_is_indexed_as_a_uuid_of_its_hash():
    assert key_hash("digest:7") == key_hash("digest:7")
    assert key_hash("digest:7") != key_hash("digest:8")
    assert len(key_hash("x" * MAX_KEY_LENGTH)) == 36  # a uuid's text, whatever the key's length
