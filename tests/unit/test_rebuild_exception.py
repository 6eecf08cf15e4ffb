"""Rebuilding a task's exception from a FAILURE row with its stored args (issue #12): ``cls(*args)``
first, then ``cls(message)``, then TaskError; and ``failure()`` storing args it can encode only."""

from __future__ import annotations

from sqlq.errors import TaskError
from sqlq.result import rebuild_exception
from sqlq.store import ClaimedJob
from sqlq.worker.execution import failure


class HttpError(Exception):
    def __init__(self, status_code):
        self.status_code = status_code
        Exception.__init__(self, status_code)


class KeywordOnlyError(Exception):
    def __init__(self, *, code):
        Exception.__init__(self, code)


class Hostile(Exception):
    """``args`` that raise when read: recording must not fail because of it."""

    @property  # type: ignore[override]
    def args(self):
        raise RuntimeError("no args for you")


NAME = f"{__name__}."


def _job() -> ClaimedJob:
    return ClaimedJob(id="j", seq=1, task="t", queue="q", priority=0, args="[]", kwargs="{}", payload=None,
                      content_type="application/json", headers=None, expired=False, attempt=1, retries=0,
                      acks_late=False, group_id=None)


def test_args_rebuild_the_exception_with_their_types():
    exc = rebuild_exception(NAME + "HttpError", "404", "tb", [404])
    assert isinstance(exc, HttpError) and exc.status_code == 404 and exc.remote_traceback == "tb"
    assert rebuild_exception("OSError", "[Errno 2] gone", None, [2, "gone"]).errno == 2


def test_without_args_or_when_they_are_refused_the_message_is_used():
    assert rebuild_exception(NAME + "HttpError", "404", None).status_code == "404"
    assert rebuild_exception(NAME + "HttpError", "404", None, [1, 2, 3]).status_code == "404"


def test_a_constructor_refusing_both_gives_a_task_error():
    exc = rebuild_exception(NAME + "KeywordOnlyError", "7", None, [7])
    assert isinstance(exc, TaskError) and "7" in str(exc)


def test_args_never_lead_to_an_import():
    exc = rebuild_exception("never_imported_module_xyz.Boom", "m", None, ["m"])
    assert isinstance(exc, TaskError)


def test_failure_stores_encodable_args_only():
    stored = failure(_job(), HttpError(404), None, "json")
    assert (stored.result, stored.result_content_type, stored.exc_message) == ("[404]", "application/json", "404")
    assert failure(_job(), HttpError(404), None).result is None  # no serializer named: message only
    opaque = failure(_job(), ValueError(object()), None, "json")
    assert opaque.result is None and opaque.result_content_type is None and opaque.state == "FAILURE"
    nul = failure(_job(), ValueError("a\x00b"), None, "json")
    assert nul.result is None and nul.exc_message == "a\\x00b"
    hostile = failure(_job(), Hostile(), None, "json")
    assert hostile.result is None and hostile.exc_type == NAME + "Hostile"
    packed = failure(_job(), HttpError(404), None, "msgpack")
    assert packed.result is None and packed.result_payload and packed.result_content_type == "application/x-msgpack"
