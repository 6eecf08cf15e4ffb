"""How long a retried task waits: full jitter below the capped exponential with retry_backoff, the
configured countdown without it; a retry request (with its traceback) crosses the prefork wire whole,
and so does the hand-back of a job whose task the child does not know."""

from __future__ import annotations

import marshal

from hypothesis import given
from hypothesis import strategies as st

from sqlq import App
from sqlq.store import RetryRequest, Unregistered
from sqlq.worker.wire import result_from_wire, result_to_wire

_offline = App("tests.offline", database_url="postgresql://nobody@127.0.0.1:1/none")


@given(retries=st.integers(0, 40), factor=st.floats(0.01, 100), cap=st.floats(0.1, 3600))
def test_backoff_delay_is_full_jitter_below_the_capped_exponential(retries, factor, cap):
    task = _offline.task(name="t.backoff", retry_backoff=factor, retry_backoff_max=cap)(lambda: None)
    ceiling = min(cap, factor * 2 ** retries)
    assert 0 <= task.backoff_delay(retries) <= ceiling


def test_backoff_without_jitter_is_exactly_exponential_and_capped():
    task = _offline.task(name="t.exact", retry_backoff=True, retry_backoff_max=10, retry_jitter=False)(lambda: None)
    assert [task.backoff_delay(n) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    scaled = _offline.task(name="t.scaled", retry_backoff=3, retry_jitter=False)(lambda: None)
    assert [scaled.backoff_delay(n) for n in range(3)] == [3, 6, 12]


def test_without_backoff_the_delay_is_the_configured_countdown():
    plain = _offline.task(name="t.plain", default_retry_delay=42)(lambda: None)
    assert plain.backoff_delay(5) == 42
    counted = _offline.task(name="t.counted", retry_kwargs={"countdown": 7})(lambda: None)
    assert counted.backoff_delay(0) == 7


def test_a_retry_crosses_the_prefork_wire_whole():
    for request in (RetryRequest(id="a", attempt=2, delay=1.5, error="E: x"),
                    RetryRequest(id="b", attempt=1, delay=0.0, error=None, eta=1_900_000_000.25),
                    RetryRequest(id="c", attempt=3, delay=2.0, error="E: y", traceback="Traceback ...\nE: y\n")):
        assert result_from_wire(marshal.loads(marshal.dumps(result_to_wire(request)))) == request


def test_an_unknown_tasks_job_crosses_the_prefork_wire_as_itself():
    unknown = Unregistered(id="d", attempt=1, task="billing.charge")
    assert result_from_wire(marshal.loads(marshal.dumps(result_to_wire(unknown)))) == unknown
