"""An importable app whose module connects signal receivers in prefork children (tests/test_signals_celery.py).

The receivers are connected only in a prefork child (``python -m sqlq.worker.child``), never in the
test process that imports this module too, and write one line per signal to the file named by
SQLQ_SIGNAL_LOG, which the test reads. With SQLQ_SIGNAL_SETUP_LOGGING set, a ``setup_logging``
receiver takes logging over in the child.
"""

from __future__ import annotations

import logging
import os
import sys

from sqlq import App, signals

app = App("tests.apps.signal_app")


@app.task
def where():
    """The pid of the process that ran the job, and whether the sqlq logger has sqlq's handler."""
    return os.getpid()


def _write(line: str) -> None:
    path = os.environ.get("SQLQ_SIGNAL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


IN_CHILD = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None) == "sqlq.worker.child"

if IN_CHILD:
    @signals.worker_process_init.connect
    def _process_init(sender, **kwargs):
        _write(f"worker_process_init {os.getpid()} sender={sender!r}")

    @signals.worker_process_shutdown.connect
    def _process_shutdown(sender, pid, exitcode, **kwargs):
        _write(f"worker_process_shutdown {pid} exitcode={exitcode} same_pid={pid == os.getpid()}")

    if os.environ.get("SQLQ_SIGNAL_SETUP_LOGGING"):
        @signals.setup_logging.connect
        def _setup_logging(sender, loglevel, logfile, format, colorize, **kwargs):  # noqa: A002 - Celery's name
            _write(f"setup_logging {os.getpid()} loglevel={loglevel} "
                   f"sqlq_handlers={len(logging.getLogger('sqlq').handlers)}")
    else:
        @signals.after_setup_logger.connect
        def _after_logger(sender, logger, loglevel, **kwargs):
            _write(f"after_setup_logger {os.getpid()} {logger.name} handlers={len(logger.handlers)}")

        @signals.after_setup_task_logger.connect
        def _after_task_logger(sender, logger, loglevel, **kwargs):
            _write(f"after_setup_task_logger {os.getpid()} {logger.name}")
