"""Task classes without a server: Celery's attribute defaults, what @app.task builds (a subclass
of base= per function), class-based tasks and register_task, which hooks a class overrides, the
call-site argument check (typing), per-call options as the job's reserved header, and task ids
that are not UUIDs. What the worker does with all of it: tests/test_task_classes.py,
tests/test_task_options.py, tests/test_task_ids.py."""

from __future__ import annotations

import json
import uuid

import pytest

from sqlq import App, Task
from sqlq.errors import ConfigurationError, TaskDefinitionError
from sqlq.task import (
    APPLY_OPTIONS,
    BROKER_OPTIONS,
    CALL_HEADER,
    HOOKS,
    TASK_ID_NAMESPACE,
    ExceptionInfo,
    overridden_hooks,
    task_uuid,
)


@pytest.fixture
def app() -> App:
    return App("proj", database_url="postgresql://nobody@127.0.0.1:1/none", set_as_current=False)


def _nothing() -> None:
    return None


def _call_header(spec) -> dict:
    return json.loads(spec.headers).get(CALL_HEADER, {})


# --- attributes ---------------------------------------------------------------------------------

def test_task_attributes_are_class_attributes_with_celerys_defaults():
    expected = {
        "name": None, "max_retries": 3, "default_retry_delay": 180, "autoretry_for": (), "retry_backoff": False,
        "retry_backoff_max": 600, "retry_jitter": True, "acks_late": None, "ignore_result": None, "queue": None,
        "priority": None, "time_limit": None, "soft_time_limit": None, "rate_limit": None, "throws": (),
        "typing": True, "reject_on_worker_lost": None, "track_started": None, "serializer": None,
        "expires": None, "bind": False, "transactional": False,
    }
    assert {key: getattr(Task, key) for key in expected} == expected
    assert dict(Task.retry_kwargs) == {}


def test_app_task_makes_a_subclass_of_base_per_function(app):
    class Base(app.Task):
        max_retries = 7
        rate_limit = "10/s"

    @app.task(base=Base, queue="media", time_limit=5)
    def resize(path):
        """Resize one picture."""
        return path

    @app.task
    def plain(x):
        return x

    assert isinstance(resize, Base) and type(resize) is not Base and type(resize).__bases__ == (Base,)
    assert isinstance(plain, app.Task) and type(plain) is not type(resize)
    assert resize.max_retries == 7 and resize.rate_limit == "10/s"  # inherited from the base
    assert type(resize).queue == "media" and resize.time_limit == 5  # options: the subclass's attributes
    assert Base.queue is None and plain.time_limit is None  # nobody else changed
    assert resize.name == "tests.unit.test_task_classes.resize" and app.tasks[resize.name] is resize
    assert resize.__doc__ == "Resize one picture." and resize.__name__ == "resize"
    assert resize.__wrapped__.__name__ == "resize"
    assert resize("a.png") == "a.png" and resize.run("b.png") == "b.png"  # calling runs it here
    assert resize.app is app and app.Task is app.Task  # one base class per app


def test_an_option_may_be_any_attribute_of_the_base(app):
    class Base(app.Task):
        audit_channel = "default"

    @app.task(base=Base, audit_channel="payments")
    def pay(x):
        return x

    assert pay.audit_channel == "payments"
    with pytest.raises(TaskDefinitionError, match="unknown option.*audit_chanel.*known options"):
        app.task(base=Base, audit_chanel="x")(_nothing)
    with pytest.raises(TaskDefinitionError, match="unknown option.*delay"):
        app.task(delay=5)(_nothing)  # a method is not an option
    with pytest.raises(TaskDefinitionError, match="base= must be a subclass of sqlq.Task"):
        app.task(base=dict)(_nothing)
    with pytest.raises(TaskDefinitionError, match="autoretry_for= .* must be exception classes"):
        app.task(autoretry_for=["ValueError"])(_nothing)
    assert "tests.unit.test_task_classes._nothing" not in app.tasks


def test_bound_task_gets_itself_and_a_request(app):
    @app.task(bind=True, name="proj.whoami")
    def whoami(self, greeting):
        return self.name, self.request.id, self.request.called_directly, greeting

    assert whoami("hi") == ("proj.whoami", None, True, "hi")


def test_class_based_task_registered_the_celery_4_way(app):
    class Report(app.Task):
        queue = "reports"

        def run(self, month, *, fmt="pdf"):
            return f"{self.name}:{month}.{fmt}"

    task = app.register_task(Report())
    assert task.name == "tests.unit.test_task_classes.Report"  # module.ClassName, as in Celery
    assert app.tasks[task.name] is task and task.app is app
    assert task("2024-01", fmt="csv") == f"{task.name}:2024-01.csv"

    class Named(Task):  # sqlq.Task itself: the registering app binds it
        name = "proj.named"

        def run(self):
            return self.app

    named = app.register_task(Named)  # a class is instantiated
    assert app.tasks["proj.named"] is named and named() is app

    class NoBody(app.Task):
        name = "proj.nobody"

    with pytest.raises(TaskDefinitionError, match="defines no run"):
        app.register_task(NoBody())
    with pytest.raises(TaskDefinitionError, match="register_task needs a sqlq.Task"):
        app.register_task(lambda: None)  # type: ignore[arg-type]


def test_async_run_is_seen_per_class(app):
    class Fetch(app.Task):
        name = "proj.fetch"

        async def run(self, url):
            return url

    @app.task
    async def fetch2(url):
        return url

    assert app.register_task(Fetch()).is_async and fetch2.is_async
    assert not Task.is_async and not app.Task.is_async


# --- hooks ----------------------------------------------------------------------------------------

def test_overridden_hooks_are_computed_per_class(app):
    class Audited(app.Task):
        def on_failure(self, exc, task_id, args, kwargs, einfo):
            return None

        def after_return(self, status, retval, task_id, args, kwargs, einfo):
            return None

    @app.task
    def plain():
        return None

    @app.task(base=Audited)
    def audited():
        return None

    assert overridden_hooks(plain) == frozenset()
    assert overridden_hooks(audited) == {"on_failure", "after_return"}
    assert type(audited)._overridden_hooks is type(audited)._overridden_hooks  # (made once, with the class)

    def on_success(retval, task_id, args, kwargs):
        return None

    plain.on_success = on_success  # set on the instance (task_annotations)
    assert overridden_hooks(plain) == {"on_success"}
    assert HOOKS == {"before_start", "on_success", "on_failure", "on_retry", "after_return"}


def test_base_hooks_do_nothing(app):
    task = app.task(_nothing)
    einfo = ExceptionInfo(ValueError("x"), "text")
    assert task.before_start("id", (), {}) is None
    assert task.on_success(1, "id", (), {}) is None
    assert task.on_failure(ValueError(), "id", (), {}, einfo) is None
    assert task.on_retry(ValueError(), "id", (), {}, einfo) is None
    assert task.after_return("SUCCESS", 1, "id", (), {}, None) is None


def test_exception_info_is_celerys_shape():
    try:
        raise KeyError("missing")
    except KeyError as exc:
        einfo = ExceptionInfo(exc)
    assert einfo.type is KeyError and isinstance(einfo.exception, KeyError)
    assert "KeyError: 'missing'" in einfo.traceback and str(einfo) == einfo.traceback
    assert einfo.tb is not None


# --- typing: the call must fit the signature ----------------------------------------------------

def test_a_call_that_does_not_fit_run_raises_typeerror_at_the_call_site(app):
    @app.task
    def add(x, y=0, *, scale=1):
        return (x + y) * scale

    add.build_job((1,), {})
    add.build_job((1, 2), {"scale": 3})
    for args, kwargs in [((), {}), ((1, 2, 3), {}), ((1,), {"nope": 1}), ((1,), {"x": 2})]:
        with pytest.raises(TypeError, match=r"add\(x, y=0, \*, scale=1\): .*typing=False"):
            add.build_job(args, kwargs)
    with pytest.raises(TypeError):
        add.apply_many([((1, 2, 3), {})])  # the bulk forms check each call too

    @app.task(typing=False)
    def loose(x):
        return x

    loose.build_job((1, 2, 3), {})  # not checked: the worker's call will fail instead


def test_bound_and_class_based_signatures_leave_self_out(app):
    @app.task(bind=True)
    def bound(self, x):
        return x

    class Cls(app.Task):
        name = "proj.cls"

        def run(self, x, *rest):
            return x

    cls = app.register_task(Cls())
    bound.build_job((1,), {})
    cls.build_job((1, 2, 3, 4), {})
    with pytest.raises(TypeError):
        bound.build_job((1, 2), {})
    with pytest.raises(TypeError):
        cls.build_job((), {})


def test_a_required_keyword_only_argument_needs_a_keyword(app):
    @app.task
    def kw(*, when):
        return when

    kw.build_job((), {"when": 1})
    with pytest.raises(TypeError, match="when"):
        kw.build_job((), {})


# --- per-call options -------------------------------------------------------------------------------

def test_per_call_options_travel_in_the_reserved_header(app):
    @app.task
    def work(x):
        return x

    plain = work.build_job((1,), {})
    assert plain.headers == "{}"  # a call without them writes nothing extra
    spec = work.build_job((1,), {}, time_limit=10, soft_time_limit=5, ignore_result=True, shadow="work[eu]",
                          headers={"trace": "t1"})
    headers = json.loads(spec.headers)
    assert headers["trace"] == "t1"
    assert headers[CALL_HEADER] == {"time_limit": 10.0, "soft_time_limit": 5.0, "ignore_result": True,
                                    "shadow": "work[eu]"}


def test_per_call_options_are_checked_at_the_call(app):
    @app.task
    def work(x):
        return x

    for bad in ({"time_limit": 0}, {"soft_time_limit": "5"}, {"time_limit": float("inf")},
                {"ignore_result": "yes"}, {"shadow": ""}, {"retry": "no"}, {"retry_policy": [1]},
                {"add_to_parent": "maybe"}):
        with pytest.raises(ConfigurationError):
            work.build_job((1,), {}, **bad)
    with pytest.raises(ConfigurationError, match="unknown retry_policy key.*max_retry.*interval_start"):
        work.build_job((1,), {}, retry_policy={"max_retry": 3})
    with pytest.raises(ConfigurationError, match=f"header {CALL_HEADER!r} is reserved"):
        work.build_job((1,), {}, headers={CALL_HEADER: 1}, shadow="x")
    spec = work.build_job((1,), {}, retry=True, retry_policy={"max_retries": 3, "interval_start": 0,
                                                              "interval_step": 0.2, "interval_max": 1})
    assert _call_header(spec) == {}  # checked, then nothing for the worker: the producer's concern


def test_broker_options_are_accepted_without_effect(app):
    @app.task
    def work(x):
        return x

    plain = work.build_job((1,), {})
    given = work.build_job((1,), {}, exchange_type="topic", delivery_mode=2, mandatory=True, immediate=False,
                           compression="zlib", producer=object())
    assert (given.headers, given.queue, given.priority) == (plain.headers, plain.queue, plain.priority)
    assert BROKER_OPTIONS <= APPLY_OPTIONS
    assert {"exchange_type", "delivery_mode", "mandatory", "immediate", "compression", "producer"} == BROKER_OPTIONS


def test_callbacks_cannot_ride_on_one_job_built_alone(app):
    @app.task
    def work(x):
        return x

    for option in ("link", "link_error"):
        with pytest.raises(ConfigurationError, match=rf"{option} is run by the database .*build_job.*apply_async\({option}="):
            work.build_job((1,), {}, **{option: work.s()})
    with pytest.raises(ConfigurationError, match=r"unknown option\(s\) .*chord; chord is not an option here: .*sqlq.chord"):
        work.build_job((1,), {}, chord=work.s())


def test_reject_on_worker_lost_false_fails_a_lost_job_instead_of_rerunning_it(app):
    @app.task(acks_late=True)
    def rerun(x):
        return x

    @app.task(acks_late=True, reject_on_worker_lost=False)
    def once(x):
        return x

    @app.task(acks_late=False, reject_on_worker_lost=True)
    def early(x):
        return x

    assert rerun.build_job((1,), {}).acks_late is True
    assert once.build_job((1,), {}).acks_late is False
    assert early.build_job((1,), {}).acks_late is False  # (only matters with acks_late, as in Celery)


# --- task ids -----------------------------------------------------------------------------------------

def test_task_uuid_maps_any_string_to_a_fixed_uuid():
    assert task_uuid("report-2024-01") == str(uuid.uuid5(TASK_ID_NAMESPACE, "report-2024-01"))
    assert task_uuid("report-2024-01") == task_uuid("report-2024-01") != task_uuid("report-2024-02")
    known = uuid.uuid4()
    for spelling in (str(known), str(known).upper(), "{" + str(known) + "}", known.hex):
        assert task_uuid(spelling) == str(known)
    with pytest.raises(ConfigurationError, match="non-empty string"):
        task_uuid("")


def test_a_task_id_that_is_not_a_uuid_travels_with_the_job(app):
    @app.task
    def work(x):
        return x

    spec = work.build_job((1,), {}, task_id="report-2024-01")
    assert spec.id == task_uuid("report-2024-01")
    assert _call_header(spec) == {"id": "report-2024-01"}
    chosen = str(uuid.uuid4())
    spec = work.build_job((1,), {}, task_id=chosen)
    assert spec.id == chosen and spec.headers == "{}"  # a UUID is the row's id as it is
    spec = work.build_job((1,), {}, task_id=chosen.upper())
    assert spec.id == chosen and _call_header(spec) == {"id": chosen.upper()}


def _fits(fn, args, kwargs) -> bool:
    import inspect

    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def test_the_fast_argument_check_agrees_with_the_signature(app):
    """The count-and-names check decides as binding to the signature would, for every shape."""

    def a(x, y=1, *, z, w=2): ...
    def b(x, /, y, *rest, **more): ...
    def c(): ...
    def d(x, y, z=3): ...

    calls = [((), {}), ((1,), {}), ((1, 2), {}), ((1, 2, 3), {}), ((1, 2, 3, 4), {}), ((1,), {"z": 1}),
             ((), {"x": 1, "z": 2}), ((1,), {"x": 1, "z": 2}), ((1,), {"y": 1, "z": 2, "w": 3}),
             ((1,), {"q": 1}), ((1, 2), {"z": 1}), ((), {"x": 1, "y": 2}), ((1,), {"y": 2}),
             ((1, 2), {"y": 2}), ((), {"z": 1})]
    for number, fn in enumerate((a, b, c, d)):
        task = app.task(name=f"proj.shape{number}")(fn)
        for args, kwargs in calls:
            try:
                task.build_job(args, kwargs)
                accepted = True
            except TypeError:
                accepted = False
            assert accepted == _fits(fn, args, kwargs), (fn.__name__, args, kwargs)


# --- the Task side of canvas and eager mode -----------------------------------------------------------

def test_s_si_and_signature_make_canvas_signatures(app):
    from sqlq.canvas import Signature

    @app.task(name="proj.add")
    def add(x, y):
        return x + y

    partial, frozen = add.s(2), add.si(2, 3)
    assert isinstance(partial, Signature) and (partial.task, partial.args, partial.immutable) == ("proj.add", (2,),
                                                                                                  False)
    assert frozen.immutable and frozen.args == (2, 3)
    sig = add.signature((1,), {"y": 2}, countdown=5)
    assert (sig.args, sig.kwargs, sig.options) == ((1,), {"y": 2}, {"countdown": 5})
    assert partial.apply((5,)).get() == 7  # (eager: runs here)


def test_apply_and_always_eager_run_the_task_here(app):
    @app.task(name="proj.mul", bind=True)
    def mul(self, x, y):
        return {"value": x * y, "eager": self.request.is_eager}

    assert mul.apply((3, 4)).get() == {"value": 12, "eager": True}
    app.conf.task_always_eager = True
    result = mul.delay(2, 5)  # no database: the unit tier refuses any connection
    assert result.get() == {"value": 10, "eager": True} and result.successful()
    with pytest.raises(TypeError, match="missing a required argument"):
        mul.apply_async((1,))  # typing is checked first, as in Celery


def test_celerys_task_options_sqlq_lacks_say_so_by_name():
    """A Celery task option with no meaning here warns naming it and why (and is dropped); one sqlq
    does not support is an error saying what to do instead; neither is an "unknown option"."""
    import warnings

    from sqlq import App
    from sqlq.errors import SqlqCompatibilityWarning, TaskDefinitionError

    app = App("proj", set_as_current=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = app.task(name="proj.zipped", compression="zlib", store_errors_even_if_ignored=True)(lambda: 1)
    messages = [str(w.message) for w in caught if issubclass(w.category, SqlqCompatibilityWarning)]
    assert len(messages) == 2 and "compression=...) for 'proj.zipped' has no effect in sqlq" in messages[0]
    assert caught[0].filename == __file__  # the warning points at the decorated line
    assert not hasattr(type(task), "compression")
    with pytest.raises(TaskDefinitionError, match=r"Strategy=\.\.\.\) for 'proj.typed' is Celery's, and sqlq "
                                                  r"does not support it: a Strategy is Celery's consumer-side"):
        app.task(name="proj.typed", Strategy="celery.worker.strategy:default")(lambda: 1)
