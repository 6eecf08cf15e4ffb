"""The adaptive prefetch on real workers (the sizing rules alone: tests/unit/test_prefetch.py): it
grows on a backlog and falls back when idle, an explicit multiplier stays fixed, and three workers
sharing a queue each get a share, no claim taking more than a third of what waited."""

from __future__ import annotations

import time

from sqlq.worker.prefetch import BASE_MULTIPLIER, MAX_CLAIM
from tests.apps.harness import scalar, wait_for

#: Far longer than the test: a worker claims when a NOTIFY wakes it, never on its poll.
SLOW_POLL = 120.0


def test_backlog_grows_the_claim_and_idle_shrinks_it(app, run_worker, raw_conn, schema):
    @app.task
    def noop(i):
        return i

    noop.delay_many(range(3000))
    with run_worker(app, pool="solo", burst=True) as worker:
        wait_for(worker._stopped.is_set, timeout=60, message="the burst worker did not finish")
    assert scalar(raw_conn, "SELECT count(*) FROM {s}.results WHERE state = 'SUCCESS'", schema=schema) == 3000
    # one claim per started_at: the claims grew (doubling from the floor) instead of staying at 4
    sizes = [r[0] for r in raw_conn.execute(
        f'SELECT count(*) FROM "{schema}".results GROUP BY started_at ORDER BY min(started_at)')]
    assert sizes[0] == BASE_MULTIPLIER and max(sizes) > 256, sizes
    assert len(sizes) < 3000 // (8 * BASE_MULTIPLIER), sizes
    assert worker.capacity == BASE_MULTIPLIER  # the last, empty claim found the worker idle


def test_an_explicit_prefetch_multiplier_stays_fixed(app, run_worker, raw_conn, schema):
    @app.task
    def noop(i):
        return i

    noop.delay_many(range(200))
    with run_worker(app, pool="solo", burst=True, prefetch_multiplier=10) as worker:
        wait_for(worker._stopped.is_set, timeout=60, message="the burst worker did not finish")
        assert worker.capacity == 10
    # claims of 10 at most (fewer when some of the buffer was still held), however long the backlog
    sizes = [r[0] for r in raw_conn.execute(f'SELECT count(*) FROM "{schema}".results GROUP BY started_at')]
    assert max(sizes) == 10 and sum(sizes) == 200, sizes


def test_the_setting_given_keeps_the_prefetch_fixed(app, run_worker):
    app.conf.worker_prefetch_multiplier = 3
    with run_worker(app, pool="threads", concurrency=2) as worker:
        assert not worker._prefetch.adaptive and worker.capacity == 6


def test_three_workers_sharing_a_queue_each_get_a_share(app, run_worker, raw_conn, schema):
    @app.task
    def short(i):
        # 10 ms: the 600 jobs are ~1 s of work for the three workers' six threads, long beside the
        # jitter of their wake-ups (a worker woken 50 ms late on a busy machine must still find its share;
        # with 2 ms jobs the two others had nearly drained the queue by then)
        time.sleep(0.01)
        return i

    workers = [run_worker(app, pool="threads", concurrency=2, hostname=f"w{k}@test") for k in range(3)]
    for handle in workers:
        handle.worker.poll_interval = SLOW_POLL
        handle.__enter__()
    # each knows the two others consume its queue (the housekeeper reads that about once a second)
    wait_for(lambda: all(h.worker._prefetch.others.get("default") == 2 for h in workers), timeout=30,
             message=lambda: f"consumers seen: {[h.worker._prefetch.others for h in workers]}")
    for handle in workers:  # as after a backlog: each would claim up to MAX_CLAIM jobs at once
        handle.worker._prefetch.capacity = MAX_CLAIM
    n = 600
    short.delay_many(range(n))  # one NOTIFY: the three wake together
    wait_for(lambda: scalar(raw_conn, "SELECT count(*) FROM {s}.results", schema=schema) == n, timeout=60,
             message="not every job was recorded")
    for handle in workers:
        handle.stop()
    ids = {h.worker.id: h.worker.hostname for h in workers}
    per_worker = dict(raw_conn.execute(
        f'SELECT worker_id::text, count(*) FROM "{schema}".results WHERE state = %s GROUP BY worker_id',
        ("SUCCESS",)).fetchall())
    assert sum(per_worker.values()) == n
    assert set(per_worker) == set(ids), per_worker  # every worker got work
    assert min(per_worker.values()) >= n // 10, per_worker
    # no claim (one started_at per claiming statement) took more than a third of what waited
    largest = scalar(raw_conn, "SELECT max(c) FROM (SELECT count(*) AS c FROM {s}.results "
                               "GROUP BY worker_id, started_at) AS claims", schema=schema)
    assert largest <= -(-n // 3), largest
