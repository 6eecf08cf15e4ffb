"""The adaptive prefetch's sizing rules (sqlq/worker/prefetch.py): it doubles while claims come back
full, halves when they come back short, falls to the floor when idle, stays within its bounds
(MAX_CLAIM, memory), and takes no more than a fair share of a shared queue; an explicit
multiplier keeps it fixed. The worker side, on PostgreSQL: tests/test_worker_prefetch.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sqlq.store import ClaimedJob
from sqlq.worker.prefetch import (
    BASE_MULTIPLIER,
    MAX_CLAIM,
    Prefetch,
    fair_share,
    job_size,
    memory_cap,
    next_capacity,
    proven_cap,
    time_cap,
)


def _job(args: str = "[1]") -> ClaimedJob:
    return ClaimedJob(id="00000000-0000-0000-0000-000000000001", seq=1, task="t", queue="default", priority=0,
                      args=args, kwargs="{}", payload=None, content_type="application/json", headers=None,
                      expired=False, attempt=1, retries=0, acks_late=False, group_id=None)


def test_full_claims_double_up_to_the_cap():
    sizes = [8]
    for _ in range(12):
        sizes.append(next_capacity(sizes[-1], asked=sizes[-1], got=sizes[-1], idle=False, floor=8, cap=MAX_CLAIM))
    assert sizes[:8] == [8, 16, 32, 64, 128, 256, 512, 1000]
    assert set(sizes[7:]) == {MAX_CLAIM}


def test_short_claims_halve_and_idle_falls_to_the_floor():
    assert next_capacity(1000, asked=1000, got=300, idle=False, floor=8, cap=MAX_CLAIM) == 500
    assert next_capacity(16, asked=16, got=1, idle=False, floor=8, cap=MAX_CLAIM) == 8
    assert next_capacity(1000, asked=1000, got=0, idle=True, floor=8, cap=MAX_CLAIM) == 8
    # an empty claim while jobs still run is short, not idle: halve, do not drop
    assert next_capacity(1000, asked=500, got=0, idle=False, floor=8, cap=MAX_CLAIM) == 500
    # nothing asked (the buffer was full): unchanged
    assert next_capacity(256, asked=0, got=0, idle=False, floor=8, cap=MAX_CLAIM) == 256


@given(capacity=st.integers(1, 5000), asked=st.integers(0, 5000), got=st.integers(0, 5000),
       idle=st.booleans(), floor=st.integers(1, 2000), cap=st.integers(1, 5000))
def test_capacity_stays_within_floor_and_cap(capacity, asked, got, idle, floor, cap):
    got = min(got, asked)
    size = next_capacity(capacity, asked, got, idle, floor, cap)
    assert floor <= size <= max(cap, floor)


@given(waiting=st.integers(0, 100_000), consumers=st.integers(1, 50), floor=st.integers(1, 500))
def test_fair_share_is_the_backlog_split_but_never_below_the_floor(waiting, consumers, floor):
    share = fair_share(waiting, consumers, floor)
    assert share >= floor
    if consumers > 1 and share > floor:
        # the share, rounded up: all the consumers' shares together cover the backlog, and no more
        assert (share - 1) * consumers < waiting <= share * consumers


def test_three_consumers_each_take_a_third():
    assert fair_share(3000, 3, 8) == 1000
    assert fair_share(10, 3, 8) == 8  # a small backlog: the fixed default's claim stands
    assert fair_share(3000, 1, 8) == 3000


def test_memory_bounds_the_claim_for_large_jobs():
    assert memory_cap(512, floor=8) == MAX_CLAIM
    assert memory_cap(1_000_000, floor=8, budget=64_000_000) == 64
    assert memory_cap(10**9, floor=8) == 8
    assert job_size(_job("[" + "1," * 5000 + "1]")) > job_size(_job())


def test_a_large_job_caps_the_growth():
    prefetch = Prefetch(concurrency=2, multiplier=None)
    big = _job('["' + "x" * (1 << 20) + '"]')  # a megabyte of arguments per job
    for _ in range(12):
        prefetch.claimed(prefetch.capacity, [big] * 4, prefetch.capacity, idle=False)
    assert prefetch.capacity <= memory_cap(job_size(big), prefetch.floor)


def test_adaptive_starts_at_the_base_multiplier_and_grows():
    prefetch = Prefetch(concurrency=2, multiplier=None)
    assert prefetch.adaptive and prefetch.capacity == prefetch.floor == 2 * BASE_MULTIPLIER
    prefetch.claimed(8, [_job()], 8, idle=False)
    assert prefetch.capacity == 16
    prefetch.claimed(16, [], 0, idle=True)
    assert prefetch.capacity == 8
    prefetch.others = {"default": 2}
    assert prefetch.shared("default") == 2 and prefetch.shared("other") == 0


def test_an_explicit_multiplier_is_fixed():
    prefetch = Prefetch(concurrency=2, multiplier=4)
    assert not prefetch.adaptive and prefetch.capacity == 8
    for _ in range(5):
        prefetch.claimed(8, [_job()], 8, idle=False)
    assert prefetch.capacity == 8
    prefetch.others = {"default": 2}
    assert prefetch.shared("default") == 0  # fixed: no fair-share reads either
    prefetch.resized(5, 4)
    assert prefetch.capacity == 20


def test_resizing_an_adaptive_prefetch_moves_its_floor():
    prefetch = Prefetch(concurrency=2, multiplier=None)
    prefetch.resized(300, None)
    assert prefetch.floor == prefetch.capacity == 300 * BASE_MULTIPLIER
    assert prefetch.cap == 300 * BASE_MULTIPLIER  # a floor above MAX_CLAIM lifts the cap with it


def test_time_bounds_the_claim_for_slow_jobs():
    assert time_cap(20_000.0, floor=8) == MAX_CLAIM
    assert time_cap(200.0, floor=8) == 200  # 10 ms jobs on two slots: a second of work
    assert time_cap(1.0, floor=8) == 8


def test_a_worker_finishing_slowly_does_not_hoard():
    """Full claims double the prefetch, but not past a second of work at the measured rate: a
    worker finishing 100 jobs a second holds about 100, not MAX_CLAIM."""
    prefetch = Prefetch(concurrency=2, multiplier=None)
    finished, now = 0, 0.0
    for _ in range(20):
        prefetch.claimed(prefetch.capacity, [_job()], prefetch.capacity, idle=False, finished=finished, now=now)
        finished, now = finished + 50, now + 0.5
    assert prefetch.rate == 100.0
    assert prefetch.capacity <= 100


def test_before_its_rate_is_known_a_worker_grows_only_by_finishing():
    """A worker just started, whose claims all come back full, does not double its way to
    MAX_CLAIM before it has finished anything: until a rate is measured it holds at most twice
    what it has finished (the crash chaos scenario's prefork worker once held 949 jobs of 39 ms,
    18 s of work, when it was killed 8 s after starting)."""
    assert proven_cap(0, floor=8) == 8
    assert proven_cap(100, floor=8) == 200
    assert proven_cap(10_000, floor=8) == MAX_CLAIM
    prefetch = Prefetch(concurrency=2, multiplier=None)
    for _ in range(20):  # claims in one instant: nothing finished, no rate
        prefetch.claimed(prefetch.capacity, [_job()], prefetch.capacity, idle=False, finished=0, now=0.0)
    assert prefetch.rate is None and prefetch.capacity == prefetch.floor
    for _ in range(20):  # 30 finished, still within the rate window: room for 60, no more
        prefetch.claimed(prefetch.capacity, [_job()], prefetch.capacity, idle=False, finished=30, now=0.1)
    assert prefetch.rate is None and prefetch.capacity == 60
