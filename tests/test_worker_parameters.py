"""Celery's worker arguments that its pytest fixtures pass (``celery_worker_parameters``, issue #12):
``exclude_queues``, ``shutdown_timeout``, ``without_heartbeat``/``without_mingle``/``without_gossip``,
and ``Worker.reload()``."""

from __future__ import annotations

import warnings

import pytest

from sqlq import App, rate_limits
from sqlq.errors import ConfigurationError, SqlqCompatibilityWarning
from sqlq.worker.worker import Worker
from tests.apps.harness import wait_for

TIMEOUT = 60


def _job_state(raw_conn, schema: str, task_id: str) -> str | None:
    row = raw_conn.execute(f"SELECT state FROM {schema}.jobs WHERE id = %s", (task_id,)).fetchone()
    return row[0] if row else None


def test_exclude_queues_consumes_the_others(app, run_worker, raw_conn, schema):
    @app.task
    def where(name):
        return name

    worker_thread = run_worker(app, queues=["a", "b", "c"], exclude_queues=["b"])
    assert worker_thread.worker.queues == ["a", "c"]
    skipped = where.apply_async(("b",), queue="b")
    with worker_thread:
        assert where.apply_async(("a",), queue="a").get(timeout=TIMEOUT) == "a"
        assert where.apply_async(("c",), queue="c").get(timeout=TIMEOUT) == "c"
    # enqueued before the others, still waiting after they ran: never claimed from an excluded queue
    assert skipped.state == "PENDING" and _job_state(raw_conn, schema, skipped.id) == "available"


def test_exclude_queues_takes_celerys_comma_separated_text(app):
    assert Worker(app, pool="threads", queues=["a", "b", "c"], exclude_queues="a, c").queues == ["b"]


def test_excluding_every_queue_is_an_error(app):
    with pytest.raises(ConfigurationError, match="excludes every queue"):
        Worker(app, pool="threads", exclude_queues=[app.conf.default_queue])
    with pytest.raises(ConfigurationError, match=r"queues="):
        Worker(app, pool="threads", queues=["a"], exclude_queues=["a", "z"])


def test_shutdown_timeout_is_shutdown_grace(app):
    assert Worker(app, pool="threads", shutdown_timeout=7).shutdown_grace == 7.0
    assert Worker(app, pool="threads", shutdown_timeout=7, shutdown_grace=7).shutdown_grace == 7.0
    assert Worker(app, pool="threads", shutdown_grace=3).shutdown_grace == 3.0
    with pytest.raises(ConfigurationError, match="same setting"):
        Worker(app, pool="threads", shutdown_timeout=7, shutdown_grace=3)


def test_without_switches_warn_once_each_saying_why(app):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker = Worker(app, pool="threads", without_heartbeat=True, without_mingle=True, without_gossip=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, SqlqCompatibilityWarning)]
    assert len(messages) == 3
    assert "without_heartbeat=True" in messages[0] and "alive" in messages[0]
    assert "without_mingle=True" in messages[1] and "PostgreSQL" in messages[1]
    assert "without_gossip=True" in messages[2] and "broker events" in messages[2]
    assert worker.heartbeat_interval > 0  # the liveness heartbeat still runs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Worker(app, pool="threads", without_heartbeat=False, without_mingle=False, without_gossip=False)


def test_a_task_registered_after_the_start_runs_before_and_after_reload(app, run_worker):
    @app.task
    def first():
        return 1

    with run_worker(app) as worker:
        assert first.delay().get(timeout=TIMEOUT) == 1

        @app.task
        def late():
            return "late"

        assert late.delay().get(timeout=TIMEOUT) == "late"  # no restart, no reload
        worker.reload()
        assert late.delay().get(timeout=TIMEOUT) == "late"


def test_reload_declares_the_rate_limits_of_tasks_registered_since_the_start(app: App, run_worker):
    @app.task
    def ping():
        return "pong"

    with run_worker(app) as worker:
        assert ping.delay().get(timeout=TIMEOUT) == "pong"  # started: its start-up declared the limits

        @app.task(rate_limit="120/m")
        def limited():
            return "limited"

        assert [r.task for r in rate_limits.rate_limits(app)] == []
        worker.reload()
        rows = rate_limits.rate_limits(app)
        assert [(r.task, r.rate) for r in rows] == [(limited.name, 2.0)]
        wait_for(lambda: limited.name in worker._limited, TIMEOUT, 0.05, message="the limit to be read")
        assert limited.delay().get(timeout=TIMEOUT) == "limited"
