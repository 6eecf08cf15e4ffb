"""Where jobs run: ``solo`` (in the consumer thread), ``threads``, ``prefork`` (child processes).

A pool takes claimed jobs from the consumer, runs them with an ``Executor`` and reports each
result through ``on_result(job, result)``. The prefork pool also reports ``on_lost(job)`` when a
child dies mid-task (SIGKILL, OOM): the parent sees it at once through the child's sentinel.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing.connection as mpc
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import TimeLimitExceeded
from ..store import ClaimedJob, Outcome
from .execution import Executor, Result, exception_type_name

log = logging.getLogger("sqlq.worker")

OnResult = Callable[[ClaimedJob, Result], None]
OnLost = Callable[[ClaimedJob], None]


class BasePool:
    name = "base"

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

    def running(self) -> list[ClaimedJob]:
        with self._lock:
            return list(self._running.values())

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

    def running(self) -> list[ClaimedJob]:
        return list(self._running.values())  # one C call under the GIL: a consistent copy

    def idle(self) -> bool:
        with self._lock:
            return not self._pending and not self._running and not any(s.jobs for s in self._slots)

    def _refill(self, slot: _Slot) -> bool:
        """Move a few jobs from the shared buffer into ``slot``; False when the pool is stopping."""
        with self._available:
            while not self._pending and not self._stopping:
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
                result = Outcome(id=job.id, attempt=job.attempt, state="FAILURE",
                                 exc_type=exception_type_name(exc), exc_message=str(exc))
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


@dataclass
class _Child:
    process: Any
    conn: Any
    ready: bool = False
    job: ClaimedJob | None = None
    hard_deadline: float | None = None
    killed_for_time_limit: bool = False
    tasks_done: int = 0
    respawn_at: float | None = None  # set when the child died before it was ready: start again then  # a child that reached max_tasks_per_child exits: it gets no further job


class PreforkPool(BasePool):
    """``concurrency`` child processes, one job at a time each.

    Each child is a fresh interpreter (``python -m sqlq.worker.child``) that imports the app, so no
    lock or connection held by the parent's threads leaks into it, and the user's ``__main__`` is
    never re-run. Parent and child talk over a socketpair; its EOF tells the parent at once that a
    child died (SIGKILL, OOM), and the job is reported lost. A child past its hard ``time_limit`` is
    killed and replaced.
    """

    name = "prefork"
    inline = False

    def __init__(self, *args: Any, app_path: str | None = None, worker_id: str = "", hostname: str = "",
                 max_tasks_per_child: int | None = None, task_limits: Callable[[str], float | None] | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not app_path:
            raise ValueError("the prefork pool needs an importable app path (sqlq -A module:app)")
        self.app_path = app_path
        self.worker_id = worker_id
        self.hostname = hostname
        self.max_tasks_per_child = max_tasks_per_child
        self.task_limits = task_limits or (lambda name: None)
        self._children: list[_Child] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._startup_failures = 0
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._children.append(self._spawn())
        self._thread = threading.Thread(target=self._supervise, name="sqlq-prefork", daemon=True)
        self._thread.start()

    def _spawn(self) -> _Child:
        parent_sock, child_sock = socket.socketpair()
        command = [sys.executable, "-m", "sqlq.worker.child", "--app", self.app_path,
                   "--fd", str(child_sock.fileno()), "--worker-id", self.worker_id, "--hostname", self.hostname,
                   "--log-level", str(logging.getLogger("sqlq").getEffectiveLevel())]
        if self.max_tasks_per_child:
            command += ["--max-tasks", str(self.max_tasks_per_child)]
        process = subprocess.Popen(command, pass_fds=[child_sock.fileno()], stdin=subprocess.DEVNULL)
        child_sock.close()
        return _Child(process=process, conn=mpc.Connection(parent_sock.detach()))

    def submit(self, jobs: list[ClaimedJob]) -> None:
        super().submit(jobs)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is already pending
            os.write(self._wake_w, b"x")

    def running(self) -> list[ClaimedJob]:
        with self._lock:
            return [c.job for c in self._children if c.job is not None]

    def join(self, timeout: float) -> bool:
        done = super().join(timeout)
        self._stop_children(kill=not done)
        return done

    def terminate(self) -> list[ClaimedJob]:
        interrupted = self.running()
        self._stop_children(kill=True)
        return interrupted

    def _stop_children(self, kill: bool) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for child in self._children:
            with contextlib.suppress(OSError, ValueError):  # already gone
                if kill:
                    child.process.kill()
                else:
                    child.conn.send(None)
        for child in self._children:
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.conn.close()

    # the supervisor thread ---------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping:
            self._assign()
            waitables = [self._wake_r]
            for child in self._children:
                if child.respawn_at is None:
                    waitables.append(child.conn)
            for ready in mpc.wait(waitables, timeout=self._next_timeout()):
                if ready == self._wake_r:
                    os.read(self._wake_r, 4096)
            self._collect()
            self._enforce_time_limits()

    def _next_timeout(self) -> float:
        deadlines = [d for c in self._children for d in (c.hard_deadline, c.respawn_at) if d is not None]
        if not deadlines:
            return 1.0
        return max(0.0, min(1.0, min(deadlines) - time.monotonic()))

    def _assign(self) -> None:
        for child in self._children:
            if not child.ready or child.job is not None or self._retiring(child):
                continue
            with self._lock:
                if not self._pending:
                    return
                job = self._pending.popleft()
                child.job = job
            limit = self.task_limits(job.task)
            child.hard_deadline = time.monotonic() + limit if limit else None
            try:
                child.conn.send(tuple(job))
            except (OSError, ValueError):
                pass  # the child died: _collect sees its sentinel and reports the job lost

    def _retiring(self, child: _Child) -> bool:
        return bool(self.max_tasks_per_child) and child.tasks_done >= self.max_tasks_per_child

    def _collect(self) -> None:
        for index, child in enumerate(self._children):
            if child.respawn_at is not None:
                if child.respawn_at <= time.monotonic() and not self._stopping:
                    self._children[index] = self._spawn()
                continue
            if self._read_messages(child):
                continue
            # EOF: the child is gone (killed, crashed, or done with --max-tasks-per-child)
            child.process.wait()
            child.conn.close()
            if child.job is not None:
                job, child.job = child.job, None
                if child.killed_for_time_limit:
                    exc = TimeLimitExceeded(f"task {job.task} ran past its hard time limit and its "
                                            f"process was killed")
                    self.on_result(job, Outcome(id=job.id, attempt=job.attempt, state="FAILURE",
                                                exc_type=exception_type_name(exc), exc_message=str(exc)))
                else:
                    log.error("child process %s running %s[%s] died (exit code %s); job handed back",
                              child.process.pid, job.task, job.id, child.process.returncode)
                    self.on_lost(job)
            if not child.ready:
                # back off without blocking this thread: the other children keep being served
                self._startup_failures += 1
                delay = min(0.5 * 2 ** self._startup_failures, 10.0)
                log.error("child process exited before it was ready (exit code %s); check that "
                          "`%s` imports cleanly; next start in %.1fs",
                          child.process.returncode, self.app_path, delay)
                child.respawn_at = time.monotonic() + delay
            elif not self._stopping:
                self._children[index] = self._spawn()

    def _read_messages(self, child: _Child) -> bool:
        """Handle what the child sent; False when its connection reached EOF (it is gone)."""
        try:
            while child.conn.poll():
                message = child.conn.recv()
                if message[0] == "ready":
                    child.ready = True
                    self._startup_failures = 0
                elif message[0] == "done":
                    job = child.job
                    child.job, child.hard_deadline = None, None
                    child.tasks_done += 1
                    if job is not None and job.id == message[1]:
                        self.on_result(job, message[2])
        except (EOFError, OSError):
            return False
        return True

    def _enforce_time_limits(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.job is not None and child.hard_deadline is not None and child.hard_deadline <= now:
                log.error("task %s[%s] passed its hard time limit; killing child %s",
                          child.job.task, child.job.id, child.process.pid)
                child.killed_for_time_limit = True
                child.hard_deadline = None
                child.process.kill()


POOLS = {"solo": SoloPool, "threads": ThreadPool, "prefork": PreforkPool}
