"""JSON by default (rich types round-trip through a worker), msgpack optional, pickle only on
opt-in, unserializable arguments refused at enqueue, JSON arguments and results readable with SQL.
The codec alone: tests/unit/test_serialization.py."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import uuid
from fractions import Fraction

import psycopg
import pytest

from sqlq import App
from sqlq.errors import ContentDisallowed, SerializationError

TIMEOUT = 60

RICH = [
    dt.datetime(2026, 3, 8, 7, 30, 15, 123456, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 8, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    dt.datetime(2026, 1, 1, 12, 0),  # naive stays naive
    dt.date(2026, 2, 28),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    decimal.Decimal("19.990"),
    b"\x00\xffbinary\n",
    {"nested": [decimal.Decimal("-0.5"), {"at": dt.date(1999, 12, 31)}], "plain": [1, "two", None, True]},
]


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


@pytest.fixture
def echo(app: App):
    seen: dict = {}

    @app.task
    def echo(*args, **kwargs):
        seen.update(args=list(args), kwargs=kwargs)  # what the worker decoded, before the result trip
        return [list(args), kwargs]

    echo.seen = seen
    return echo


def _count(conn: psycopg.Connection, schema: str) -> int:
    return conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()[0]


# --- JSON ---------------------------------------------------------------------------------------

def test_json_round_trip_of_rich_types_through_a_worker(app: App, echo, run_worker):
    result = echo.apply_async(RICH, {"when": RICH[0], "raw": RICH[6]})
    with run_worker(app):
        args, kwargs = result.get(timeout=TIMEOUT)
    assert echo.seen == {"args": RICH, "kwargs": {"when": RICH[0], "raw": RICH[6]}}
    assert _types(echo.seen["args"]) == _types(RICH)
    assert args == RICH and _types(args) == _types(RICH)
    assert kwargs == {"when": RICH[0], "raw": RICH[6]}
    assert args[1].utcoffset() == dt.timedelta(hours=-5)


def test_json_arguments_are_readable_with_sql(app: App, echo, raw_conn):
    result = echo.delay("hello", 42, 1.5, user={"id": 7}, when=dt.date(2026, 5, 1))
    row = raw_conn.execute(
        f"""SELECT content_type, args->>0, (args->>1)::int, (args->>2)::float8, kwargs->'user'->>'id',
                   kwargs->'when'->>'__value__', payload
            FROM "{app.conf.schema}".jobs WHERE id = %s""", (result.id,)).fetchone()
    assert row == ("application/json", "hello", 42, 1.5, "7", "2026-05-01", None)


def test_json_results_are_readable_with_sql(app: App, echo, run_worker, raw_conn):
    result = echo.delay("x", n=3)
    with run_worker(app):
        result.get(timeout=TIMEOUT)
    row = raw_conn.execute(
        f"""SELECT result->0->>0, (result->1->>'n')::int, result_content_type
            FROM "{app.conf.schema}".results WHERE id = %s""", (result.id,)).fetchone()
    assert row == ("x", 3, "application/json")


# --- msgpack ------------------------------------------------------------------------------------

def test_msgpack_round_trip_through_a_worker(app: App, run_worker, raw_conn):
    app.conf.accept_content = ["json", "msgpack"]

    @app.task(serializer="msgpack")
    def packed(*args):
        return list(args)

    result = packed.apply_async(RICH)
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) == RICH
    assert _types(result.result) == _types(RICH)
    row = raw_conn.execute(
        f"""SELECT content_type, args, payload IS NOT NULL, result, result_payload IS NOT NULL,
                   result_content_type
            FROM "{app.conf.schema}".results WHERE id = %s""", (result.id,)).fetchone()
    assert row == ("application/x-msgpack", None, True, None, True, "application/x-msgpack")


def test_msgpack_is_refused_unless_accepted(app: App, echo, run_worker):
    result = echo.apply_async((1,), serializer="msgpack")
    with run_worker(app):
        with pytest.raises(ContentDisallowed, match="'msgpack'.*accept_content"):
            result.get(timeout=TIMEOUT)
    assert echo.seen == {}


# --- pickle -------------------------------------------------------------------------------------

def test_pickle_is_refused_by_default(app: App, echo, run_worker, raw_conn):
    result = echo.apply_async((Fraction(1, 3),), serializer="pickle")
    with run_worker(app):
        with pytest.raises(ContentDisallowed) as excinfo:
            result.get(timeout=TIMEOUT)
    assert echo.seen == {}  # never unpickled, never run
    message = str(excinfo.value)
    assert "refusing to decode a 'pickle' message" in message and "accept_content" in message
    assert result.id in message
    exc_type = raw_conn.execute(f'SELECT exc_type FROM "{app.conf.schema}".results WHERE id = %s',
                                (result.id,)).fetchone()[0]
    assert exc_type == "sqlq.errors.ContentDisallowed"


def test_pickle_works_when_accepted(app: App, run_worker, database_url):
    app.conf.accept_content = ["json", "pickle"]

    @app.task(serializer="pickle")
    def halve(value):
        return {"half": value / 2, "lock_free": frozenset({value})}

    result = halve.delay(Fraction(1, 3))
    with run_worker(app):
        assert result.get(timeout=TIMEOUT) == {"half": Fraction(1, 6), "lock_free": frozenset({Fraction(1, 3)})}

    reader = App("reader", database_url=database_url, schema=app.conf.schema)  # accepts json only
    try:
        assert reader.AsyncResult(result.id).state == "SUCCESS"
        with pytest.raises(ContentDisallowed, match="'pickle'"):
            _ = reader.AsyncResult(result.id).result
    finally:
        reader.close()


# --- what cannot be serialized ------------------------------------------------------------------

def test_unserializable_positional_argument_is_named(app: App, echo, raw_conn):
    for serializer in ("json", "msgpack", "pickle"):
        with pytest.raises(SerializationError,
                           match=f"positional argument 1 \\(lock\\) cannot be serialized with {serializer}"):
            echo.apply_async(("fine", threading.Lock()), serializer=serializer)
    assert _count(raw_conn, app.conf.schema) == 0


def test_unserializable_keyword_argument_is_named(app: App, echo, raw_conn):
    with pytest.raises(SerializationError, match="keyword argument 'conn' \\(Connection\\) cannot be serialized"):
        echo.delay(1, conn=raw_conn)
    assert _count(raw_conn, app.conf.schema) == 0


def test_unserializable_return_value_is_a_failure(app: App, run_worker):
    @app.task
    def leaky():
        return threading.Lock()

    result = leaky.delay()
    with run_worker(app):
        with pytest.raises(SerializationError, match=f"return value of {leaky.name} \\(lock\\)"):
            result.get(timeout=TIMEOUT)


def test_unknown_serializer_setting(app: App, echo, raw_conn):
    app.conf.task_serializer = "yaml"
    with pytest.raises(SerializationError, match="unknown serializer 'yaml'; choose one of: json, msgpack, pickle"):
        echo.delay(1)
    assert _count(raw_conn, app.conf.schema) == 0
