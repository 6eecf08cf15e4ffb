"""Adaptive prefetch: how many jobs a worker claims ahead when ``worker_prefetch_multiplier`` is not given.

A fixed prefetch of *concurrency × 4* suits long tasks and a trickle of jobs, but on a backlog of
short ones every claim is a round trip for a handful of jobs, and the worker spends its time
claiming. A fixed large prefetch drains fast but holds jobs back from other workers and from
priority order. So by default the claim size starts at *concurrency × 4* (the floor) and:

* **grows** (doubles) while claims come back full: the queue has more than was asked for;
* **shrinks** (halves) when a claim comes back short, and falls back to the floor when the
  worker is idle (nothing claimed, nothing in flight), so an idle worker prefetches as little as
  a fixed default one;
* is **bounded** by ``MAX_CLAIM``, by memory (``PREFETCH_MEMORY`` bytes of claimed jobs'
  arguments at the size of the jobs last claimed) and by time: at most ``PREFETCH_SECONDS`` of
  work at the rate the worker has been finishing jobs, so that slow jobs are not hoarded (another
  worker could run them, and a worker that dies leaves only that much to run again). Until that
  rate is measured, by what the worker has shown it can do: at most twice the jobs it has
  finished, so that a worker just started cannot double its way to ``MAX_CLAIM`` of slow jobs in
  a few round trips, before it has finished any;
* is **fair**: when other live workers consume the same queue, one claim takes at most its share
  of what waits there (the backlog divided by the consumers), so three workers sharing a queue
  all get work rather than the first to wake taking the lot.

An explicit ``--prefetch-multiplier`` (flag, ``SQLQ_PREFETCH_MULTIPLIER``, or the
``worker_prefetch_multiplier`` setting) keeps the claim size fixed at *concurrency × multiplier*:
explicit means fixed, the default is adaptive.

The sizing rules are pure functions (tested alone, tests/unit/test_prefetch.py); ``Prefetch``
holds one worker's state and is used by the consumer thread only (the other threads read
``capacity``, an int, without a lock).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..store import ClaimedJob

#: The largest adaptive prefetch: past a thousand jobs per claim, a claim's round trip is a small
#: share of its time, and a bigger buffer only holds more jobs back from the other workers.
MAX_CLAIM = 1000

#: Bytes of claimed jobs' arguments an adaptive prefetch may hold in memory (estimated from the
#: jobs of the last claim): large arguments make for a smaller buffer.
PREFETCH_MEMORY = 64 * 1024 * 1024

#: Seconds of work an adaptive prefetch may hold, at the rate the worker finishes jobs.
PREFETCH_SECONDS = 1.0

#: The rate is measured over at least this many seconds between two claims.
RATE_WINDOW = 0.25

#: The multiplier an adaptive prefetch starts from (and falls back to), per pool slot.
BASE_MULTIPLIER = 4


def next_capacity(capacity: int, asked: int, got: int, idle: bool, floor: int, cap: int) -> int:
    """The prefetch after a claim that asked for ``asked`` jobs and got ``got``: doubled when it
    came back full (more is waiting), halved when it came back short, the floor when the worker is
    idle; always within ``floor`` and ``cap`` (a cap below the floor is the floor)."""
    cap = max(cap, floor)
    if asked <= 0:
        return min(max(capacity, floor), cap)
    if got >= asked:
        return min(max(capacity * 2, floor), cap)
    if got == 0 and idle:
        return floor
    if got < asked:
        return min(max(capacity // 2, floor), cap)
    return min(max(capacity, floor), cap)


def fair_share(waiting: int, consumers: int, floor: int) -> int:
    """The most one of ``consumers`` workers claims of the ``waiting`` jobs of a queue they share:
    its share, rounded up, and never less than ``floor`` (the fixed default's claim, which a
    worker may always take)."""
    if consumers <= 1:
        return max(waiting, floor)
    return max(-(-waiting // consumers), floor)


def memory_cap(job_bytes: int, floor: int, budget: int = PREFETCH_MEMORY, cap: int = MAX_CLAIM) -> int:
    """The largest prefetch whose jobs of ``job_bytes`` each fit in ``budget`` (at least ``floor``)."""
    return max(floor, min(cap, budget // max(job_bytes, 1)))


def time_cap(rate: float, floor: int, seconds: float = PREFETCH_SECONDS, cap: int = MAX_CLAIM) -> int:
    """The largest prefetch a worker finishing ``rate`` jobs a second runs within ``seconds`` (at
    least ``floor``)."""
    return max(floor, min(cap, int(rate * seconds)))


def proven_cap(finished: int, floor: int, cap: int = MAX_CLAIM) -> int:
    """The largest prefetch of a worker whose finishing rate is not measured yet, which has finished
    ``finished`` jobs: twice that (at least ``floor``): growth has to be earned by finishing."""
    return max(floor, min(cap, 2 * finished))


def job_size(job: ClaimedJob) -> int:
    """Roughly what a claimed job holds in memory: its arguments, payload and headers."""
    return 512 + len(job.args or "") + len(job.kwargs or "") + len(job.payload or b"") + len(job.headers or "")


class Prefetch:
    """One worker's claim size: fixed (an explicit multiplier) or adaptive (the module's rules)."""

    __slots__ = ("_mark", "adaptive", "cap", "capacity", "floor", "others", "rate")

    def __init__(self, concurrency: int, multiplier: int | None):
        self.adaptive = multiplier is None
        self.floor = concurrency * (BASE_MULTIPLIER if multiplier is None else multiplier)
        self.capacity = self.floor
        self.cap = max(MAX_CLAIM, self.floor) if self.adaptive else self.floor
        #: queue -> other live workers consuming it (QUEUE_CONSUMERS, read by the housekeeper)
        self.others: dict[str, int] = {}
        #: jobs finished a second (a moving average over RATE_WINDOW or more); None until measured
        self.rate: float | None = None
        self._mark: tuple[int, float] | None = None  # (jobs finished, when) at the last measure

    def resized(self, concurrency: int, multiplier: int | None) -> None:
        """The pool now has ``concurrency`` slots (pool_grow / pool_shrink)."""
        self.floor = concurrency * (BASE_MULTIPLIER if multiplier is None else multiplier)
        self.cap = max(MAX_CLAIM, self.floor) if self.adaptive else self.floor
        self.capacity = min(max(self.capacity, self.floor), self.cap) if self.adaptive else self.floor

    def claimed(self, asked: int, jobs: Sequence[ClaimedJob], got: int, idle: bool,
                finished: int | None = None, now: float | None = None) -> None:
        """After one round of claims (``got`` jobs for ``asked``; ``jobs``: the last claim's;
        ``finished``: the jobs the worker has finished so far, at monotonic time ``now``)."""
        if not self.adaptive:
            return
        if finished is not None and now is not None:
            self._measure(finished, now)
        cap = self.cap
        if jobs:
            cap = min(cap, memory_cap(job_size(jobs[0]), self.floor))
        if self.rate is not None:
            cap = min(cap, time_cap(self.rate, self.floor))
        elif finished is not None:
            cap = min(cap, proven_cap(finished, self.floor))
        self.capacity = next_capacity(self.capacity, asked, got, idle, self.floor, cap)

    def _measure(self, finished: int, now: float) -> None:
        if self._mark is None:
            self._mark = (finished, now)
            return
        done, since = self._mark
        if finished == done:  # nothing finished (starting, or idle): no rate to learn, start again
            self._mark = (finished, now)
            return
        if now - since < RATE_WINDOW:
            return
        measured = (finished - done) / (now - since)
        self.rate = measured if self.rate is None else (self.rate + measured) / 2
        self._mark = (finished, now)

    def shared(self, queue: str) -> int:
        """How many other live workers consume ``queue`` (0: this worker alone, or fixed prefetch)."""
        return self.others.get(queue, 0) if self.adaptive else 0
