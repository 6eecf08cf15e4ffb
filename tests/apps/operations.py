"""An importable app for the operations tests (unknown tasks, Ignore/Reject, retry tracebacks), run
by prefork children and worker subprocesses as well as by worker threads.

Its database URL and schema come from SQLQ_DATABASE_URL / SQLQ_SCHEMA, which the test fixtures set.
"""

from __future__ import annotations

from sqlq import App
from sqlq.exceptions import Ignore, Reject

app = App("tests.apps.operations")


@app.task
def add(x, y):
    return x + y


@app.task(bind=True, max_retries=3)
def retry_later(self):
    """Waits a minute for its retry, so a test can read the RETRY state and its traceback."""
    try:
        {}["missing"]
    except KeyError as exc:
        raise self.retry(exc=exc, countdown=60) from exc


@app.task
def ignored():
    raise Ignore("nothing to do")


@app.task
def rejected(reason):
    raise Reject(reason, requeue=False)


@app.task(bind=True, max_retries=5)
def requeued_once(self):
    """Rejected with requeue at its first run, succeeds at its second."""
    if self.request.retries == 0:
        raise Reject("not yet", requeue=True)
    return self.request.retries


@app.task(max_retries=1)
def always_requeued():
    raise Reject("never", requeue=True)
