"""``sqlq worker``/``sqlq beat``'s Celery-style flags, on real workers in subprocesses: --pidfile,
--detach, --logfile, --purge, -X, -I, --time-limit, --max-memory-per-child, --autoscale,
--log-format json and Celery's task log lines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlq import App
from sqlq.daemon import expand_path
from sqlq.errors import ConfigurationError
from sqlq.worker.autoscale import parse_autoscale
from tests.apps.harness import ROOT, wait_for

TIMEOUT = 30


@pytest.fixture
def flags_app(schema: str) -> Iterator[App]:
    from tests.apps import flags

    flags.app.close()  # drop connections made for a previous test's schema
    flags.app.migrate()
    yield flags.app
    flags.app.close()


def _command(*args: str, command: str = "worker") -> list[str]:
    return [sys.executable, "-m", "sqlq", "-A", "tests.apps.flags:app", command, *args]


def _run(*args: str, command: str = "worker") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args, command=command), cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@contextlib.contextmanager
def _started(*args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            _command(*args), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie (reaped by init later) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _stats(app: App) -> dict:
    return wait_for(
        lambda: (r := app.control.inspect(timeout=1).stats()) and next(iter(r.values())),
        message="a stats reply",
    )


# --- pure logic ---------------------------------------------------------------------------------


def test_autoscale_values_parse_as_celery_reads_them():
    assert parse_autoscale("10,3") == (10, 3)
    assert parse_autoscale("3,10") == (10, 3)  # swapped: put in order
    assert parse_autoscale("4") == (4, 1)  # MIN 0 in Celery; a pool runs at least one here
    assert parse_autoscale(None) is None
    for bad in ("a,b", "1,2,3", "-1,2", "0"):
        with pytest.raises(ConfigurationError, match="--autoscale"):
            parse_autoscale(bad)


def test_node_name_expansions_in_paths():
    assert expand_path("/var/log/%n%I.log", "w1@host.example.com") == "/var/log/w1.log"
    assert (
        expand_path("/run/%h-%d-%i-%%.pid", "w1@host.example.com")
        == "/run/host.example.com-example.com-0-%.pid"
    )
    assert expand_path("/tmp/%p.log", "w1@box") == "/tmp/w1@box.log"
    assert expand_path("/tmp/%n%I.log", "w1@box", index=2) == "/tmp/w1-2.log"
    assert os.path.isabs(expand_path("rel.log", "w@h"))
    with pytest.raises(ConfigurationError, match="unknown expansion %x"):
        expand_path("/tmp/%x", "w@h")


# --- pidfile, detach, logfile -------------------------------------------------------------------


def test_pidfile_is_written_refused_while_held_removed_at_exit_and_replaced_when_stale(flags_app, tmp_path):
    pidfile = tmp_path / "w.pid"
    with _started("-P", "threads", "-c", "1", "--pidfile", str(pidfile), log=tmp_path / "a.log") as first:
        wait_for(
            lambda: pidfile.exists() and pidfile.read_text().strip() == str(first.pid), message="the pidfile"
        )
        second = _run("-P", "threads", "-c", "1", "--pidfile", str(pidfile))
        assert second.returncode == 1
        assert f"pidfile {pidfile} is held by the running process {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(TIMEOUT) == 0
    assert not pidfile.exists()
    gone = subprocess.Popen(["true"])
    gone.wait()
    pidfile.write_text(f"{gone.pid}\n")  # a stale pidfile: its process is gone
    with _started("-P", "threads", "-c", "1", "--pidfile", str(pidfile), log=tmp_path / "b.log") as third:
        wait_for(lambda: pidfile.read_text().strip() == str(third.pid), message="the stale pidfile replaced")
        wait_for(lambda: "ready" in (tmp_path / "b.log").read_text(), message="the worker to be ready")
        third.send_signal(signal.SIGTERM)
        assert third.wait(TIMEOUT) == 0
    assert not pidfile.exists()


def test_detach_leaves_a_daemon_that_logs_to_its_logfile_and_stops_on_sigterm(flags_app, tmp_path):
    from tests.apps import flags

    pidfile, logfile = tmp_path / "%n.pid", tmp_path / "%n.log"
    done = _run(
        "-P",
        "threads",
        "-c",
        "1",
        "-n",
        "flagsd@host",
        "-D",
        "--pidfile",
        str(pidfile),
        "--logfile",
        str(logfile),
    )
    assert done.returncode == 0, done.stderr
    pidfile, logfile = tmp_path / "flagsd.pid", tmp_path / "flagsd.log"  # (%n expanded)
    pid = int(
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), message="the daemon's pidfile")
    )
    try:
        assert os.getsid(pid) != os.getsid(0)  # a session of its own (setsid), without a terminal
        assert os.readlink(f"/proc/{pid}/cwd") == "/"  # Celery's default --workdir
        wait_for(
            lambda: "worker flagsd@host ready" in logfile.read_text(), message="the ready line in the logfile"
        )
        handle = flags.add.delay(2, 3)
        assert handle.get(timeout=TIMEOUT) == 5
        wait_for(
            lambda: f"Task tests.apps.flags.add[{handle.id}] succeeded in" in logfile.read_text(),
            message="the task's line in the logfile",
        )
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), message="the daemon to stop")
        assert not pidfile.exists()
        assert "stopped (warm shutdown)" in logfile.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_beat_takes_the_same_daemon_options(flags_app, tmp_path):
    pidfile, logfile = tmp_path / "beat.pid", tmp_path / "beat.log"
    done = _run("-D", "--pidfile", str(pidfile), "--logfile", str(logfile), "-l", "debug", command="beat")
    assert done.returncode == 0, done.stderr
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), message="beat's pidfile"))
    try:
        wait_for(lambda: logfile.read_text().strip(), message="beat's log lines")
        held = _run("--pidfile", str(pidfile), command="beat")
        assert held.returncode == 1 and f"held by the running process {pid}" in held.stderr
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), message="beat to stop")
        assert not pidfile.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- queues and imports -------------------------------------------------------------------------


def test_purge_deletes_the_waiting_jobs_of_the_workers_queues_and_says_how_many(flags_app):
    from tests.apps import flags

    mine = [flags.add.apply_async((i, i), queue="default") for i in range(3)]
    other = flags.add.apply_async((1, 1), queue="other")
    done = _run("-P", "solo", "--burst", "--purge")
    assert done.returncode == 0, done.stderr
    assert "purged 3 waiting job(s) from queue(s) default" in done.stderr
    assert all(flags.app.AsyncResult(h.id).state == "PENDING" for h in mine)
    with flags.app.connection() as conn:
        assert {r.queue: r.waiting for r in flags.app.store.queue_depths(conn)}.get("other") == 1
    assert other.state == "PENDING"


def test_exclude_queues_leaves_their_jobs_waiting(flags_app):
    from tests.apps import flags

    a = flags.add.apply_async((1, 2), queue="a")
    b = flags.add.apply_async((3, 4), queue="b")
    done = _run("-P", "solo", "--burst", "-Q", "a,b", "-X", "b")
    assert done.returncode == 0, done.stderr
    assert a.get(timeout=TIMEOUT) == 3
    assert b.state == "PENDING"
    refused = _run("-P", "solo", "--burst", "-Q", "a", "-X", "a")
    assert refused.returncode == 1 and "excludes every queue" in refused.stderr


def test_include_imports_task_modules_in_prefork_children_too(flags_app):
    handle = flags_app.send_task("flags.included")
    done = _run("-P", "prefork", "-c", "1", "--burst", "-I", "tests.apps.flags_included")
    assert done.returncode == 0, done.stderr
    assert handle.get(timeout=TIMEOUT) == "included"
    missing = _run("-P", "solo", "--burst", "-I", "tests.apps.no_such_module")
    assert (
        missing.returncode == 1
        and "-I/--include 'tests.apps.no_such_module' cannot be imported" in missing.stderr
    )


# --- limits and the pool ------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_time_limit_flag_stops_a_task_without_its_own_limit(flags_app, pool):
    from tests.apps import flags

    handle = flags.sleep.delay(30)
    done = _run("-P", pool, "-c", "1", "--burst", "--time-limit", "1")
    assert done.returncode == 0, done.stderr
    with pytest.raises(Exception) as caught:
        handle.get(timeout=TIMEOUT)
    assert "TimeLimitExceeded" in type(caught.value).__name__ + str(getattr(caught.value, "exc_type", ""))


def test_max_memory_per_child_replaces_the_child_after_the_job_that_grew_it(flags_app):
    from tests.apps import flags

    before = [flags.pid.delay() for _ in range(2)]
    grow = flags.hog.delay(150_000)
    after = [flags.pid.delay() for _ in range(3)]
    done = _run("-P", "prefork", "-c", "1", "--burst", "--max-memory-per-child", "120000")
    assert done.returncode == 0, done.stderr
    first = {h.get(timeout=TIMEOUT) for h in before}
    assert len(first) == 1  # below the limit: one child ran both
    assert grow.get(timeout=TIMEOUT) in first  # the job that grew it ran there, and ended well
    assert "is above --max-memory-per-child 120000 KiB" in done.stderr
    replaced = {h.get(timeout=TIMEOUT) for h in after}
    assert len(replaced) == 1 and not replaced & first  # the jobs queued behind it went to its successor
    assert "died" not in done.stderr  # handed back, not lost


def test_max_memory_per_child_says_it_applies_to_prefork_only(flags_app):
    done = _run("-P", "threads", "--burst", "--max-memory-per-child", "100000")
    assert done.returncode == 0, done.stderr
    assert "applies to the prefork pool only" in done.stderr


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_autoscale_grows_while_jobs_wait_and_shrinks_when_idle(flags_app, tmp_path, monkeypatch, pool):
    from tests.apps import flags

    monkeypatch.setenv("AUTOSCALE_KEEPALIVE", "0.5")
    with _started("-P", pool, "--autoscale", "3,1", "-n", "scaled@host", log=tmp_path / "w.log") as worker:
        assert _stats(flags_app)["pool"]["autoscaler"]["current"] == 1
        handles = [flags.sleep.delay(1.0) for _ in range(6)]
        wait_for(
            lambda: _stats(flags_app)["pool"]["autoscaler"]["current"] == 3, message="the pool to grow to 3"
        )
        assert [h.get(timeout=TIMEOUT) for h in handles] == [1.0] * 6
        wait_for(lambda: _stats(flags_app)["pool"]["max-concurrency"] == 1, message="the pool to shrink to 1")
        if pool == "prefork":
            wait_for(lambda: len(_stats(flags_app)["pool"]["processes"]) == 1, message="one child left")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(TIMEOUT) == 0
    log = (tmp_path / "w.log").read_text()
    assert "autoscale: pool grows from 1 to" in log and "autoscale: pool shrinks" in log


def test_bad_flag_values_are_refused_naming_the_problem(flags_app, monkeypatch):
    refused = _run("-P", "solo", "--autoscale", "3,1", "--burst")
    assert refused.returncode == 1 and "--autoscale needs a pool that can grow" in refused.stderr
    refused = _run("-P", "solo", "--autoscale", "3,1", "-D")  # said before detaching, where it is seen
    assert refused.returncode == 1 and "--autoscale needs a pool that can grow" in refused.stderr
    refused = _run("-P", "solo", "--autoscale", "x", "--burst")
    assert refused.returncode == 1 and "give MAX,MIN as two whole numbers" in refused.stderr
    refused = _run("-P", "solo", "--time-limit", "0", "--burst")
    assert refused.returncode == 1 and "--time-limit must be more than 0 seconds" in refused.stderr
    refused = _run("-P", "solo", "--workdir", "/tmp", "--burst")
    assert refused.returncode == 1 and "give it with --detach" in refused.stderr
    monkeypatch.setenv("SQLQ_LOG_FORMAT", "xml")
    refused = _run("-P", "solo", "--burst")
    assert (
        refused.returncode == 1 and "log format 'xml'" in refused.stderr and "Traceback" not in refused.stderr
    )


# --- logs ---------------------------------------------------------------------------------------


def _outcome_jobs(app: App) -> dict[str, str]:
    from tests.apps import flags

    return {
        "add": flags.add.delay(1, 2).id,
        "fail": flags.fail.delay("kaput").id,
        "retry": flags.retry_once.delay().id,
    }


def test_json_log_lines_parse_and_name_their_job(flags_app):
    ids = _outcome_jobs(flags_app)
    done = _run("-P", "threads", "-c", "2", "--burst", "-l", "debug", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines and all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)

    def about(job_id: str, text: str) -> dict:
        return next(line for line in lines if line.get("job_id") == job_id and text in line["message"])

    received = about(ids["add"], "received")
    assert received["level"] == "DEBUG" and received["job_name"] == "tests.apps.flags.add"
    assert received["job_queue"] == "default"
    assert about(ids["add"], "succeeded in")["level"] == "INFO"
    failed = about(ids["fail"], "raised unexpected")
    assert (
        failed["level"] == "ERROR"
        and "Traceback" in failed["message"]
        and "RuntimeError" in failed["message"]
    )
    assert about(ids["retry"], "retry: Retry in")["level"] == "INFO"


def test_celery_task_lines_in_text_format(flags_app):
    ids = _outcome_jobs(flags_app)
    done = _run("-P", "solo", "--burst", "-l", "debug")
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert f"Task tests.apps.flags.add[{ids['add']}] received" in err
    assert f"Task tests.apps.flags.add[{ids['add']}] succeeded in " in err and "s: 3" in err
    assert f"Task tests.apps.flags.fail[{ids['fail']}] raised unexpected: RuntimeError('kaput')" in err
    assert "Traceback (most recent call last)" in err
    assert (
        f"Task tests.apps.flags.retry_once[{ids['retry']}] retry: Retry in 0s: ValueError('not yet')" in err
    )


def test_celery_switches_without_meaning_say_so_in_one_line(flags_app):
    done = _run(
        "-P", "solo", "--burst", "--without-gossip", "--without-mingle", "--without-heartbeat", "-O", "fair"
    )
    assert done.returncode == 0, done.stderr
    for flag in ("--without-gossip", "--without-mingle", "--without-heartbeat"):
        assert sum(f"{flag} has no effect in sqlq" in line for line in done.stderr.splitlines()) == 1
    assert "-O fair: " in done.stderr
