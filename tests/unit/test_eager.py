"""Eager mode without a server (the unit tier refuses any connection, so every test here also
proves that an eager call needs no PostgreSQL): the arguments' and the result's round trip through
the serializers, ``self.request``, signals and hooks in a worker's order, retries run at once,
``throw``/``task_eager_propagates``, and EagerResult's Celery API."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal

import pytest

from sqlq import Task, signals
from sqlq.eager import EagerResult, apply
from sqlq.errors import ConfigurationError, ContentDisallowed, SerializationError
from sqlq.result import AsyncResult


class Boom(Exception):
    pass


@pytest.fixture
def received():
    """Every task signal sent during the test, as (signal name, kwargs)."""
    seen: list[tuple[str, dict]] = []
    hooked = []
    for sig in (signals.task_prerun, signals.task_postrun, signals.task_success, signals.task_failure,
                signals.task_retry):
        def receiver(sender=None, signal=None, **kwargs):
            seen.append((signal.name, kwargs))

        sig.connect(receiver)
        hooked.append((sig, receiver))
    yield seen
    for sig, receiver in hooked:
        sig.disconnect(receiver)


def test_arguments_make_the_trip_a_job_makes(app):
    @app.task(name="proj.echo")
    def echo(*args, **kwargs):
        return [[type(a).__name__ for a in args], sorted(kwargs)]

    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    seen = []

    @app.task(name="proj.look")
    def look(a, b, when, amount):
        seen.append((a, b, when, amount))

    apply(look, ((1, 2), {3}, when, decimal.Decimal("1.5")))
    assert seen == [([1, 2], {3}, when, decimal.Decimal("1.5"))]  # a tuple arrives as a list, as in a worker
    assert apply(echo, (1, "x"), {"k": None}).get() == [["int", "str"], ["k"]]


def test_an_argument_a_worker_could_not_receive_raises_before_the_task_runs(app):
    ran = []

    @app.task(name="proj.take")
    def take(x):
        ran.append(x)

    with pytest.raises(SerializationError, match="positional argument 0 \\(object\\)"):
        apply(take, (object(),))
    with pytest.raises(SerializationError, match="keyword argument 'x'.*NaN"):
        apply(take, (), {"x": float("nan")})
    with pytest.raises(SerializationError, match="args must be a list or tuple"):
        apply(take, "abc")
    assert ran == []


def test_arguments_a_worker_would_refuse_to_decode_fail_the_call(app):
    @app.task(name="proj.pickled", serializer="pickle")
    def pickled(x):
        return x

    result = apply(pickled, (1,))  # pickle is not in accept_content: a worker refuses to decode it
    assert result.state == "FAILURE" and isinstance(result.result, ContentDisallowed)
    assert "cannot decode the arguments of proj.pickled" in str(result.result)
    app.conf.accept_content = ["json", "pickle"]
    assert apply(pickled, (1,)).get() == 1


def test_the_return_value_makes_the_trip_a_stored_result_makes(app):
    @app.task(name="proj.pair")
    def pair():
        return (1, dt.date(2026, 1, 1))

    @app.task(name="proj.unstorable")
    def unstorable():
        return object()

    @app.task(name="proj.ignored", ignore_result=True)
    def ignored():
        return object()

    assert apply(pair).get() == [1, dt.date(2026, 1, 1)]
    failed = apply(unstorable)
    assert failed.state == "FAILURE" and isinstance(failed.result, SerializationError)
    assert "return value of proj.unstorable (object) cannot be serialized with json" in str(failed.result)
    assert apply(ignored).state == "SUCCESS"  # not stored by a worker either, so not checked


def test_the_request_is_eager_and_carries_the_call(app):
    seen = []

    @app.task(name="proj.who", bind=True, queue="low", priority=3)
    def who(self, x):
        seen.append(self.request)

    result = apply(who, (1,), task_id="report-2024-01", headers={"trace": "abc"})
    (request,) = seen
    assert result.id == result.task_id == "report-2024-01"
    assert request.is_eager and request.id == "report-2024-01" and request.task == "proj.who"
    assert (request.args, request.kwargs, request.retries, request.queue, request.priority) == ([1], {}, 0, "low", 3)
    assert request.headers == {"trace": "abc"} and request.hostname
    apply(who, (1,), queue="other", priority=7)
    assert (seen[-1].queue, seen[-1].priority) == ("other", 7)
    assert who.request.is_eager and who.request.id is None  # outside a call: the default request


def test_signals_are_sent_as_a_worker_sends_them(app, received):
    @app.task(name="proj.ok")
    def ok(x):
        return x * 2

    @app.task(name="proj.fails")
    def fails():
        raise Boom("no")

    result = apply(ok, (21,), task_id="t1")
    assert [name for name, _ in received] == ["task_prerun", "task_success", "task_postrun"]
    assert received[0][1]["task_id"] == "t1" and received[0][1]["args"] == [21]
    assert received[1][1] == {"result": 42}
    assert received[2][1]["state"] == "SUCCESS" and received[2][1]["retval"] == 42
    assert result.get() == 42
    received.clear()
    apply(fails, task_id="t2")
    assert [name for name, _ in received] == ["task_prerun", "task_failure", "task_postrun"]
    failure = received[1][1]
    assert isinstance(failure["exception"], Boom) and "Boom: no" in failure["einfo"]
    assert received[2][1]["state"] == "FAILURE"


class Hooked(Task):
    """A task class with every hook, noting each call with its arguments."""

    calls: list[tuple] = []

    def before_start(self, task_id, args, kwargs):
        self.calls.append(("before_start", task_id, args, kwargs))

    def on_success(self, retval, task_id, args, kwargs):
        self.calls.append(("on_success", retval, task_id, args, kwargs))

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_failure", type(exc).__name__, task_id, args, kwargs,
                           einfo.exception is exc and einfo.type is Boom and "Boom: bad" in einfo.traceback))

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_retry", type(exc).__name__, task_id, args, kwargs))

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        self.calls.append(("after_return", status, task_id))


def _hooked(app, fn, name, **options):
    task = app.task(base=Hooked, name=name, **options)(fn)  # (a subclass of Hooked, registered)
    Hooked.calls = []
    return task


def test_hooks_are_called_with_celerys_arguments(app):
    def double(x):
        return x * 2

    def explode(x):
        raise Boom("bad")

    ok = _hooked(app, double, "proj.double")
    assert apply(ok, (2,), task_id="a").get() == 4
    assert Hooked.calls == [("before_start", "a", [2], {}), ("on_success", 4, "a", [2], {}),
                            ("after_return", "SUCCESS", "a")]
    bad = _hooked(app, explode, "proj.explode")
    assert apply(bad, (1,), task_id="b").failed()
    assert Hooked.calls == [("before_start", "b", [1], {}), ("on_failure", "Boom", "b", [1], {}, True),
                            ("after_return", "FAILURE", "b")]


def test_a_hook_that_raises_is_logged_and_the_outcome_stands(app, caplog):
    class Broken(Task):
        def on_success(self, retval, task_id, args, kwargs):
            raise RuntimeError("hook broke")

    def one():
        return 1

    task = app.task(base=Broken, name="proj.broken")(one)
    assert apply(task).get() == 1
    assert "the on_success hook of task proj.broken raised" in caplog.text


def test_retry_runs_again_at_once_until_it_succeeds(app, received):
    @app.task(name="proj.flaky", bind=True, max_retries=5, default_retry_delay=600)
    def flaky(self):
        if self.request.retries < 2:
            raise self.retry(exc=Boom(f"try {self.request.retries}"))
        return self.request.retries

    result = apply(flaky)
    assert result.get() == 2 and result.retries == 2
    assert [n for n, _ in received].count("task_retry") == 2
    assert str(received[[n for n, _ in received].index("task_retry")][1]["reason"]) == "try 0"


def test_retries_used_up_end_as_failure_with_the_original_exception(app):
    calls = []

    def always(self):
        calls.append(self.request.retries)
        raise self.retry(exc=Boom("still down"), countdown=60)

    task = _hooked(app, always, "proj.always", bind=True, max_retries=2)
    result = apply(task, task_id="r")
    assert calls == [0, 1, 2]
    assert result.state == "FAILURE" and isinstance(result.result, Boom) and result.retries == 2
    assert [c[0] for c in Hooked.calls].count("on_retry") == 2
    assert ("after_return", "RETRY", "r") in Hooked.calls and Hooked.calls[-1] == ("after_return", "FAILURE", "r")


def test_autoretry_for_retries_at_once_within_its_limit(app):
    calls = []

    @app.task(name="proj.auto", bind=True, autoretry_for=(Boom,), retry_kwargs={"max_retries": 3})
    def auto(self):
        calls.append(self.request.retries)
        raise Boom("again")

    assert apply(auto).failed() and calls == [0, 1, 2, 3]
    assert apply(auto, retries=3).failed() and calls[-1] == 3  # starting at retries=3: no retry left


def test_throw_and_task_eager_propagates(app):
    @app.task(name="proj.bad")
    def bad():
        raise Boom("x")

    assert isinstance(apply(bad).result, Boom)  # the default: task_eager_propagates is False
    with pytest.raises(Boom):
        apply(bad, throw=True)
    app.conf.task_eager_propagates = True
    with pytest.raises(Boom):
        apply(bad)
    assert apply(bad, throw=False).failed()


def test_eager_result_has_celerys_api(app):
    @app.task(name="proj.bad")
    def bad():
        raise Boom("broken")

    ok = apply(app.task(name="proj.one")(lambda: 1), task_id="id-1")
    assert isinstance(ok, AsyncResult) and isinstance(ok, EagerResult)
    assert (ok.id, ok.task_id, ok.name, ok.state, ok.status, ok.result, ok.info) == (
        "id-1", "id-1", "proj.one", "SUCCESS", "SUCCESS", 1, 1)
    assert ok.ready() and ok.successful() and not ok.failed() and ok.traceback is None
    assert ok.get(timeout=1) == ok.wait() == 1 and ok.date_done is not None
    assert asyncio.run(ok.aget()) == 1
    assert repr(ok) == "<EagerResult: id-1>"
    failed = apply(bad)
    assert failed.failed() and not failed.successful() and "Boom: broken" in failed.traceback
    with pytest.raises(Boom):
        failed.get()
    assert isinstance(failed.get(propagate=False), Boom)
    assert failed.revoke() is False and failed.state == "FAILURE"  # it already ran
    failed.forget()
    assert (failed.state, failed.result, failed.traceback, failed.ready()) == ("PENDING", None, None, False)


def test_async_tasks_run_eagerly_inside_and_outside_an_event_loop(app):
    @app.task(name="proj.later", bind=True)
    async def later(self, x):
        await asyncio.sleep(0)
        return [x, self.request.is_eager, self.request.id]

    assert apply(later, (1,), task_id="c").get() == [1, True, "c"]

    async def from_a_test():
        return apply(later, (2,), task_id="d").get()

    assert asyncio.run(from_a_test()) == [2, True, "d"]


def test_options_a_queue_gives_meaning_to_are_accepted_and_unknown_ones_refused(app):
    @app.task(name="proj.now")
    def now():
        return "ran"

    result = apply(now, countdown=60, eta=dt.datetime(2030, 1, 1), expires=1, exchange=None, routing_key=None,
                   serializer="json", connection=None, time_limit=5, ignore_result=True)
    assert result.get() == "ran"
    with pytest.raises(ConfigurationError, match="unknown option\\(s\\) for proj.now.apply: chord"):
        apply(now, chord=[])
    assert apply(now, link=[]).get() == "ran"  # callbacks run eagerly too (none here)
    with pytest.raises(ConfigurationError, match="retries must be a whole number"):
        apply(now, retries=-1)
    with pytest.raises(ConfigurationError, match="task_id must be a non-empty string"):
        apply(now, task_id="")


def test_msgpack_serializer_option_is_used_for_the_round_trip(app):
    pytest.importorskip("msgpack")
    app.conf.accept_content = ["json", "msgpack"]

    @app.task(name="proj.kinds")
    def kinds(value):
        return type(value).__name__

    assert apply(kinds, (b"\x00\x01",), serializer="msgpack").get() == "bytes"
