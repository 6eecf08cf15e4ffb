"""Soft time limits raise inside the task (prefork and threads); a hard limit
in prefork kills the child, records FAILURE TimeLimitExceeded, and the worker carries on."""

from __future__ import annotations

import asyncio
import time

import pytest

from sqlq import SoftTimeLimitExceeded, TimeLimitExceeded
from tests.apps.harness import result_row


def _busy(seconds: float) -> None:
    """Python-level work the thread watchdog can interrupt (it cannot break into one long C call)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_soft_limit_interrupts_a_blocking_call_in_prefork(basic_app, run_worker):
    from tests.apps import basic

    result = basic.soft_limited.delay(60)
    with run_worker(basic_app, pool="prefork", concurrency=1):
        assert result.get(timeout=30) == "cleaned up"


def test_hard_limit_kills_and_replaces_the_prefork_child(basic_app, run_worker, raw_conn, schema):
    from tests.apps import basic

    with run_worker(basic_app, pool="prefork", concurrency=1):
        before = basic.pid.delay().get(timeout=60)
        stuck = basic.hard_limited.delay(60)
        with pytest.raises(TimeLimitExceeded, match="hard time limit"):
            stuck.get(timeout=30)
        after = basic.pid.delay().get(timeout=60)
    assert after != before  # a new child took over
    row = result_row(raw_conn, schema, stuck.id)
    assert row["state"] == "FAILURE" and row["exc_type"] == "sqlq.errors.TimeLimitExceeded"
    assert row["attempts"] == 1  # a time limit is the task's failure, not a lost worker: no re-run


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_soft_and_hard_limits_in_threads(app, run_worker, raw_conn, schema, pool):
    @app.task(soft_time_limit=0.2)
    def cleans_up():
        try:
            _busy(60)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "finished"

    @app.task(soft_time_limit=0.2)
    def ignores_soft():
        _busy(60)

    @app.task(time_limit=0.2)
    def runs_away():
        _busy(60)

    soft = cleans_up.delay()
    unhandled = ignores_soft.delay()
    hard = runs_away.delay()
    with run_worker(app, pool=pool, concurrency=3):
        assert soft.get(timeout=30) == "cleaned up"
        with pytest.raises(SoftTimeLimitExceeded, match="ignores_soft ran past its soft time limit"):
            unhandled.get(timeout=30)
        with pytest.raises(TimeLimitExceeded, match=r"runs_away ran past its time limit \(0.2 s\)"):
            hard.get(timeout=30)
    assert result_row(raw_conn, schema, hard.id)["exc_type"] == "sqlq.errors.TimeLimitExceeded"


def test_async_task_limits_cancel_the_coroutine(app, run_worker, raw_conn, schema):
    cleaned = []

    @app.task(soft_time_limit=0.2)
    async def waits_forever():
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append("soft")

    @app.task(time_limit=0.2)
    async def hard_only():
        await asyncio.sleep(60)

    @app.task(soft_time_limit=30)
    async def own_timeout():
        raise TimeoutError("the remote service did not answer")

    @app.task(soft_time_limit=30)
    async def quick():
        await asyncio.sleep(0)
        return "quick"

    soft, hard, own, fine = waits_forever.delay(), hard_only.delay(), own_timeout.delay(), quick.delay()
    with run_worker(app, pool="threads", concurrency=4):
        with pytest.raises(SoftTimeLimitExceeded, match="waits_forever ran past its soft time limit"):
            soft.get(timeout=30)
        with pytest.raises(TimeLimitExceeded, match="hard_only ran past its time limit"):
            hard.get(timeout=30)
        with pytest.raises(TimeoutError, match="did not answer"):  # the task's own error, not a limit
            own.get(timeout=30)
        assert fine.get(timeout=30) == "quick"
    assert cleaned == ["soft"]
    assert result_row(raw_conn, schema, own.id)["exc_type"] == "TimeoutError"
