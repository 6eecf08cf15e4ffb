"""The `sqlq` command as a user runs it: real subprocesses where the process boundary matters
(exit codes, stdout vs stderr, `python -m sqlq`), click's runner elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from click.testing import CliRunner

from sqlq.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sqlq", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.fixture
def migrated(schema: str) -> str:
    proc = run_cli("migrate")
    assert proc.returncode == 0, proc.stderr
    return schema


def test_python_m_sqlq_shows_help():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("worker", "migrate", "call", "result", "db", "queues"):
        assert command in proc.stdout


def test_migrate_then_check_and_sql(schema: str, raw_conn: psycopg.Connection):
    behind = run_cli("migrate", "check")
    assert behind.returncode == 1
    assert "run `sqlq migrate`" in behind.stderr
    assert "Traceback" not in behind.stderr

    done = run_cli("migrate")
    assert done.returncode == 0, done.stderr
    assert "migrated" in done.stderr and done.stdout == ""
    assert raw_conn.execute("SELECT to_regclass(%s)", (f"{schema}.jobs",)).fetchone()[0] is not None

    assert run_cli("migrate", "check").returncode == 0
    again = run_cli("migrate")
    assert again.returncode == 0 and "up to date" in again.stderr

    as_sql = run_cli("migrate", "--sql")
    assert as_sql.returncode == 0
    assert f'CREATE TABLE {schema}.jobs' in as_sql.stdout or f'CREATE TABLE "{schema}".jobs' in as_sql.stdout
    assert "sqlq_alembic_version" in as_sql.stdout


def test_call_by_name_then_result_after_a_worker_ran_it(migrated: str):
    sent = run_cli("call", "tests.apps.basic.add", "--args", "[2, 40]")
    assert sent.returncode == 0, sent.stderr
    job_id = sent.stdout.strip()
    assert str(uuid.UUID(job_id)) == job_id  # only the id on stdout

    pending = run_cli("result", job_id)
    assert json.loads(pending.stdout)["state"] == "PENDING"

    worker = run_cli("-A", "tests.apps.basic", "worker", "-P", "solo", "--burst", "-l", "warning")
    assert worker.returncode == 0, worker.stderr

    done = run_cli("result", job_id, "--wait", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["state"] == "SUCCESS" and payload["result"] == 42


def test_call_options_countdown_queue_priority(migrated: str, raw_conn: psycopg.Connection):
    sent = run_cli("call", "tests.apps.basic.add", "--args", "[1, 2]", "--kwargs", "{}",
                   "--countdown", "60", "--queue", "slow", "--priority", "7")
    assert sent.returncode == 0, sent.stderr
    row = raw_conn.execute(
        f'SELECT queue, priority, state, run_at > now() + interval \'50 seconds\' FROM "{migrated}".jobs WHERE id = %s',
        (sent.stdout.strip(),)).fetchone()
    assert row == ("slow", 7, "scheduled", True)
    depths = run_cli("queues")
    assert depths.returncode == 0
    assert any(line.split()[:4] == ["slow", "0", "1", "0"] for line in depths.stdout.splitlines())


def test_failed_result_exits_nonzero_with_error_and_traceback(migrated: str):
    job_id = run_cli("call", "tests.apps.basic.fail", "--args", '["bad input"]').stdout.strip()
    assert run_cli("-A", "tests.apps.basic", "worker", "-P", "threads", "-c", "1", "--burst").returncode == 0
    done = run_cli("result", job_id, "--wait", "--timeout", "30")
    assert done.returncode == 1
    payload = json.loads(done.stdout)
    assert payload["state"] == "FAILURE"
    assert "ValueError: bad input" in payload["error"]
    assert "Traceback" in payload["traceback"]


def test_bad_json_arguments_are_a_usage_error(migrated: str):
    proc = run_cli("call", "tests.apps.basic.add", "--args", "{not json")
    assert proc.returncode == 2
    assert "--args must be JSON" in proc.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/db", "unsupported database URL scheme"),
        ("postgresql://127.0.0.1:1/test", "cannot reach PostgreSQL"),
        (f"postgresql://postgres@127.0.0.1:5432/missing_{uuid.uuid4().hex[:8]}", "does not exist"),
        ("postgresql://127.0.0.1:5432/", "names no database"),
    ],
    ids=["scheme", "unreachable", "missing-database", "no-database"],  # (stable: pytest-xdist compares ids)
)
def test_database_errors_are_one_clear_line(url: str, expected: str, schema: str):
    proc = run_cli("--database-url", url, "call", "tests.apps.basic.add", "--args", "[1, 2]")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sqlq: error:") and expected in lines[0]


def test_unmigrated_database_says_to_migrate(schema: str):
    proc = run_cli("call", "tests.apps.basic.add", "--args", "[1, 2]")
    assert proc.returncode == 1
    assert "run `sqlq migrate`" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_app_module_is_a_clear_error(schema: str):
    proc = run_cli("-A", "no_such_module_xyz", "worker", "--burst")
    assert proc.returncode == 1
    assert "cannot import app module 'no_such_module_xyz'" in proc.stderr


def test_worker_options_from_environment(migrated: str):
    """Every worker option can come from SQLQ_* variables (here: pool, concurrency, queues, burst)."""
    job_id = run_cli("call", "tests.apps.basic.add", "--args", "[3, 4]", "--queue", "envq").stdout.strip()
    proc = run_cli("-A", "tests.apps.basic", "worker",
                   env={"SQLQ_POOL": "threads", "SQLQ_CONCURRENCY": "1", "SQLQ_QUEUES": "envq",
                        "SQLQ_BURST": "1", "SQLQ_LOGLEVEL": "info"})
    assert proc.returncode == 0, proc.stderr
    assert "queues=envq pool=threads concurrency=1" in proc.stderr
    assert json.loads(run_cli("result", job_id).stdout)["result"] == 7


def test_inspect_workers_and_purge(migrated: str):
    runner = CliRunner()
    out = runner.invoke(main, ["inspect", "workers"])
    assert out.exit_code == 0
    run_cli("call", "tests.apps.basic.add", "--args", "[1, 1]")
    purged = runner.invoke(main, ["purge", "-f"])
    assert purged.exit_code == 0
    assert "purged 1 job(s)" in purged.output


def test_importing_sqlq_leaves_the_root_logger_alone():
    code = ("import logging, sqlq, sqlq.cli, sqlq.worker.worker; "
            "root = logging.getLogger(); print(len(root.handlers), root.level)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.split() == ["0", str(logging_warning())]


def logging_warning() -> int:
    import logging

    return logging.WARNING


def test_db_status_on_an_unused_directory(tmp_path):
    proc = run_cli("db", "status", env={"SQLQ_EMBEDDED_DIR": str(tmp_path / "unused")})
    assert proc.returncode == 0
    assert proc.stdout.startswith("not running")
    assert not (tmp_path / "unused").exists() or not any((tmp_path / "unused").iterdir())


def test_worker_without_an_app_refuses_instead_of_failing_every_job(migrated: str):
    job_id = run_cli("call", "tests.apps.basic.add", "--args", "[1, 2]").stdout.strip()
    proc = run_cli("worker", "--burst", env={"SQLQ_APP": ""})
    assert proc.returncode == 1
    assert "needs your app: sqlq -A module" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(run_cli("result", job_id).stdout)["state"] == "PENDING"  # the job was left alone


def test_a_worker_and_a_producer_import_only_what_they_use():
    """Start-up is a large part of a short-lived worker (`--burst`) or command: what a plain worker
    and producer do not use stays unimported until used (SQLAlchemy and alembic for migrations and
    users' connections, croniter for schedules, the routing declarations)."""
    code = ("import sys, sqlq, sqlq.cli, sqlq.worker.worker, sqlq.worker.pools, sqlq.worker.prefork, sqlq.worker.child; "
            "print(sorted(m for m in ('sqlalchemy', 'alembic', 'croniter', 'sqlq.routing.declarations', 'sqlq.periodic.timing') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    # and each comes on first use
    code = "import sys, sqlq; sqlq.Exchange, sqlq.crontab; print('sqlq.routing.declarations' in sys.modules, 'croniter' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert out.stdout.strip() == "True True", out.stderr
