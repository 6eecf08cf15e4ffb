"""The prefork pool, parent side: child processes that run jobs, and what the parent does when one
dies, hangs past a hard time limit or sits on jobs behind a long one.

The children are ``sqlq.worker.child``, launched with ``python -m``; what the two sides say to each
other is ``sqlq.worker.wire``. The pool reports each result through ``on_result(job, result)`` and
``on_lost(job)`` when a child dies mid-task (SIGKILL, OOM): the parent sees it at once (EOF on the
child's socket).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from .. import signals
from ..errors import TimeLimitExceeded
from ..store import ClaimedJob, Outcome
from .execution import exception_type_name
from .pools import BasePool
from .wire import FrameReader, frame, jobs_to_wire, result_from_wire

log = logging.getLogger("sqlq.worker")


@dataclass
class _Child:
    process: Any
    sock: socket.socket
    frames: FrameReader = field(default_factory=FrameReader)
    ready: bool = False
    # the jobs sent to this child that it has neither reported nor handed back, in the order it runs
    # them: queue[0] is running (or about to), the rest wait in the child
    queue: collections.deque[ClaimedJob] = field(default_factory=collections.deque)
    head_since: float | None = None  # when queue[0] became the child's current job (as seen here)
    hard_deadline: float | None = None  # for queue[0]
    killed_job: str | None = None  # the job whose hard time limit had this child killed
    sent: int = 0  # a child that reached max_tasks_per_child exits: it is sent no more than that
    giveback: bool = False  # asked to hand back its queued jobs, no answer yet
    asked_during: str | None = None  # the job it was running when last asked
    closed: bool = False
    respawn_at: float | None = None  # set when the child died before it was ready: start again then
    terminated: tuple[str, int] | None = None  # (job id, signal): revoke(terminate=True) asked for it
    retiring: bool = False  # pool_shrink chose it: sent no jobs, told to stop, not replaced
    told_to_stop: bool = False
    # past --max-memory-per-child (it said so, handing back its queued jobs): sent no jobs, told to
    # stop once it holds none, and replaced
    exhausted: bool = False


class PreforkPool(BasePool):
    """``concurrency`` child processes, each running the jobs it is sent one after another.

    Each child is a fresh interpreter (``python -m sqlq.worker.child``) that imports the app, so no
    lock or connection held by the parent's threads leaks into it, and the user's ``__main__`` is
    never re-run. Parent and child talk over a socketpair (length-prefixed ``marshal`` tuples); its
    EOF tells the parent at once that a child died (SIGKILL, OOM). A child past its hard
    ``time_limit`` is killed and replaced.

    Jobs go to a child in batches and a child holds at most ``_BATCH`` (fewer when the buffer is
    short, so that jobs spread over the children), topped up by at least half a batch at a time; the
    child reports each job as soon as it ends. One message per job each way, and a wake-up of the
    parent and of the child for each, cost more than the job itself for short tasks. The child runs
    its jobs in order, so when it dies the parent knows the first unreported job was running (lost,
    or FAILURE ``TimeLimitExceeded`` when the parent killed it for its limit) and the others had not
    started: they go to another child. A child busy with one job for ``_STEAL_AFTER`` is sent no
    more jobs and asked to hand back those queued behind it (its reader thread answers even during
    a long task), for the other children; so is every child at a warm shutdown (``take_unstarted``).
    While every child holds more than half a batch, the parent sleeps ``_COALESCE`` between two
    rounds, so that it reads many outcomes per wake-up.
    """

    name = "prefork"
    inline = False
    _BATCH = 32
    _COALESCE = 0.0005
    _STEAL_AFTER = 0.05
    _GIVEBACK_WAIT = 2.0

    def __init__(self, *args: Any, app_path: str | None = None, worker_id: str = "", hostname: str = "",
                 max_tasks_per_child: int | None = None, max_memory_per_child: int | None = None,
                 log_format: str = "text", task_limits: Callable[[str], float | None] | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not app_path:
            raise ValueError("the prefork pool needs an importable app path (sqlq -A module:app)")
        self.app_path = app_path
        self.worker_id = worker_id
        self.hostname = hostname
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        self.log_format = log_format
        self.task_limits = task_limits or (lambda name: None)
        self._children: list[_Child] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._startup_failures = 0
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition(self._lock)  # a child answered a giveback, or died
        # warm shutdown: no job goes to a child any more; queued jobs are asked back (once)
        self._draining = False
        self._drain_asked = False
        self._collecting = False  # take_unstarted is still waiting for the children's answers
        self._returned: list[ClaimedJob] = []
        # remote control (sqlq.control): messages for the children, sent by the supervisor thread
        # (the one writer of the sockets), and the number of children pool_grow/shrink asked for
        self._outbox: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._target: int | None = None
        self._control_due = False  # something above is waiting for the supervisor (_run_control)
        self._retired: list[_Child] = []

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._children.append(self._spawn())
        self._thread = threading.Thread(target=self._supervise, name="sqlq-prefork", daemon=True)
        self._thread.start()

    def _spawn(self) -> _Child:
        signals.worker_before_create_process.send(sender=self)
        parent_sock, child_sock = socket.socketpair()
        command = [sys.executable, "-m", "sqlq.worker.child", "--app", self.app_path,
                   "--fd", str(child_sock.fileno()), "--worker-id", self.worker_id, "--hostname", self.hostname,
                   "--log-level", str(logging.getLogger("sqlq").getEffectiveLevel()), "--log-format", self.log_format]
        if self.max_tasks_per_child:
            command += ["--max-tasks", str(self.max_tasks_per_child)]
        if self.max_memory_per_child:
            command += ["--max-memory", str(self.max_memory_per_child)]
        process = subprocess.Popen(command, pass_fds=[child_sock.fileno()], stdin=subprocess.DEVNULL)
        child_sock.close()
        return _Child(process=process, sock=parent_sock)

    def submit(self, jobs: list[ClaimedJob]) -> None:
        super().submit(jobs)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is already pending
            os.write(self._wake_w, b"x")

    def running(self) -> list[ClaimedJob]:
        with self._lock:
            return [c.queue[0] for c in self._children if c.queue]

    def idle(self) -> bool:
        with self._lock:
            return not self._pending and not any(c.queue for c in self._children)

    # remote control (sqlq.control.commands) ----------------------------------------------------

    def reserved(self) -> list[ClaimedJob]:
        with self._lock:
            return list(self._pending) + [job for c in self._children for job in list(c.queue)[1:]]

    def discard_unstarted(self, ids: set[str]) -> list[ClaimedJob]:
        """The revoked jobs still in the buffer are taken out (the caller records them); those
        already sent to a child are skipped by the child, which reports them REVOKED unrun."""
        taken = super().discard_unstarted(ids)
        with self._lock:
            if any(job.id in ids for c in self._children for job in list(c.queue)[1:]):
                self._outbox.append(("all", ("revoked", sorted(ids))))
                self._control_due = True
        self._wake()
        return taken

    def job_pids(self) -> dict[str, int]:
        """The pid of the child running each running job."""
        with self._lock:
            return {c.queue[0].id: c.process.pid for c in self._children if c.queue and not c.closed}

    def processes(self) -> list[int]:
        return [c.process.pid for c in self._children if not c.closed]

    def terminate_job(self, job_id: str, signum: int) -> bool:
        """Have the child running ``job_id`` killed by ``signum``: the child's reader thread signals
        its own process if that job is still the one it runs (so a job that ended meanwhile never
        takes its successor down), and the job is recorded REVOKED when the child is gone."""
        with self._lock:
            child = next((c for c in self._children if c.queue and c.queue[0].id == job_id and not c.closed), None)
            if child is None:
                return False
            child.terminated = (job_id, signum)
            self._outbox.append(("one", (child, ("terminate", job_id, signum))))
            self._control_due = True
        self._wake()
        return True

    def set_time_limits(self, task_name: str, soft: float | None, hard: float | None) -> None:
        """time_limit: the children apply the soft limit (the parent reads the hard one itself)."""
        self._outbox.append(("all", ("time_limit", task_name, soft, hard)))
        self._control_due = True
        self._wake()

    def resize(self, concurrency: int) -> None:
        """Run ``concurrency`` children (pool_grow / pool_shrink): new ones start now; the ones to
        retire are sent no more jobs and stop once they hold none."""
        self._target = concurrency
        self.concurrency = concurrency
        self._control_due = True
        self._wake()

    def _run_control(self) -> None:
        """The supervisor's share of remote control: send what is queued, start or retire children
        (due again while a child to retire still holds jobs)."""
        self._control_due = False
        while self._outbox:
            kind, data = self._outbox.popleft()
            targets = [cast(_Child, data[0])] if kind == "one" else list(self._children)
            message = data[1] if kind == "one" else data
            for child in targets:
                if not child.closed:
                    with contextlib.suppress(OSError):  # the child died: its EOF is handled
                        child.sock.sendall(frame(message))
        target = self._target
        if target is not None:
            self._resize_to(target)
        for child in self._children:
            if (child.retiring or child.exhausted) and not child.closed and not child.told_to_stop:
                if child.queue:
                    self._control_due = True  # (stopped once it has run what it holds)
                    continue
                child.told_to_stop = True
                with contextlib.suppress(OSError):
                    child.sock.sendall(frame(None))

    def _resize_to(self, target: int) -> None:
        self._target = None
        active = [c for c in self._children if not c.retiring and not (c.closed and c.respawn_at is None)]
        for _ in range(target - len(active)):
            self._children.append(self._spawn())
        for child in sorted(active, key=lambda c: len(c.queue))[:max(len(active) - target, 0)]:
            child.retiring = True

    def take_unstarted(self) -> list[ClaimedJob]:
        """The buffer, plus the jobs queued in children that have not started them (each child's
        reader thread answers at once, even while a long task runs)."""
        with self._lock:
            jobs = list(self._pending)
            self._pending.clear()
            self._draining = self._collecting = True
        if self._thread is not None and self._thread.is_alive():
            self._wake()
            deadline = time.monotonic() + self._GIVEBACK_WAIT
            with self._changed:
                while not self._drain_asked or any(c.giveback and not c.closed for c in self._children):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        log.warning("a prefork child did not hand back its queued jobs within %.0fs; they "
                                    "are handed back (as interrupted) when it answers", self._GIVEBACK_WAIT)
                        break
                    self._changed.wait(left)
        with self._lock:
            self._collecting = False
            jobs.extend(self._returned)
            self._returned.clear()
        return jobs

    def join(self, timeout: float) -> bool:
        done = super().join(timeout)
        self._stop_children(kill=not done)
        return done

    def terminate(self) -> list[ClaimedJob]:
        with self._lock:  # running jobs, and queued ones a child failed to hand back
            interrupted = [job for c in self._children for job in c.queue]
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
                    child.sock.sendall(frame(None))
        for child in self._children:
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.sock.close()

    # the supervisor thread ---------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping:
            if self._control_due:
                self._run_control()
            self._assign()
            waitables: list[int | socket.socket] = [self._wake_r]
            for child in self._children:
                if child.respawn_at is None and not child.closed:
                    waitables.append(child.sock)
            ready, _, _ = select.select(waitables, [], [], self._next_timeout())
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            self._collect()
            self._enforce_time_limits()
            if all(len(c.queue) > self._BATCH // 2 for c in self._children if c.ready and not c.closed):
                # every child has work for a while: let outcomes gather, read them in one go
                time.sleep(self._COALESCE)

    def _next_timeout(self) -> float:
        deadlines = [d for c in self._children for d in (c.hard_deadline, c.respawn_at) if d is not None]
        if not self._draining:
            deadlines += [cast(float, v.head_since) + self._STEAL_AFTER for v in self._victims()]  # (set: see _victims)
        if not deadlines:
            return 1.0
        return max(0.0, min(1.0, min(deadlines) - time.monotonic()))

    def _assign(self) -> None:
        if self._draining:
            if not self._drain_asked:
                for child in self._children:
                    if child.queue and not child.closed:
                        self._ask_giveback(child)
                with self._changed:
                    self._drain_asked = True
                    self._changed.notify_all()
            return
        now = time.monotonic()
        for victim in self._victims():
            if now - cast(float, victim.head_since) >= self._STEAL_AFTER:  # (set: see _victims)
                self._ask_giveback(victim)
        live = [c for c in self._children if c.ready and not c.closed and not self._retiring(c) and not c.retiring
                and not c.exhausted]
        if not live:
            return
        sends = []
        with self._lock:
            pending = self._pending
            if pending:
                # an equal share of what is here, so that a short buffer spreads over the children
                total = len(pending) + sum(len(c.queue) for c in live)
                share = min(self._BATCH, -(-total // len(live)))
                for child in sorted(live, key=lambda c: len(c.queue)):
                    held = len(child.queue)
                    if held and now - cast(float, child.head_since) >= self._STEAL_AFTER:  # (held: set)
                        continue  # busy with a long job: what would wait behind it waits here
                    room = share - held
                    if self.max_tasks_per_child:
                        room = min(room, self.max_tasks_per_child - child.sent)
                    # top up by half a batch at least (fewer, larger messages), unless nearly idle
                    if room <= 0 or (held > 1 and room < share // 2):
                        continue
                    batch = [pending.popleft() for _ in range(min(room, len(pending)))]
                    child.queue.extend(batch)
                    child.sent += len(batch)
                    if not held:
                        self._set_head(child, now)
                    sends.append((child, batch))
                    if not pending:
                        break
        for child, batch in sends:
            try:
                child.sock.sendall(frame(("jobs", jobs_to_wire(batch))))
            except OSError:
                pass  # the child died: _collect sees its EOF and deals with the batch

    def _victims(self) -> list[_Child]:
        """Children with jobs queued behind the one they run, not asked to hand them back yet."""
        return [c for c in self._children if len(c.queue) > 1 and not c.giveback and not c.closed
                and c.head_since is not None and c.asked_during != c.queue[0].id]

    def _ask_giveback(self, child: _Child) -> None:
        child.giveback = True
        child.asked_during = child.queue[0].id if child.queue else None  # once per running job
        try:
            child.sock.sendall(frame(("giveback",)))
        except OSError:
            pass  # the child died: its queued jobs are dealt with at its EOF

    def _set_head(self, child: _Child, now: float) -> None:
        """queue[0] changed: it runs from about now, under its task's hard time limit."""
        if child.queue:
            limit = self.task_limits(child.queue[0].task)
            child.head_since = now
            child.hard_deadline = now + limit if limit else None
        else:
            child.head_since = child.hard_deadline = None

    def _retiring(self, child: _Child) -> bool:
        return bool(self.max_tasks_per_child and child.sent >= self.max_tasks_per_child)

    def _collect(self) -> None:
        for index, child in enumerate(self._children):
            if child.respawn_at is not None:
                if child.respawn_at <= time.monotonic() and not self._stopping:
                    self._children[index] = self._spawn()
                continue
            if child.closed or self._read_messages(child):
                continue
            self._child_gone(index, child)
        if self._retired:  # (pool_shrink: gone and not replaced; removed after the loop over the list)
            self._children = [c for c in self._children if all(c is not r for r in self._retired)]
            self._retired.clear()

    def _child_gone(self, index: int, child: _Child) -> None:
        """EOF: the child is gone (killed, crashed, or done with --max-tasks-per-child)."""
        child.process.wait()
        child.sock.close()
        child.closed = True
        late: list[ClaimedJob] = []
        with self._changed:
            jobs = list(child.queue)
            child.queue.clear()
            child.giveback = False
            self._set_head(child, 0.0)
            unstarted = jobs[1:]  # a child runs its jobs in order: only the first had started
            if unstarted:
                if not self._draining:
                    self._pending.extendleft(reversed(unstarted))
                elif self._collecting:
                    self._returned.extend(unstarted)
                else:
                    late = unstarted
            self._changed.notify_all()
        if jobs:
            job = jobs[0]
            if child.terminated is not None and child.terminated[0] == job.id:
                name = signal.Signals(child.terminated[1]).name
                log.warning("task %s[%s] terminated by %s (revoke); child %s is replaced", job.task, job.id,
                            name, child.process.pid)
                self.on_result(job, Outcome(id=job.id, attempt=job.attempt, state="REVOKED",
                                            exc_type="sqlq.errors.TaskRevokedError",
                                            exc_message=f"terminated by {name} (revoke with terminate=True)"))
            elif child.killed_job == job.id:
                exc = TimeLimitExceeded(f"task {job.task} ran past its hard time limit and its "
                                        f"process was killed")
                self.on_result(job, Outcome(id=job.id, attempt=job.attempt, state="FAILURE",
                                            exc_type=exception_type_name(exc), exc_message=str(exc)))
            else:
                log.error("child process %s running %s[%s] died (exit code %s); job handed back",
                          child.process.pid, job.task, job.id, child.process.returncode)
                self.on_lost(job)
        if unstarted:
            log.warning("%d job(s) queued in child process %s had not started; handed to %s",
                        len(unstarted), child.process.pid, "the queue" if self._draining else "another child")
        for job in late:
            self.on_lost(job)
        if not child.ready:
            # back off without blocking this thread: the other children keep being served
            self._startup_failures += 1
            delay = min(0.5 * 2 ** self._startup_failures, 10.0)
            log.error("child process exited before it was ready (exit code %s); check that "
                      "`%s` imports cleanly; next start in %.1fs",
                      child.process.returncode, self.app_path, delay)
            child.respawn_at = time.monotonic() + delay
        elif child.retiring:
            self._retired.append(child)
        elif not self._stopping:
            self._children[index] = self._spawn()

    def _read_messages(self, child: _Child) -> bool:
        """Handle what the child sent; False when its connection reached EOF (it is gone)."""
        messages: list[Any] = []
        alive = True
        while True:
            try:
                data = child.sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                alive = False
                break
            if not data:
                alive = False
                break
            messages.extend(child.frames.feed(data))
            if len(data) < 1 << 16:
                break  # drained for now; an EOF right behind is seen on the next round
        if messages:
            self._handle(child, messages)
        return alive

    def _handle(self, child: _Child, messages: list[Any]) -> None:
        results = []
        late: list[ClaimedJob] = []
        with self._changed:
            queue = child.queue
            head = queue[0] if queue else None
            for message in messages:
                kind = message[0]
                if kind == "done":
                    if queue and queue[0].id == message[1]:
                        job = queue.popleft()
                    else:  # not expected (the child runs in order): find it
                        found = next((j for j in queue if j.id == message[1]), None)
                        if found is None:
                            continue
                        queue.remove(found)
                        job = found
                    results.append((job, result_from_wire(message[2])))
                elif kind == "returned" or kind == "exhausted":
                    if kind == "exhausted":  # (past --max-memory-per-child: stopped once empty, replaced)
                        child.exhausted = self._control_due = True
                    child.giveback = False
                    ids = set(message[1])
                    if ids:
                        back = [j for j in queue if j.id in ids]
                        child.queue = queue = collections.deque(j for j in queue if j.id not in ids)
                        if not self._draining:
                            self._pending.extendleft(reversed(back))
                        elif self._collecting:
                            self._returned.extend(back)
                        else:
                            late.extend(back)
                    self._changed.notify_all()
                elif kind == "ready":
                    child.ready = True
                    self._startup_failures = 0
            if (queue[0] if queue else None) is not head:
                self._set_head(child, time.monotonic())
        for job, result in results:
            self.on_result(job, result)
        for job in late:
            log.warning("job %s[%s] handed back by its child after the shutdown began", job.task, job.id)
            self.on_lost(job)

    def _enforce_time_limits(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.queue and child.hard_deadline is not None and child.hard_deadline <= now:
                job = child.queue[0]
                log.error("task %s[%s] passed its hard time limit; killing child %s",
                          job.task, job.id, child.process.pid)
                child.killed_job = job.id
                child.hard_deadline = None
                child.process.kill()
