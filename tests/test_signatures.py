"""Signatures sent through a real database: a registered task's signature is sent with its merged
arguments and options, one known only by name goes through ``send_task``, and a signature passed
as a task argument arrives as a dict that ``signature()`` turns back into one, in the worker."""

from __future__ import annotations

from sqlq.canvas import Signature, signature
from tests.apps.harness import job_row


def test_delay_and_apply_async_send_the_merged_call(app, raw_conn, schema):
    @app.task(name="proj.add")
    def add(x, y=0, z=0):  # (y=0: the immutable signature below is sent with one argument)
        return x + y + z

    sig = Signature(add, (2,), {"z": 1}, {"queue": "math", "priority": 4})
    sent = sig.delay(5)
    row = job_row(raw_conn, schema, sent.id)
    assert (row["task"], row["args"], row["kwargs"], row["queue"], row["priority"]) == (
        "proj.add", [5, 2], {"z": 1}, "math", 4)
    sent = sig.apply_async((1,), {"z": 10}, priority=9, countdown=60)
    row = job_row(raw_conn, schema, sent.id)
    assert (row["args"], row["kwargs"], row["queue"], row["priority"], row["state"]) == (
        [1, 2], {"z": 10}, "math", 9, "scheduled")
    frozen = sig.clone(immutable=True)
    assert frozen.immutable and not sig.immutable and frozen.options == sig.options
    sent = frozen.delay(100)
    assert job_row(raw_conn, schema, sent.id)["args"] == [2]


def test_a_task_known_only_by_name_is_sent_with_send_task(app, raw_conn, schema):
    sig = Signature("billing.charge", (42,), app=app, options={"queue": "billing"})
    sent = sig.apply_async(kwargs={"currency": "EUR"})
    row = job_row(raw_conn, schema, sent.id)
    assert (row["task"], row["args"], row["kwargs"], row["queue"]) == ("billing.charge", [42], {"currency": "EUR"},
                                                                      "billing")


def test_a_signature_passed_to_a_task_arrives_as_a_dict_and_is_sent_from_the_worker(app, run_worker):
    @app.task(name="proj.mul")
    def mul(x, y):
        return x * y

    @app.task(name="proj.then")
    def then(value, callback):
        assert type(callback) is dict  # as JSON carries it
        return signature(callback, app=app).delay(value).id

    sent = then.delay(6, Signature(mul, (7,)))
    with run_worker(app):
        follow_up = app.AsyncResult(sent.get(timeout=30))
        assert follow_up.get(timeout=30) == 42
