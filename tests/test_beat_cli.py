"""`sqlq schedule list|add|remove|pause|resume|run-now`, as a user types them."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from sqlq.cli import main
from sqlq.periodic import get_schedule


@pytest.fixture
def sqlq(basic_app):
    """``sqlq -A tests.apps.basic ...`` through click's runner; returns (exit code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, ["-A", "tests.apps.basic", *args])
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_add_list_pause_resume_remove(sqlq, basic_app):
    code, _, err = sqlq("schedule", "add", "nightly", "tests.apps.basic.add", "--cron", "30 2 * * *",
                        "--tz", "America/New_York", "--args", "[1, 2]", "--queue", "low")
    assert code == 0, err
    assert "schedule 'nightly': cron '30 2 * * *' in America/New_York, next tick" in err
    code, _, err = sqlq("schedule", "add", "pulse", "tests.apps.basic.add", "--every", "90", "--paused")
    assert code == 0, err
    assert "every 90s in UTC, paused" in err

    code, out, _ = sqlq("schedule", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "schedule", "timezone", "task"]
    assert lines[1].startswith("nightly ") and "cron '30 2 * * *'" in lines[1] and " on " in lines[1]
    assert lines[2].startswith("pulse ") and "every 90s" in lines[2] and " paused " in lines[2]

    code, out, _ = sqlq("schedule", "list", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["name"], r["enabled"], r["options"]) for r in records] == [
        ("nightly", True, {"queue": "low"}), ("pulse", False, {})]

    assert sqlq("schedule", "pause", "nightly")[2].strip() == "schedule 'nightly' paused"
    assert sqlq("schedule", "pause", "nightly")[2].strip() == "schedule 'nightly' was already paused"
    code, _, err = sqlq("schedule", "resume", "nightly")
    assert code == 0 and "resumed; next tick" in err
    assert get_schedule(basic_app, "nightly").enabled

    code, _, err = sqlq("schedule", "remove", "pulse")
    assert (code, err.strip()) == (0, "removed schedule 'pulse'")
    assert [r["name"] for r in map(json.loads, sqlq("schedule", "list", "--json")[1].splitlines())] == ["nightly"]


def test_run_now_prints_the_job_id(sqlq, basic_app, raw_conn: psycopg.Connection):
    sqlq("schedule", "add", "pulse", "tests.apps.basic.add", "--every", "3600", "--args", "[2, 3]")
    code, out, _ = sqlq("schedule", "run-now", "pulse")
    assert code == 0
    row = raw_conn.execute(f'SELECT task, args, headers FROM "{basic_app.conf.schema}".jobs WHERE id = %s',
                           (out.strip(),)).fetchone()
    assert row == ("tests.apps.basic.add", [2, 3], {"periodic_task_name": "pulse"})


def test_errors_are_one_clear_line(sqlq):
    code, _, err = sqlq("schedule", "add", "bad", "tests.apps.basic.add", "--cron", "0 25 * * *")
    assert code == 1
    assert err.startswith("sqlq: error: schedule 'bad': Invalid cron expression '0 25 * * *': the hour field")
    assert "Traceback" not in err

    code, _, err = sqlq("schedule", "add", "bad", "tests.apps.basic.typo", "--every", "5")
    assert code == 1 and "'tests.apps.basic.typo' is not registered" in err

    code, _, err = sqlq("schedule", "add", "bad", "tests.apps.basic.add")
    assert code == 2 and "exactly one of --cron EXPR or --every SECONDS" in err

    for command in ("remove", "pause", "resume", "run-now"):
        code, _, err = sqlq("schedule", command, "ghost")
        assert code == 1 and "there is no schedule named 'ghost'" in err, command


def test_list_shows_a_broken_config_schedule_and_why(sqlq, basic_app):
    from sqlq.periodic.beat import Beat

    basic_app.conf.beat_schedule = {"broken": {"task": "tests.apps.basic.add", "schedule": "0 0 * * *",
                                               "timezone": "Mars/Olympus"}}
    try:
        Beat(basic_app).sync_config()
    finally:
        basic_app.conf.beat_schedule = {}
    code, out, _ = sqlq("schedule", "list")
    assert code == 0
    assert " error " in out.splitlines()[1]
    assert "! schedule 'broken': Unknown time zone 'Mars/Olympus'" in out
