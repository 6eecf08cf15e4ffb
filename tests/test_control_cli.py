"""`sqlq inspect <command>` and `sqlq control <command>` as a user runs them (subprocesses: the exit
code and stdout/stderr matter) against a real worker."""

from __future__ import annotations

import json

from tests.apps.harness import wait_answering, wait_for, wait_result
from tests.test_cli import run_cli


def test_inspect_commands_print_like_celery_and_json(basic_app, run_worker):
    with run_worker(basic_app, pool="threads", hostname="cli@test"):
        wait_answering(basic_app, "cli@test")
        ping = run_cli("-A", "tests.apps.basic:app", "inspect", "ping", "--timeout", "10")
        assert ping.returncode == 0, ping.stderr
        assert ping.stdout == "->  cli@test: OK\n        pong\n\n1 node online.\n"

        registered = run_cli("-A", "tests.apps.basic:app", "inspect", "registered", "-t", "10")
        assert registered.returncode == 0 and "    * tests.apps.basic.add\n" in registered.stdout

        active = run_cli("-A", "tests.apps.basic:app", "inspect", "active", "-t", "10")
        assert active.returncode == 0 and "->  cli@test: OK\n    - empty -\n" in active.stdout

        stats = run_cli("-A", "tests.apps.basic:app", "inspect", "stats", "-t", "10", "--json")
        assert stats.returncode == 0
        assert json.loads(stats.stdout)["cli@test"]["pool"]["implementation"] == "threads"

        query = run_cli("inspect", "query_task", "00000000-0000-4000-8000-000000000000", "-d", "cli@test", "-j",
                        "-t", "10")
        assert query.returncode == 0 and json.loads(query.stdout) == {"cli@test": {}}


def test_no_reply_exits_1(basic_app):
    proc = run_cli("inspect", "ping", "--timeout", "0.2")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "No nodes replied within time constraint" in proc.stderr
    other = run_cli("inspect", "ping", "-d", "nobody@test", "-t", "0.2")
    assert other.returncode == 1


def test_control_commands(basic_app, run_worker, raw_conn, schema):
    from tests.apps import basic

    with run_worker(basic_app, pool="threads", hostname="ctl@test") as w:
        wait_answering(basic_app, "ctl@test")
        rate = run_cli("control", "rate_limit", "tests.apps.basic.add", "10/m", "-t", "10")
        assert rate.returncode == 0, rate.stderr
        assert rate.stdout.startswith("->  ctl@test: OK\n        new rate limit set successfully\n")

        grow = run_cli("control", "pool_grow", "2", "-t", "10", "--json")
        assert json.loads(grow.stdout) == {"ctl@test": {"ok": "pool will grow"}} and w.concurrency == 4

        bad = run_cli("control", "add_consumer", "no spaces allowed")
        assert bad.returncode == 1 and "Traceback" not in bad.stderr

        job = basic.sleep.apply_async((30,), countdown=3600)
        revoke = run_cli("control", "revoke", job.id, "-t", "10")
        assert revoke.returncode == 0 and f"tasks {job.id} flagged as revoked" in revoke.stdout
        assert wait_result(raw_conn, schema, job.id)["state"] == "REVOKED"

        down = run_cli("control", "shutdown", "-t", "10")
        assert down.returncode == 0 and "shutting down" in down.stdout
        wait_for(lambda: w._stopped.is_set(), message="the worker to stop")
