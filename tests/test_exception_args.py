"""Exception arguments survive the trip (Celery's "Creating pickleable exceptions", issue #12), and
``get()`` inside a task refuses to wait unless told (Celery's ``disable_sync_subtasks``).

A FAILURE row keeps the exception's ``args`` in its ``result`` column, encoded with the job's result
serializer, and ``AsyncResult`` rebuilds the exception as ``cls(*args)``: ``HttpError(404)`` comes
back with ``status_code == 404``, an int. Args that cannot be encoded leave the message alone, and the
failure is recorded all the same.
"""

from __future__ import annotations

import pytest

from sqlq import App
from sqlq.result import E_WOULDBLOCK, AsyncResult, GroupResult

TIMEOUT = 60


class HttpError(Exception):
    """Celery's guide's example: the argument is an int and ``__init__`` passes it on."""

    def __init__(self, status_code):
        self.status_code = status_code
        Exception.__init__(self, status_code)


class ThreeArgsError(Exception):
    def __init__(self, code, reason, retry_after):
        self.code, self.reason, self.retry_after = code, reason, retry_after
        Exception.__init__(self, code, reason, retry_after)


class Opaque:
    """No serializer sqlq uses for JSON can encode this."""


class WrapsObjectError(Exception):
    """Takes one argument of any kind: rebuilt from the message when the object does not encode."""


def _schema_row(raw_conn, schema: str, task_id: str):
    return raw_conn.execute(f"SELECT state, result, result_content_type, exc_message FROM {schema}.results "
                            f"WHERE id = %s", (task_id,)).fetchone()


@pytest.fixture
def tasks(app: App):
    class Tasks:
        @app.task
        def http(code):
            raise HttpError(code)

        @app.task
        def three():
            raise ThreeArgsError(503, "maintenance", 30)

        @app.task
        def opaque():
            raise WrapsObjectError(Opaque())

        @app.task
        def nul():
            raise WrapsObjectError("a\x00b")

        @app.task
        def succeed():
            return {"ok": True}

    return Tasks


def test_an_int_argument_comes_back_as_an_int(app, tasks, run_worker, raw_conn, schema):
    with run_worker(app):
        result = tasks.http.delay(404)
        with pytest.raises(HttpError) as raised:
            result.get(timeout=TIMEOUT)
    assert raised.value.status_code == 404 and isinstance(raised.value.status_code, int)
    fresh = AsyncResult(result.id, app=app)
    assert isinstance(fresh.result, HttpError) and fresh.result.status_code == 404
    assert fresh.result.args == (404,)
    state, stored, ctype, message = _schema_row(raw_conn, schema, result.id)
    assert (state, stored, ctype, message) == ("FAILURE", [404], "application/json", "404")


def test_three_arguments_come_back(app, tasks, run_worker):
    with run_worker(app):
        result = tasks.three.delay()
        with pytest.raises(ThreeArgsError) as raised:
            result.get(timeout=TIMEOUT)
    exc = raised.value
    assert (exc.code, exc.reason, exc.retry_after) == (503, "maintenance", 30)
    assert exc.args == (503, "maintenance", 30)


def test_args_that_do_not_encode_fall_back_to_the_message(app, tasks, run_worker, raw_conn, schema):
    with run_worker(app):
        result = tasks.opaque.delay()
        with pytest.raises(WrapsObjectError) as raised:
            result.get(timeout=TIMEOUT)
        nul = tasks.nul.delay()
        with pytest.raises(WrapsObjectError) as raised_nul:
            nul.get(timeout=TIMEOUT)
    assert "Opaque object" in raised.value.args[0]
    state, stored, ctype, _ = _schema_row(raw_conn, schema, result.id)
    assert (state, stored, ctype) == ("FAILURE", None, None)
    # jsonb cannot hold NUL: the args are left out rather than failing the whole batch
    assert raised_nul.value.args == ("a\\x00b",)
    assert _schema_row(raw_conn, schema, nul.id)[:3] == ("FAILURE", None, None)


def test_msgpack_result_serializer_keeps_the_args(app, tasks, run_worker):
    app.conf.result_serializer = "msgpack"
    with run_worker(app):
        result = tasks.http.delay(410)
        with pytest.raises(HttpError) as raised:
            result.get(timeout=TIMEOUT)
        # an app that does not accept msgpack does not decode the args: the message, as before
        assert raised.value.status_code == "410"
        app.conf.accept_content = ["json", "msgpack"]
        with pytest.raises(HttpError) as raised:
            AsyncResult(result.id, app=app).get(timeout=TIMEOUT)
    assert raised.value.status_code == 410


def test_a_success_is_recorded_as_before(app, tasks, run_worker, raw_conn, schema):
    with run_worker(app):
        result = tasks.succeed.delay()
        assert result.get(timeout=TIMEOUT) == {"ok": True}
    assert _schema_row(raw_conn, schema, result.id) == ("SUCCESS", {"ok": True}, "application/json", None)


def test_prefork_children_send_the_args(basic_app, run_worker):
    from tests.apps import basic

    with run_worker(basic_app, pool="prefork", concurrency=1):
        with pytest.raises(ValueError) as raised:
            basic.fail.delay(404).get(timeout=TIMEOUT)
    assert raised.value.args == (404,)


def test_eager_mode_gives_the_same_exception(app, tasks):
    result = tasks.http.apply((404,))
    assert isinstance(result.result, HttpError) and result.result.status_code == 404
    with pytest.raises(ThreeArgsError) as raised:
        tasks.three.apply().get()
    assert raised.value.args == (503, "maintenance", 30)


# get() inside a task ---------------------------------------------------------------------------


@pytest.fixture
def nested(app: App):
    class Nested:
        @app.task
        def add(x, y):
            return x + y

        @app.task
        def waits(allow):
            return Nested.add.delay(1, 1).get(timeout=TIMEOUT, disable_sync_subtasks=not allow)

        @app.task
        def waits_by_default():
            return Nested.add.delay(1, 1).get(timeout=TIMEOUT)

        @app.task
        def waits_on_group(task_id):
            return GroupResult(None, [AsyncResult(task_id, app=app)], app).get(timeout=TIMEOUT)

        @app.task
        def reads(task_id):
            return AsyncResult(task_id, app=app).get(timeout=TIMEOUT)

        @app.task
        def eager_subtask():
            return Nested.add.apply((2, 3)).get()

    return Nested


def test_get_inside_a_worker_task_raises_celerys_error(app, nested, run_worker):
    with run_worker(app, concurrency=2):
        for result in (nested.waits_by_default.delay(), nested.waits.delay(False)):
            with pytest.raises(RuntimeError) as raised:
                result.get(timeout=TIMEOUT)
            assert str(raised.value) == E_WOULDBLOCK
        done = nested.add.delay(2, 2)
        assert done.get(timeout=TIMEOUT) == 4  # outside any task: waits as always
        with pytest.raises(RuntimeError) as raised:
            nested.waits_on_group.delay(done.id).get(timeout=TIMEOUT)
    assert "Never call result.get() within a task!" in str(raised.value)


def test_disable_sync_subtasks_false_lets_a_task_wait(app, nested, run_worker):
    with run_worker(app, concurrency=2):
        assert nested.waits.delay(True).get(timeout=TIMEOUT) == 2


def test_eager_tasks_may_wait_as_in_celery(app, nested, run_worker):
    assert nested.eager_subtask.apply().get() == 5
    with run_worker(app):
        done = nested.add.delay(3, 4)
        assert done.get(timeout=TIMEOUT) == 7
        # an eager task reading a real result: not a worker slot held, so not refused
        assert nested.reads.apply((done.id,)).get() == 7
