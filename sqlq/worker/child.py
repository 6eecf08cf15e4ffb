"""A prefork child: ``python -m sqlq.worker.child --app module:app --fd N ...``.

Imports the app, then runs one job per message from the parent until told to stop, the parent
goes away, or ``--max-tasks`` is reached. Signals are ignored: the parent decides how a shutdown
goes (it lets running jobs finish, or kills the child on a cold shutdown).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing.connection as mpc
import signal

from ..app import load_app
from ..store import ClaimedJob
from .execution import AlarmTimeLimits, Executor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sqlq-child")
    parser.add_argument("--app", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--max-tasks", type=int, default=0)
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    opts = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logger = logging.getLogger("sqlq")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/child %(process)d] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(opts.log_level)
    conn = mpc.Connection(opts.fd)
    app = load_app(opts.app)
    executor = Executor(app, opts.worker_id, opts.hostname, limits=AlarmTimeLimits())
    conn.send(("ready", None))
    done = 0
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return 0  # the parent is gone
        if message is None:
            return 0
        job = ClaimedJob(*message)
        result = executor.execute(job)
        try:
            conn.send(("done", job.id, result))
        except OSError:
            return 0
        done += 1
        if opts.max_tasks and done >= opts.max_tasks:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
