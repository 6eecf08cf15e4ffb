"""An importable app with a rate-limited task, for tests that run worker processes
(tests/test_rate_limits.py). Its database URL and schema come from SQLQ_DATABASE_URL / SQLQ_SCHEMA.

The limit is set as an attribute after decoration, the way ``task_annotations`` sets it.
"""

from __future__ import annotations

from sqlq import App

app = App("tests.apps.rated")


@app.task
def limited(i):
    return i


limited.rate_limit = "10/s"  # type: ignore[attr-defined]  # (Task declares rate_limit in issue #12's task part)


@app.task
def free(i):
    return i
