"""A prefork child: ``python -m sqlq.worker.child --app module:app --fd N ...``.

Imports the app, then runs the jobs the parent sends (a few per message) in order until told to
stop, the parent goes away, ``--max-tasks`` is reached, or a job leaves its resident memory above
``--max-memory`` KiB (Celery's ``--max-memory-per-child``: the child ends after that job, and the
parent starts another). SIGINT and SIGTERM are ignored: the parent
decides how a shutdown goes (it lets running jobs finish, or kills the child on a cold shutdown);
only ``revoke(terminate=True)`` of the job running here makes the child die by one of them.

Two threads. The main thread runs jobs from a local queue and sends each outcome as soon as the
job ends, so whatever the child has finished is in the socket (and read by the parent) even if the
next job kills the process. A reader thread receives the parent's messages: batches of jobs, and
``giveback``, answered with the ids of the queued jobs the main thread has not started (taken
from the queue's other end, so each job is either started or handed back, never both), even while
the main thread is inside a long task.

The messages and their framing are in ``sqlq.worker.wire``, shared with the parent.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any, NoReturn

#: The worker's ``-I/--include`` modules, comma-separated, which a child imports after the app.
INCLUDE_ENV = "SQLQ_WORKER_INCLUDE"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sqlq-child")
    parser.add_argument("--app", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--max-tasks", type=int, default=0)
    parser.add_argument("--max-memory", type=int, default=0)
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    parser.add_argument("--log-format", default="text")
    opts = parser.parse_args(argv)
    # ignored, unless revoke(terminate=True) armed them for the job running now (_on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sock = socket.socket(fileno=opts.fd)
    sock.setblocking(True)

    from .. import signals
    from ..loading import load_app

    app = load_app(opts.app)
    for name in filter(None, (n.strip() for n in os.environ.get(INCLUDE_ENV, "").split(","))):
        importlib.import_module(name)  # (the parent imported them: they import)
    _setup_logging(opts.log_level, opts.log_format)  # after the app: its setup_logging receivers decide, as in Celery
    signals.worker_process_init.send(sender=None)
    try:
        return _serve(opts, sock, app)
    finally:
        signals.worker_process_shutdown.send(sender=None, pid=os.getpid(),
                                             exitcode=0 if sys.exc_info()[0] is None else 1)
        app.close()  # (tasks' connections end cleanly: _exit does not collect them)


#: The signal revoke(terminate=True) asked this child to die by, set by the reader thread for the job
#: the main thread runs (SIGINT and SIGTERM are otherwise ignored: a shutdown signal sent to the
#: whole process group must not cut the children's tasks short; the parent decides).
_armed: list[int] = []


def _on_signal(signum: int, frame: Any) -> None:
    if signum in _armed:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _setup_logging(level: int, kind: str = "text") -> None:
    """The child's ``sqlq`` logger, unless a ``setup_logging`` receiver configures logging itself
    (Celery's rule); ``after_setup_logger`` and ``after_setup_task_logger`` follow sqlq's set-up."""
    from .. import signals
    from ..log import make_formatter

    form = "[%(asctime)s: %(levelname)s/child %(process)d] %(message)s"
    details: dict[str, Any] = {"loglevel": level, "logfile": None, "format": form, "colorize": False}
    if signals.setup_logging.has_receivers:
        signals.setup_logging.send(sender=None, **details)
        return
    logger = logging.getLogger("sqlq")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(make_formatter(kind, form))
        logger.addHandler(handler)
    logger.setLevel(level)
    signals.after_setup_logger.send(sender=None, logger=logger, **details)
    signals.after_setup_task_logger.send(sender=None, logger=logging.getLogger("sqlq.task"), **details)


def _serve(opts: argparse.Namespace, sock: socket.socket, app: Any) -> int:
    """Run the jobs the parent sends until told to stop, the parent goes away, or --max-tasks."""
    from ..store import ClaimedJob, Outcome
    from .execution import Executor, Result, last_resort
    from .time_limits import AlarmTimeLimits
    from .wire import FrameReader, frame, jobs_from_wire, result_to_wire

    executor = Executor(app, opts.worker_id, opts.hostname, limits=AlarmTimeLimits())
    send_lock = threading.Lock()

    def send(message: object) -> None:
        data = frame(message)
        with send_lock:
            sock.sendall(data)

    queue: collections.deque[ClaimedJob] = collections.deque()
    current: list[str | None] = [None]  # the job the main thread runs (revoke's terminate)
    revoked: set[str] = set()  # revoked ids among the jobs queued here: reported REVOKED, not run
    wake = threading.Condition()
    ended = []  # non-empty once the parent said stop or went away

    exhausted: list[bool] = []  # non-empty once past --max-memory (said once)

    def take_queued() -> list[ClaimedJob]:
        """The queued jobs the main thread has not started, last first."""
        taken = []
        while True:
            try:
                taken.append(queue.pop())  # atomic: the main thread pops the other end
            except IndexError:
                return taken

    def read() -> None:
        # the soft time limit's SIGALRM must interrupt the main thread's blocking call, not this recv
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        frames = FrameReader()
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            messages = frames.feed(data) if data else [None]
            for message in messages:
                if message is None:  # stop, or EOF: the parent is gone
                    with wake:
                        ended.append(True)
                        wake.notify()
                    return
                if message[0] == "jobs":
                    queue.extend(jobs_from_wire(message[1]))
                    with wake:
                        wake.notify()
                elif message[0] == "terminate":  # (job id, signal): only if that job still runs
                    if current[0] == message[1]:
                        _armed.append(message[2])
                        os.kill(os.getpid(), message[2])
                elif message[0] == "revoked":  # (ids): remote control's revoke of jobs queued here
                    revoked.update(message[1])
                elif message[0] == "time_limit":  # (task, soft, hard): remote control's time_limit
                    task = app.tasks.get(message[1])
                    if task is not None:
                        task.soft_time_limit, task.time_limit = message[2], message[3]
                        executor._plans.pop(task, None)
                elif message[0] == "giveback":
                    returned = take_queued()
                    try:
                        send(("returned", [job.id for job in reversed(returned)]))
                    except OSError:
                        return

    parent = os.getppid()
    send(("ready",))
    threading.Thread(target=read, name="sqlq-child-reader", daemon=True).start()
    done = 0
    while True:
        try:
            job = queue.popleft()
        except IndexError:
            with wake:
                while not queue and not ended:
                    wake.wait()
            if not queue:
                return 0
            continue
        if ended or os.getppid() != parent:
            # stopped with jobs queued: the parent hands them back; or the parent is gone (the reader
            # may not have seen the EOF yet): its jobs are rescued and run elsewhere, so none starts here
            return 0
        if exhausted:  # jobs that were on their way when it said so: back to the parent, not run here
            try:
                send(("returned", [job.id] + [queued.id for queued in reversed(take_queued())]))
            except OSError:
                return 0
            continue
        current[0] = job.id
        result: Result
        try:
            if revoked and job.id in revoked:
                result = Outcome(id=job.id, attempt=job.attempt, state="REVOKED",
                                 exc_type="sqlq.errors.TaskRevokedError", exc_message="revoked before it started")
            else:
                result = executor.execute(job)
        except BaseException as exc:  # noqa: BLE001 - e.g. the soft-limit alarm firing just after the task
            result = last_resort(job, exc)  # this child goes on: a job never ends its process
        current[0] = None
        try:
            send(("done", job.id, result_to_wire(result)))
        except OSError:
            return 0
        done += 1
        if opts.max_tasks and done >= opts.max_tasks:
            return 0
        if opts.max_memory and not exhausted and _resident_kib() > opts.max_memory:
            # the parent gives the jobs queued here to another child, sends no more, and stops this
            # one once it has none (then starts another); jobs already on their way when it said so
            # are handed back as they arrive (above), so none runs in a child past its limit
            exhausted.append(True)
            logging.getLogger("sqlq.worker").warning(
                "child process %s: resident memory %d KiB is above --max-memory-per-child %d KiB after "
                "task %s[%s]; it is replaced", os.getpid(), _resident_kib(), opts.max_memory, job.task, job.id)
            try:
                send(("exhausted", [queued.id for queued in reversed(take_queued())]))
            except OSError:
                return 0


def _resident_kib() -> int:
    """This process's resident memory now, in KiB (Linux's /proc; elsewhere the peak, which
    ``getrusage`` gives in KiB on Linux and in bytes on macOS)."""
    try:
        with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak


def _exit(code: int) -> NoReturn:
    """End the child as multiprocessing's forked children end: the exit handlers run (``atexit``,
    logging's flush), the app's connections are closed, then the process exits without tearing
    down every imported module one by one, which is most of a child's exit and which the parent
    waits for at the end of every burst drain and warm shutdown."""
    try:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):  # (a closed or broken stream: nothing to flush)
                    stream.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    _exit(main())
