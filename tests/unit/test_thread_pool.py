"""The thread pool's slots on their own (no worker, no database): every job is run once or handed back
once."""

from __future__ import annotations

import threading

from tests.apps.harness import wait_for


def _fake_jobs(n: int) -> list:
    from sqlq.store import ClaimedJob

    return [ClaimedJob(f"00000000-0000-0000-0000-{i:012d}", i, "t", "default", 0, "[]", "{}", None,
                       "application/json", "{}", False, 1, 0, False, None) for i in range(n)]


def test_thread_pool_slots_every_job_is_run_once_or_handed_back_once():
    """Threads take jobs a few at a time into their own slots: a shutdown hands back every job not
    started, each job is either run or handed back (never both, never neither)."""
    from sqlq.store import Outcome
    from sqlq.worker.pools import ThreadPool

    gate = threading.Event()
    results: list = []

    class SlowExecutor:
        def execute(self, job):
            gate.wait(10)
            return Outcome(id=job.id, attempt=job.attempt, state="SUCCESS", result="null")

    pool = ThreadPool(SlowExecutor, 4, lambda job, result: results.append(job.id), lambda job: None)
    pool.start()
    jobs = _fake_jobs(200)
    pool.submit(jobs)
    assert wait_for(lambda: len(pool.running()) == 4, timeout=10)
    unstarted = pool.take_unstarted()
    running = pool.running()
    gate.set()
    assert pool.join(10)
    handed_back = {j.id for j in unstarted}
    assert len(running) == 4 and len(unstarted) == 196
    assert sorted(results) == sorted(j.id for j in running)  # the running ones finished, nothing else ran
    assert handed_back.isdisjoint(results) and len(handed_back) + len(results) == len(jobs)
