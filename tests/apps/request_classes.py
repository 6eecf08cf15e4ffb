"""An importable app whose tasks have their own request classes (Celery's ``Task.Request``), for
tests/test_request_classes.py: prefork children import it, and the hooks, which run in the worker
process that manages the jobs (the test process here), note what they were given in ``seen``."""

from __future__ import annotations

import logging
import os
import threading
import time

from sqlq import App, Task
from sqlq.worker.request import Request

app = App("tests.apps.request_classes")

#: (hook, task id, its arguments, the process the hook ran in)
seen: list[tuple[str, str, tuple, int]] = []
_lock = threading.Lock()
logger = logging.getLogger("tests.request_classes")


class MyRequest(Request):
    """Celery's guide's example: log failures and hard time limits."""

    def on_timeout(self, soft, timeout):
        super().on_timeout(soft, timeout)
        with _lock:
            seen.append(("on_timeout", self.id, (soft, timeout), os.getpid()))
        if not soft:
            logger.warning("A hard timeout was enforced for task %s", self.task.name)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        with _lock:
            seen.append(("on_failure", self.id, (type(exc_info.exception).__name__, str(exc_info.exception),
                                                 "Traceback" in exc_info.traceback, tuple(self.args), return_ok),
                         os.getpid()))
        logger.warning("Failure detected for task %s", self.task.name)


class MyTask(Task):
    Request = MyRequest


def _busy(seconds: float) -> None:
    """Python-level work the threads pool's watchdog can interrupt."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


@app.task(base=MyTask)
def fails(value):
    raise KeyError(value)


@app.task(base=MyTask)
def succeeds():
    return os.getpid()


@app.task(base=MyTask, time_limit=1)
def hard_limited():
    _busy(60)


@app.task(base=MyTask, soft_time_limit=0.3)
def soft_limited():
    _busy(60)


@app.task(Request="tests.apps.request_classes:MyRequest")
def by_path(value):
    raise ValueError(value)
