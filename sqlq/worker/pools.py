"""Where jobs run: ``solo`` (in the consumer thread), ``threads``, ``prefork`` (child processes,
``sqlq.worker.prefork``), and the registry ``worker_pool`` / ``--pool`` names them from.

A pool takes claimed jobs from the consumer, runs them with an ``Executor`` and reports each
result through ``on_result(job, result)``; the prefork pool also reports ``on_lost(job)`` when a
child dies mid-task.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from ..store import ClaimedJob
from .execution import Executor, Result, last_resort

OnResult = Callable[[ClaimedJob, Result], None]
OnLost = Callable[[ClaimedJob], None]


class BasePool:
    name = "base"
    inline: bool  # each pool says: True when the jobs run on the claiming thread (run_pending)

    def __init__(self, executor_factory: Callable[[], Executor], concurrency: int, on_result: OnResult,
                 on_lost: OnLost, **_: Any):
        self.executor_factory = executor_factory
        self.concurrency = max(1, concurrency)
        self.on_result = on_result
        self.on_lost = on_lost
        self._pending: collections.deque[ClaimedJob] = collections.deque()
        self._running: dict[str, ClaimedJob] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        return None

    def submit(self, jobs: list[ClaimedJob]) -> None:
        with self._lock:
            self._pending.extend(jobs)

    def take_unstarted(self) -> list[ClaimedJob]:
        """Prefetched jobs that never started: handed back to the queue at shutdown."""
        with self._lock:
            jobs = list(self._pending)
            self._pending.clear()
            return jobs

    def take_buffered(self) -> list[ClaimedJob]:
        """The prefetched jobs no slot has started, taken out so they never run here: this worker
        was presumed dead and they were rescued (another worker may run them already). Unlike
        ``take_unstarted`` the pool goes on working (prefork: jobs already sent to a child stay
        there, a few per child)."""
        with self._lock:
            jobs = list(self._pending)
            self._pending.clear()
            return jobs

    def running(self) -> list[ClaimedJob]:
        with self._lock:
            return list(self._running.values())

    def reserved(self) -> list[ClaimedJob]:
        """Jobs claimed for this pool that have not started (``inspect reserved``)."""
        with self._lock:
            return list(self._pending)

    def discard_unstarted(self, ids: set[str]) -> list[ClaimedJob]:
        """Take the unstarted jobs whose ids are in ``ids`` out of the pool (they were revoked);
        the caller records them."""
        with self._lock:
            taken = [j for j in self._pending if j.id in ids]
            if taken:
                self._pending = collections.deque(j for j in self._pending if j.id not in ids)
            return taken

    def idle(self) -> bool:
        with self._lock:
            return not self._pending and not self._running

    def join(self, timeout: float) -> bool:
        """Wait for running jobs; True when none is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                return True
            time.sleep(0.02)
        return not self.running()

    def terminate(self) -> list[ClaimedJob]:
        """Cold shutdown: stop now; returns the jobs that were interrupted."""
        return self.running()


class SoloPool(BasePool):
    """Runs jobs one after another in the consumer's own thread: the least overhead per job."""

    name = "solo"
    inline = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.concurrency = 1
        self._executor: Executor | None = None

    def run_pending(self, should_stop: Callable[[], bool]) -> None:
        """Called by the consumer: run the buffer until empty or a shutdown is asked for."""
        if self._executor is None:
            self._executor = self.executor_factory()
        while not should_stop():
            with self._lock:
                if not self._pending:
                    return
                job = self._pending.popleft()
                self._running[job.id] = job
            try:
                result = self._executor.execute(job)
            except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt, or one arriving very late
                if isinstance(exc, KeyboardInterrupt):
                    raise
                result = last_resort(job, exc)
            finally:
                with self._lock:
                    self._running.pop(job.id, None)
            self.on_result(job, result)


class _Slot:
    """One pool thread's own short queue, taken from the shared buffer a few jobs at a time."""

    __slots__ = ("lock", "jobs")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the thread's own: contended only by take_unstarted()
        self.jobs: collections.deque[ClaimedJob] = collections.deque()


class ThreadPool(BasePool):
    """``concurrency`` threads. Good for I/O-bound tasks; see ThreadTimeLimits for what it cannot stop.

    Each thread takes a few jobs at a time from the shared buffer into its own slot (fewer when the
    buffer is short, so slow jobs still spread over the threads). One shared lock taken for every
    job made the threads queue on it and on the GIL in turn: about 15 µs per job with four threads
    instead of 3 µs with one. A job goes from the slot to ``_running`` under the slot's lock, which
    ``take_unstarted`` takes too, so a job is always either unstarted (and handed back at shutdown)
    or running, never both, never neither.
    """

    name = "threads"
    inline = False
    _GRAB_MAX = 16

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._available = threading.Condition(self._lock)
        self._stopping = False
        self._retiring = 0  # threads to end (resize): the next ones that find their queue empty
        self._threads: list[threading.Thread] = []
        self._slots = [_Slot() for _ in range(self.concurrency)]

    def start(self) -> None:
        for i, slot in enumerate(self._slots):
            thread = threading.Thread(target=self._work, args=(slot,), name=f"sqlq-pool-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, jobs: list[ClaimedJob]) -> None:
        with self._available:
            self._pending.extend(jobs)
            self._available.notify(len(jobs))

    def take_unstarted(self) -> list[ClaimedJob]:
        with self._lock:
            jobs = list(self._pending)
            self._pending.clear()
            for slot in self._slots:
                with slot.lock:
                    jobs.extend(slot.jobs)
                    slot.jobs.clear()
            return jobs

    def take_buffered(self) -> list[ClaimedJob]:
        return self.take_unstarted()  # the threads' own queues included; the pool goes on

    def running(self) -> list[ClaimedJob]:
        return list(self._running.values())  # one C call under the GIL: a consistent copy

    def reserved(self) -> list[ClaimedJob]:
        with self._lock:
            jobs = list(self._pending)
            for slot in self._slots:
                with slot.lock:
                    jobs.extend(slot.jobs)
            return jobs

    def discard_unstarted(self, ids: set[str]) -> list[ClaimedJob]:
        with self._lock:
            taken = [j for j in self._pending if j.id in ids]
            if taken:
                self._pending = collections.deque(j for j in self._pending if j.id not in ids)
            for slot in self._slots:
                with slot.lock:
                    mine = [j for j in slot.jobs if j.id in ids]
                    if mine:
                        slot.jobs = collections.deque(j for j in slot.jobs if j.id not in ids)
                        taken.extend(mine)
            return taken

    def resize(self, concurrency: int) -> None:
        """Run ``concurrency`` threads (pool_grow / pool_shrink): new threads start now; a thread
        to retire ends once its own queue is empty, never in the middle of a job."""
        with self._available:
            grow = concurrency - self.concurrency
            self.concurrency = concurrency
            if grow < 0:
                self._retiring += -grow
                self._available.notify_all()
                return
            for _ in range(grow):
                slot = _Slot()
                self._slots.append(slot)
                thread = threading.Thread(target=self._work, args=(slot,), name=f"sqlq-pool-{len(self._threads)}",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    def idle(self) -> bool:
        with self._lock:
            return not self._pending and not self._running and not any(s.jobs for s in self._slots)

    def _refill(self, slot: _Slot) -> bool:
        """Move a few jobs from the shared buffer into ``slot``; False when the pool is stopping."""
        with self._available:
            if self._retiring and not self._stopping:
                self._retiring -= 1
                self._slots.remove(slot)  # (empty: only its own thread fills it)
                return False
            while not self._pending and not self._stopping:
                if self._retiring:
                    self._retiring -= 1
                    self._slots.remove(slot)  # (empty: only its own thread fills it)
                    return False
                if self._steal(slot):
                    return True
                self._available.wait()
            if self._stopping and not self._pending:
                return False
            pending = self._pending
            count = min(self._GRAB_MAX, max(1, len(pending) // (2 * self.concurrency)))
            with slot.lock:
                for _ in range(count):
                    slot.jobs.append(pending.popleft())
            if not pending and count > 1:
                self._available.notify_all()  # idle threads may take from this slot (_steal)
            return True

    def _steal(self, slot: _Slot) -> bool:
        """With the shared buffer empty, an idle thread takes the last job of the fullest other slot,
        so a slow job never keeps jobs waiting behind it while a thread is free."""
        victim = max(self._slots, key=lambda s: len(s.jobs))
        if victim is slot:
            return False
        with victim.lock:
            job = victim.jobs.pop() if victim.jobs else None
        if job is None:
            return False
        with slot.lock:
            slot.jobs.append(job)
        return True

    def _work(self, slot: _Slot) -> None:
        executor = self.executor_factory()
        running = self._running
        while True:
            with slot.lock:
                job = slot.jobs.popleft() if slot.jobs else None
                if job is not None:
                    running[job.id] = job
            if job is None:
                if not self._refill(slot):
                    return
                continue
            try:
                result = executor.execute(job)
            except BaseException as exc:  # noqa: BLE001 - e.g. a time limit raised outside the task body
                result = last_resort(job, exc)
            # reported before it leaves _running: a shutdown never sees a job that is neither running
            # nor reported (it would unregister before recording that outcome)
            self.on_result(job, result)
            running.pop(job.id, None)

    def join(self, timeout: float) -> bool:
        done = super().join(timeout)
        with self._available:
            self._stopping = True
            self._available.notify_all()
        return done


#: The pools ``worker_pool`` and ``sqlq worker --pool`` may name.
POOL_NAMES = ("solo", "threads", "prefork")


def pool_class(name: str) -> type[BasePool]:
    """The pool called ``name`` (one of ``POOL_NAMES``). ``sqlq.worker.prefork`` builds on
    ``BasePool`` from here, so it is imported when asked for rather than at the top (a cycle)."""
    if name == "prefork":
        from .prefork import PreforkPool

        return PreforkPool
    return {"solo": SoloPool, "threads": ThreadPool}[name]
