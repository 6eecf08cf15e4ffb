"""The prefork pool sends jobs to its children in batches: a child that dies holding a batch, a slow
job with others queued behind it, a hard time limit inside a batch and a warm shutdown must each
leave every job of the batch ended exactly once (reported, lost or handed back), none twice."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from sqlq.store import ClaimedJob, Outcome
from sqlq.worker.prefork import PreforkPool
from tests.apps.harness import wait_for


def _job(task: str, *args) -> ClaimedJob:
    return ClaimedJob(str(uuid.uuid4()), 0, f"tests.apps.basic.{task}", "default", 0, json.dumps(list(args)), "{}",
                      None, "application/json", "{}", False, 1, 0, True, None)


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: dict[str, list] = {}
        self.lost: list[str] = []

    def on_result(self, job: ClaimedJob, result) -> None:
        with self.lock:
            self.results.setdefault(job.id, []).append(result)

    def on_lost(self, job: ClaimedJob) -> None:
        with self.lock:
            self.lost.append(job.id)

    def ended(self) -> int:
        with self.lock:
            return sum(len(r) for r in self.results.values()) + len(self.lost)

    def value(self, job: ClaimedJob):
        (result,) = self.results[job.id]
        assert isinstance(result, Outcome), result
        return json.loads(result.result) if result.state == "SUCCESS" else result.exc_type


@pytest.fixture
def prefork(basic_app):
    pools: list[PreforkPool] = []

    def start(concurrency: int, **options) -> tuple[PreforkPool, Recorder]:
        recorder = Recorder()
        pool = PreforkPool(lambda: None, concurrency, recorder.on_result, recorder.on_lost,
                           app_path="tests.apps.basic:app", worker_id=str(uuid.uuid4()), hostname="test",
                           task_limits=lambda name: basic_app.tasks[name].time_limit, **options)
        pools.append(pool)
        return pool, recorder

    yield start
    for pool in pools:
        pool.terminate()


def test_child_killed_holding_a_batch_every_job_ends_exactly_once(prefork):
    pool, recorder = prefork(1)
    before = [_job("add", i, 1) for i in range(5)]
    poison = _job("suicide")
    after = [_job("add", i, 100) for i in range(10)]
    jobs = [*before, poison, *after]
    pool.submit(jobs)  # before the child is ready: it gets all of them in one batch
    pool.start()
    wait_for(lambda: recorder.ended() == len(jobs), timeout=60, message="every job to end")
    time.sleep(0.2)  # nothing more may come
    assert recorder.lost == [poison.id]  # only the job that was running when the child died
    assert poison.id not in recorder.results
    # the ones before it were reported by the dead child, the ones after it ran on its replacement,
    # each exactly once
    assert [recorder.value(j) for j in before] == [i + 1 for i in range(5)]
    assert [recorder.value(j) for j in after] == [i + 100 for i in range(10)]
    assert pool.running() == [] and pool.idle()


def test_slow_job_does_not_hold_the_jobs_queued_behind_it(prefork):
    pool, recorder = prefork(2)
    slow = _job("sleep", 3)
    quick = [_job("pid") for _ in range(20)]
    pool.start()
    wait_for(lambda: all(c.ready for c in pool._children), timeout=60, message="the children to start")
    pool.submit([slow, *quick])  # each child gets a share: the slow one and ten more go to one child
    started = time.monotonic()
    wait_for(lambda: all(j.id in recorder.results for j in quick), timeout=60, message="the quick jobs")
    assert slow.id not in recorder.results, "the quick jobs waited for the slow one"
    assert time.monotonic() - started < 3
    pids = {recorder.value(j) for j in quick}
    wait_for(lambda: slow.id in recorder.results, timeout=60, message="the slow job")
    assert recorder.lost == [] and recorder.ended() == 21
    assert len(pids) == 1  # the jobs handed back by the slow job's child ran on the other one


def test_hard_time_limit_in_a_batch_fails_that_job_only(prefork):
    pool, recorder = prefork(1)
    stuck = _job("hard_limited", 60)
    others = [_job("add", i, 0) for i in range(8)]
    pool.submit([stuck, *others])
    pool.start()
    wait_for(lambda: recorder.ended() == 9, timeout=60, message="every job to end")
    assert recorder.value(stuck) == "sqlq.errors.TimeLimitExceeded"
    assert [recorder.value(j) for j in others] == list(range(8))
    assert recorder.lost == []


def test_warm_shutdown_hands_back_the_jobs_a_child_has_not_started(prefork, tmp_path):
    """The job the child is running stays with it; the six queued behind it come back. (The test
    waits for the job to have started, not just to have been sent: a busy machine can deliver the
    batch before the child begins it, and then the child rightly hands back all seven.)"""
    pool, recorder = prefork(1)
    started = tmp_path / "started"
    running = _job("mark_then_sleep", str(started), 1)
    queued = [_job("pid") for _ in range(6)]
    pool.start()
    wait_for(lambda: pool._children[0].ready, timeout=60, message="the child to start")
    pool.submit([running, *queued])
    wait_for(lambda: pool.running() == [running], message="the batch to be sent")
    wait_for(started.exists, timeout=60, message="the first job to start")
    unstarted = pool.take_unstarted()
    assert sorted(j.id for j in unstarted) == sorted(j.id for j in queued)
    assert pool.join(30)
    assert list(recorder.results) == [running.id] and recorder.lost == []


def test_max_tasks_per_child_with_batches(prefork):
    pool, recorder = prefork(2, max_tasks_per_child=3)
    jobs = [_job("pid") for _ in range(20)]
    pool.submit(jobs)
    pool.start()
    wait_for(lambda: recorder.ended() == 20, timeout=120, message="every job to end")
    per_child: dict[int, int] = {}
    for job in jobs:
        pid = recorder.value(job)
        per_child[pid] = per_child.get(pid, 0) + 1
    assert max(per_child.values()) <= 3 and len(per_child) >= 7
    assert recorder.lost == []
