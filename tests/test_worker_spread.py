"""Cluster-wide chores shared by the workers (sqlq.worker.worker.spread): pure arithmetic."""

from __future__ import annotations

import statistics

from sqlq.worker.worker import spread


def test_one_worker_waits_about_the_interval() -> None:
    waits = [spread(0.5, 1) for _ in range(2000)]
    assert min(waits) >= 0.25 and max(waits) <= 0.75
    assert abs(statistics.mean(waits) - 0.5) < 0.02


def test_n_workers_each_wait_n_intervals_so_the_cluster_keeps_one_per_interval() -> None:
    waits = [spread(0.5, 50) for _ in range(2000)]
    assert min(waits) >= 12.5 and max(waits) <= 37.5
    # 50 workers, each every ~25 s: together one look every ~0.5 s, as one worker alone
    assert abs(50 / statistics.mean(waits) - 2.0) < 0.1


def test_no_count_yet_counts_as_one() -> None:
    assert 0.25 <= spread(0.5, 0) <= 0.75
