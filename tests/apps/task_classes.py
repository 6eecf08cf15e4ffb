"""An importable app with a base class whose hooks record each call in a side table, and a
class-based task: what tests/test_task_classes.py runs in prefork children (which import it).

Database URL and schema come from SQLQ_DATABASE_URL / SQLQ_SCHEMA, which the test fixtures set; the
side table is ``<schema>.hook_calls`` (``create_hook_table``)."""

from __future__ import annotations

import os
import threading

import psycopg
from psycopg import sql

from sqlq import App

app = App("tests.apps.task_classes")


def create_hook_table(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("CREATE TABLE {}.hook_calls (task_id text NOT NULL, hook text NOT NULL, detail text, "
                         "pid int NOT NULL)").format(sql.Identifier(schema)))


def _record(task_id: str, hook: str, detail: str) -> None:
    with psycopg.connect(os.environ["SQLQ_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {}.hook_calls VALUES (%s, %s, %s, %s)").format(
            sql.Identifier(os.environ["SQLQ_SCHEMA"])), (task_id, hook, detail, os.getpid()))


class Recorded(app.Task):
    def before_start(self, task_id, args, kwargs):
        _record(task_id, "before_start", repr(list(args)))

    def on_success(self, retval, task_id, args, kwargs):
        _record(task_id, "on_success", repr(retval))

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        _record(task_id, "on_failure", einfo.type.__name__)

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        _record(task_id, "after_return", status)


class Echo(Recorded):
    name = "tests.apps.task_classes.echo"

    def run(self, value):
        return {"value": value, "id": self.request.id, "timelimit": list(self.request.timelimit)}


echo = app.register_task(Echo())


@app.task(base=Recorded, throws=(LookupError,))
def refuse(key):
    raise KeyError(key)


@app.task(base=Recorded)
def nap(seconds):
    threading.Event().wait(seconds)
    return seconds
