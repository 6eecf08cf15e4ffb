"""Poison data, the pure parts (no server): finding values JSON/jsonb cannot carry, escaping
text PostgreSQL cannot store, describing exceptions that resist it, the finisher's split, the
bounds of a runnable row, and rebuilding exceptions without importing anything."""

from __future__ import annotations

import math
import struct
import sys

import psycopg
import pytest

from sqlq import serialization
from sqlq.errors import DatabaseUnavailableError, SerializationError, TaskError
from sqlq.result import rebuild_exception
from sqlq.store import ClaimedJob
from sqlq.worker.execution import exception_type_name, failure, invalid_row_reason
from sqlq.worker.recording import diagnose, is_data_error, split_record


@pytest.mark.parametrize("value, found", [
    (math.nan, "the value is NaN"),
    ([1, {"a": [2, math.inf]}], "[1]['a'][1] is Infinity"),
    ({"x": -math.inf}, "['x'] is -Infinity"),
    (["ok", "NUL \x00"], "[1] contains a NUL character (\\x00)"),
    ({"k\x00": 1}, "has a key containing a NUL character"),
    ((1, {2.5, math.nan}), "[1]['<set item>'] is NaN"),
])
def test_unstorable_json_values_are_found_and_located(value, found):
    """Each value JSON or jsonb cannot carry is reported with where it is, and json_dumps refuses
    it with that sentence."""
    assert found in serialization.unstorable_json_value(value)
    with pytest.raises(ValueError, match="NaN|Infinity|NUL"):
        serialization.json_dumps(value)


def test_storable_values_pass_unchanged():
    """Ordinary data, a literal backslash-u0000 text, shared and circular containers, and nesting
    far deeper than the stack: no false alarm, no recursion error while looking."""
    shared = [1.5]
    assert serialization.unstorable_json_value({"a": shared, "b": shared, "t": "\\u0000"}) is None
    assert serialization.json_dumps(["\\u0000"]) == '["\\\\u0000"]'
    circular: list = [1]
    circular.extend([circular, circular])
    assert serialization.unstorable_json_value(circular) is None
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert serialization.unstorable_json_value(deep) is None


def test_nan_arguments_are_refused_naming_the_argument():
    with pytest.raises(SerializationError, match=r"keyword argument 'ratio' \(float\).*NaN, which JSON cannot carry"):
        serialization.encode_call([1], {"ratio": math.nan})


def test_db_text_escapes_nul_and_lone_surrogates_visibly():
    """NUL reads as \\x00 and a lone surrogate as \\udcxx; ordinary text comes back as it is."""
    assert serialization.db_text("a\x00b\udc80c\ud800") == "a\\x00b\\udc80c\\ud800"
    text = "plain ünïcode ✓"
    assert serialization.db_text(text) is text
    assert serialization.db_text(None) is None

    class Sub(str):
        def __str__(self):
            raise RuntimeError("never called")

    assert type(serialization.db_text(Sub("x\x00"))) is str


def test_safe_str_never_raises():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    class Odd(Exception):
        def __str__(self):
            return type("S", (str,), {})("odd")

    assert serialization.safe_str(Unprintable()) == "<Unprintable object: str() raised RuntimeError>"
    assert type(serialization.safe_str(Odd())) is str


def test_decoding_errors_of_any_kind_are_serialization_errors():
    """A bad tagged decimal, a uuid that is not a string, nesting deeper than the decoder's stack."""
    for args in ('[{"__type__": "decimal", "__value__": "x"}]', '[{"__type__": "uuid", "__value__": 5}]',
                 "[" * 5000 + "]" * 5000, '[{"__type__": [1], "__value__": 1}]'):
        with pytest.raises(SerializationError, match="cannot decode JSON arguments"):
            serialization.decode_call(serialization.JSON, args, "{}", None, ["json"])


def _job(attempt: int = 1, retries: int = 0) -> ClaimedJob:
    return ClaimedJob(id="j", seq=1, task="t", queue="q", priority=0, args="[]", kwargs="{}", payload=None,
                      content_type=serialization.JSON, headers=None, expired=False, attempt=attempt,
                      retries=retries, acks_late=True, group_id=None)


def test_failure_of_a_hostile_exception_is_storable_text():
    class Hostile(Exception):
        def __str__(self):
            raise RuntimeError("no")

    Hostile.__module__ = "evil\x00mod"
    outcome = failure(_job(), Hostile(), "tb \udc80")
    assert outcome.exc_type == "evil\\x00mod.test_failure_of_a_hostile_exception_is_storable_text.<locals>.Hostile"
    assert outcome.exc_message == "<Hostile object: str() raised RuntimeError>"
    assert outcome.traceback == "tb \\udc80"
    assert exception_type_name(KeyError()) == "KeyError"


@pytest.mark.parametrize("attempt, retries, reason", [
    (1, 0, None), (2147483647, 2147483646, None),
    (0, 0, "attempt = -1"), (-4, 0, "attempt = -5"), (1, -1, "retries = -1"),
    (1, 2147483647, "retries = 2147483647"), (0, -2, "attempt = -1, retries = -2"),
])
def test_invalid_row_reason_names_the_column_and_value(attempt, retries, reason):
    """attempt is checked as it was before the claim added one; both must be 0..2147483646."""
    found = invalid_row_reason(_job(attempt, retries))
    assert found == reason if reason is None else reason in found


def test_split_record_writes_the_good_and_hands_over_each_bad_item():
    """One write for a clean batch; a batch refused for its data is halved down to single items,
    each good one written, each bad one given to ``poison`` with its error."""
    written, poisoned, calls = [], [], []

    def write(batch):
        calls.append(list(batch))
        if any("bad" in item for item in batch):
            raise psycopg.DataError("refused")
        written.extend(batch)

    items = [f"ok{i}" for i in range(16)]
    split_record(items, write, lambda item, exc: poisoned.append(item))
    assert written == items and len(calls) == 1
    items[3], items[11] = "bad3", "bad11"
    written.clear()
    split_record(items, write, lambda item, exc: poisoned.append((item, str(exc))))
    assert sorted(written) == sorted(i for i in items if "bad" not in i)
    assert poisoned == [("bad3", "refused"), ("bad11", "refused")]


@pytest.mark.parametrize("error", [psycopg.OperationalError("gone"), psycopg.InterfaceError("closed"),
                                   DatabaseUnavailableError("down"), KeyboardInterrupt()])
def test_split_record_lets_connection_errors_through_untouched(error):
    def write(batch):
        raise error

    with pytest.raises(type(error)):
        split_record(["a", "b"], write, lambda item, exc: pytest.fail("a connection error is no poison"))


def test_what_counts_as_a_data_error():
    for exc in (psycopg.DataError(), psycopg.IntegrityError(), psycopg.ProgrammingError(),
                UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed"), ValueError(),
                struct.error()):
        assert is_data_error(exc), exc
    for exc in (psycopg.OperationalError(), psycopg.errors.AdminShutdown(), psycopg.InterfaceError(),
                DatabaseUnavailableError("x"), RuntimeError()):
        assert not is_data_error(exc), exc


def test_diagnose_names_the_field_and_what_it_holds():
    assert diagnose({"result": "[1, NaN]"}) == "result contains NaN, which JSON cannot carry"
    assert diagnose({"result": '{"a": -Infinity}'}) == "result contains -Infinity, which JSON cannot carry"
    assert diagnose({"result": "1", "exc_message": "a\x00"}).startswith("exc_message contains a NUL character (\\x00)")
    assert diagnose({"traceback": "\udcff"}).startswith("traceback contains a lone surrogate (\\udcff)")
    assert diagnose({"result": "[1]", "exc_message": "fine"}) is None


def test_rebuild_exception_imports_nothing(tmp_path, monkeypatch):
    """A type whose module is not loaded gives TaskError; the module's file is never executed."""
    (tmp_path / "never_imported_mod.py").write_text("raise SystemExit('imported!')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    error = rebuild_exception("never_imported_mod.Boom", "m", "tb")
    assert isinstance(error, TaskError) and error.exc_type == "never_imported_mod.Boom"
    assert "never_imported_mod" not in sys.modules
    assert isinstance(rebuild_exception("os.system", "m", None), TaskError)  # not an exception class
    assert isinstance(rebuild_exception("ValueError", "m", None), ValueError)
