"""Concurrency limits on a real PostgreSQL: at most N running jobs of a task across worker
processes, per key value, changed live through control, unlimited tasks never held back behind a
saturated limited one, and a killed worker's slot freed by its rescue.

What is sampled is the test's own schema's running rows of the task: a claimed job is 'running'
from its claim to its outcome (prefetched ones too), which is what the claim counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from sqlq.concurrency_limits import concurrency_limits, set_concurrency_limit
from sqlq.errors import ConfigurationError
from sqlq.rate_limits import set_rate_limit
from tests.apps.harness import WorkerProcess, scalar, wait_for
from tests.test_cli import run_cli


@pytest.fixture
def bounded(schema: str) -> Iterator:
    from tests.apps import bounded

    bounded.app.close()
    bounded.app.migrate()
    yield bounded
    bounded.app.close()


def _running(conn: psycopg.Connection, schema: str, task: str, key: str | None = None) -> int:
    if key is None:
        return scalar(conn, "SELECT count(*) FROM {s}.jobs WHERE task = %s AND state = 'running'", task,
                      schema=schema)
    return scalar(conn, "SELECT count(*) FROM {s}.jobs WHERE task = %s AND state = 'running' "
                        "AND concurrency_key = %s", task, key, schema=schema)


def _finished(conn: psycopg.Connection, schema: str, task: str) -> int:
    return scalar(conn, "SELECT count(*) FROM {s}.results WHERE task = %s AND state = 'SUCCESS'", task,
                  schema=schema)


class Sampler:
    """Samples a count in a thread of its own, as fast as its queries go, until stopped; keeps the
    largest value seen and every value."""

    def __init__(self, database_url: str, count: Callable[[psycopg.Connection], int]):
        self.values: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(database_url, count), daemon=True)
        self._thread.start()

    def _run(self, database_url: str, count: Callable[[psycopg.Connection], int]) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not self._stop.is_set():
                self.values.append(count(conn))

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(10)
        return self.values


def _workers(tmp_path: Path, n: int, concurrency: int = 2) -> list[WorkerProcess]:
    return [WorkerProcess(tmp_path / f"w{i}.log", app_path="tests.apps.bounded:app", pool="threads",
                          concurrency=concurrency) for i in range(n)]


def _logs(workers: list[WorkerProcess]) -> str:
    return " | ".join(w.output()[-400:] for w in workers)


def test_a_limit_of_3_holds_across_4_worker_processes(bounded, schema, raw_conn, database_url, tmp_path):
    """4 worker processes that each hold one job at a time (4 could run at once): never more than 3
    jobs of the task running together, and 3 is reached, which takes three of the processes at
    once: the limit is the cluster's, not a worker's."""
    task = bounded.limited.name
    workers = [WorkerProcess(tmp_path / f"w{i}.log", app_path="tests.apps.bounded:app", pool="threads",
                             concurrency=1, extra=("--prefetch-multiplier", "1")) for i in range(4)]
    sampler = None
    try:
        wait_for(lambda: all(" ready" in w.output() for w in workers), timeout=60, message=lambda: _logs(workers))
        sampler = Sampler(database_url, lambda c: _running(c, schema, task))
        bounded.limited.delay_many([(0.1,) for _ in range(60)])
        wait_for(lambda: _finished(raw_conn, schema, task) == 60, timeout=90,
                 message=lambda: f"60 results, {_finished(raw_conn, schema, task)} so far; {_logs(workers)}")
    finally:
        samples = sampler.stop() if sampler is not None else []
        for w in workers:
            w.stop()
    assert len(samples) > 100, "too few samples to judge"
    assert max(samples) <= 3, f"{max(samples)} jobs of a task limited to 3 ran at once"
    assert max(samples) == 3, f"the limit was never reached: at most {max(samples)} ran at once"
    runners = scalar(raw_conn, "SELECT count(DISTINCT worker_id) FROM {s}.results WHERE task = %s", task,
                     schema=schema)
    assert runners >= 3, f"the jobs ran in {runners} worker processes"


def test_per_key_limits_hold_for_each_key_and_an_override(bounded, schema, raw_conn, database_url, tmp_path):
    """A limit of 2 per account: accounts a and b each reach 2 running, never more; account c given
    a limit of its own (1) never runs more than 1. 12 jobs could run at once in the workers."""
    task = bounded.per_account.name
    set_concurrency_limit(bounded.app, task, 1, key="c")
    for account in ("a", "b", "c"):
        bounded.per_account.apply_many([((0.15,), {"account": account}) for _ in range(12)])
    keys = ("a", "b", "c")
    sampler = Sampler(database_url, lambda c: tuple(_running(c, schema, task, k) for k in keys))  # type: ignore[arg-type,return-value]
    workers = _workers(tmp_path, 3, concurrency=4)
    try:
        wait_for(lambda: _finished(raw_conn, schema, task) == 36, timeout=90,
                 message=lambda: f"36 results, {_finished(raw_conn, schema, task)} so far; {_logs(workers)}")
    finally:
        samples: list = sampler.stop()
        for w in workers:
            w.stop()
    assert len(samples) > 100
    most = {k: max(s[i] for s in samples) for i, k in enumerate(keys)}
    assert most == {"a": 2, "b": 2, "c": 1}, f"the most running per key: {most}"
    stored = scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE task = %s AND result::text = '\"c\"'",
                    task, schema=schema)
    assert stored == 12


def test_a_limit_changed_through_control_takes_effect(bounded, schema, raw_conn, database_url, tmp_path):
    """Limit 3 from the code; lowered to 1 through app.control, then raised to 5 through the CLI: the
    running count follows, and `sqlq concurrency-limits` shows the table."""
    task = bounded.limited.name
    bounded.limited.delay_many([(0.1,) for _ in range(400)])
    workers = _workers(tmp_path, 2, concurrency=4)
    try:
        wait_for(lambda: _running(raw_conn, schema, task) == 3, timeout=30, message=lambda: _logs(workers))
        # (a worker declares its code's limit when it starts: change it once both have started)
        wait_for(lambda: all(" ready" in w.output() for w in workers), timeout=30, message=lambda: _logs(workers))
        bounded.app.control.concurrency_limit(task, 1, reply=False)
        # the jobs claimed before the change finish; after them, never more than one
        wait_for(lambda: _running(raw_conn, schema, task) <= 1, timeout=30)
        sampler = Sampler(database_url, lambda c: _running(c, schema, task))
        wait_for(lambda: _finished(raw_conn, schema, task) >= 30 and len(sampler.values) >= 20, timeout=30)
        lowered = sampler.stop()
        assert max(lowered) == 1, f"after lowering the limit to 1: at most {max(lowered)} running"

        cli = run_cli("-A", "tests.apps.bounded:app", "control", "concurrency_limit", task, "5", "--timeout", "5")
        assert cli.returncode == 0, cli.stderr
        assert "concurrency limit of tests.apps.bounded.limited set to 5" in cli.stdout
        sampler = Sampler(database_url, lambda c: _running(c, schema, task))
        wait_for(lambda: 5 in sampler.values, timeout=30, message=lambda: f"5 running; seen {set(sampler.values)}")
        wait_for(lambda: len(sampler.values) >= 50, timeout=30)  # (a while at the new limit)
        raised = sampler.stop()
        assert max(raised) == 5, f"{max(raised)} running under a limit of 5"

        listing = run_cli("-A", "tests.apps.bounded:app", "concurrency-limits")
        assert listing.returncode == 0, listing.stderr
        assert task in listing.stdout and " 5 " in listing.stdout
    finally:
        for w in workers:
            w.stop()
    [row] = [r for r in concurrency_limits(bounded.app) if r.task == task]
    assert (row.key, row.limit) == (None, 5)


def test_unlimited_tasks_are_not_held_back_behind_a_saturated_limited_task(bounded, schema, raw_conn, tmp_path):
    """100 jobs of a task limited to 1 (each holding its slot 0.2 s), then 50 of an unlimited task in
    the same queue: the unlimited ones all finish while most limited ones still wait."""
    bounded.hold.delay_many([(None,) for _ in range(100)])
    limited_name = bounded.hold.name
    bounded.free.delay_many([(i,) for i in range(50)])
    workers = _workers(tmp_path, 1, concurrency=4)
    try:
        wait_for(lambda: _finished(raw_conn, schema, bounded.free.name) == 50, timeout=30,
                 message=lambda: _logs(workers))
        assert _finished(raw_conn, schema, limited_name) < 50, "the unlimited jobs waited behind the limited"
        wait_for(lambda: _finished(raw_conn, schema, limited_name) == 100, timeout=60)
    finally:
        for w in workers:
            w.stop()


def test_a_killed_workers_slot_is_freed_by_its_rescue(bounded, schema, raw_conn, tmp_path):
    """A task limited to 1: worker A runs the first job (which sleeps), the second waits for the slot;
    A is SIGKILLed; worker B rescues A's job and both end SUCCESS (the first run again, at once)."""
    marker = tmp_path / "marker"
    first = bounded.hold.delay(str(marker))
    second = bounded.hold.delay(None)
    task = bounded.hold.name
    a = WorkerProcess(tmp_path / "a.log", app_path="tests.apps.bounded:app", pool="threads", concurrency=2)
    b = None
    try:
        wait_for(marker.exists, timeout=30, message=a.output)
        assert _running(raw_conn, schema, task) == 1
        waiting = scalar(raw_conn, "SELECT state FROM {s}.jobs WHERE id = %s", second.id, schema=schema)
        assert waiting == "available", "the second job was claimed although the slot was taken"
        a.kill()
        b = WorkerProcess(tmp_path / "b.log", app_path="tests.apps.bounded:app", pool="threads", concurrency=2)
        assert first.get(timeout=60) == "done"
        assert second.get(timeout=30) == "done"
    finally:
        a.stop()
        if b is not None:
            b.stop()
    attempts = scalar(raw_conn, "SELECT attempts FROM {s}.results WHERE id = %s", first.id, schema=schema)
    assert attempts == 2


def test_bad_limits_and_keys_are_refused_naming_the_problem(bounded):
    with pytest.raises(ConfigurationError, match="not a number of jobs"):
        set_concurrency_limit(bounded.app, bounded.limited.name, "three")
    with pytest.raises(ConfigurationError, match="out of range"):
        set_concurrency_limit(bounded.app, bounded.limited.name, -1)
    with pytest.raises(ConfigurationError, match="concurrency_key of task .* raised KeyError"):
        bounded.per_account.delay(0.1, "acme")  # (the account given by position: no kwargs["account"])
    with pytest.raises(ConfigurationError, match="destination"):
        bounded.app.control.concurrency_limit(bounded.limited.name, 2, destination=["x@y"])
    # one kind of limit per task: the second one set is refused, naming what to do
    set_rate_limit(bounded.app, bounded.free.name, "10/s")
    with pytest.raises(ConfigurationError, match="has a rate limit; .* remove the rate limit first"):
        set_concurrency_limit(bounded.app, bounded.free.name, 2)
    set_concurrency_limit(bounded.app, bounded.limited.name, 3)
    with pytest.raises(ConfigurationError, match="has a concurrency limit; .* remove the concurrency limit first"):
        set_rate_limit(bounded.app, bounded.limited.name, "10/s")


def test_every_enqueue_path_stores_the_key(bounded, schema, raw_conn):
    """delay (the one-job fast path), apply_async with a countdown (ENQUEUE), a bulk of 100 (COPY),
    a routed publish, and a send_task by name: each row carries its call's key."""
    from sqlq import Exchange, Queue

    task = bounded.per_account
    one = task.delay(0, account="one")
    later = task.apply_async((0,), {"account": "later"}, countdown=60)
    bulk = task.apply_many([((0,), {"account": f"bulk{i % 3}"}) for i in range(100)])
    by_name = bounded.app.send_task(task.name, (0,), {"account": "named"})
    before = bounded.app.conf.task_queues
    bounded.app.conf.task_queues = [Queue("routed", Exchange("accounts"), routing_key="sync")]
    try:
        bounded.app.apply_routes()
        routed = task.apply_async((0,), {"account": "routed"}, exchange="accounts", routing_key="sync")
    finally:
        bounded.app.conf.task_queues = before  # (the module's app outlives this test)

    def key(result) -> str:
        return scalar(raw_conn, "SELECT concurrency_key FROM {s}.jobs WHERE id = %s", result.id, schema=schema)

    assert [key(r) for r in (one, later, by_name, routed)] == ["one", "later", "named", "routed"]
    assert sorted({key(r) for r in bulk}) == ["bulk0", "bulk1", "bulk2"]
    plain = bounded.limited.delay(0)
    assert key(plain) is None


def test_a_unique_and_limited_task_dedups_by_its_key_and_holds_its_limit(bounded, schema, raw_conn, database_url,
                                                                        tmp_path):
    """A task with both a unique key (per item) and a concurrency limit (2 per account): every unique
    write path (a keyed bulk, one keyed call, a debounce that replaces a waiting job) stores the
    call's concurrency key, repeated items write nothing, and no account runs more than 2 at once."""
    task = bounded.sync_item
    calls = [((0.2,), {"account": account, "item": f"{account}{i}"}) for account in ("a", "b") for i in range(6)]
    first = task.apply_many(calls)  # (UNIQUE_ENQUEUE_MANY)
    again = task.apply_many(calls)  # every item held: the jobs already there
    assert [r.id for r in again] == [r.id for r in first]
    assert task.delay(0.2, account="a", item="a0").id == first[0].id  # (UNIQUE_ENQUEUE, held)
    extra = task.delay(0.2, account="a", item="a-extra")  # (UNIQUE_ENQUEUE, written)
    late = task.apply_async((0.2,), {"account": "b", "item": "late"}, countdown=1, on_conflict="replace")
    moved = task.apply_async((0.2,), {"account": "c", "item": "late"}, countdown=1, on_conflict="replace")
    assert moved.id == late.id  # (UNIQUE_ENQUEUE_REPLACE: the waiting job took the new call, its key too)
    keys = dict(raw_conn.execute(
        f"SELECT concurrency_key, count(*) FROM {schema}.jobs WHERE task = %s GROUP BY concurrency_key",
        (task.name,)).fetchall())
    assert keys == {"a": 7, "b": 6, "c": 1}
    assert scalar(raw_conn, "SELECT concurrency_key FROM {s}.jobs WHERE id = %s", extra.id, schema=schema) == "a"

    accounts = ("a", "b")
    sampler = Sampler(database_url, lambda c: tuple(_running(c, schema, task.name, k) for k in accounts))  # type: ignore[arg-type,return-value]
    workers = _workers(tmp_path, 3, concurrency=4)
    try:
        wait_for(lambda: _finished(raw_conn, schema, task.name) == 14, timeout=90,
                 message=lambda: f"14 results, {_finished(raw_conn, schema, task.name)} so far; {_logs(workers)}")
    finally:
        samples: list = sampler.stop()
        for w in workers:
            w.stop()
    assert len(samples) > 100
    most = {k: max(s[i] for s in samples) for i, k in enumerate(accounts)}
    assert most == {"a": 2, "b": 2}, f"the most running per account: {most}"
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE task = %s", task.name, schema=schema) == 14
    # the items' keys freed with their jobs: the same item is written again
    assert task.delay(0.2, account="a", item="a0").id != first[0].id


def test_a_worker_without_limited_tasks_claims_with_claim_alone(app, run_worker, raw_conn, schema):
    @app.task
    def plain(i):
        return i

    with run_worker(app, pool="threads") as worker:
        result = plain.delay(1)
        assert result.get(timeout=30) == 1
        assert worker._not_unlimited == () and worker._concurrency_limited == ()
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.concurrency_limits", schema=schema) == 0
