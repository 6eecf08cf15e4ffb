"""What every scenario needs: a private cluster, the processes it starts, SQL on the side.

A ``Lab`` is one scenario's world. It initdb's a ``PrivateCluster`` on a free port (never the
shared server on 5432), migrates the schema with ``sqlq migrate``, creates the side tables the
tasks write to, and starts processes (workers, beats, a producer) each in its own process group so
that the whole group, prefork children included, can be killed. Leaving the ``with`` block kills
every process it started and destroys the cluster, also on an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from sqlq import App
from tests.apps.harness import child_pids
from tests.cluster import PrivateCluster

REPO = Path(__file__).resolve().parents[2]
APP = "benchmarks.chaos.app"
SCHEMA = "chaos"

SIDE_TABLES = f"""
CREATE TABLE "{SCHEMA}".chaos_runs (job_id uuid NOT NULL, attempt int NOT NULL, worker_id uuid,
    pid int NOT NULL, started_at timestamptz NOT NULL, done_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON "{SCHEMA}".chaos_runs (job_id);
CREATE TABLE "{SCHEMA}".chaos_ledger (job_id uuid NOT NULL, attempt int NOT NULL, worker_id uuid,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON "{SCHEMA}".chaos_ledger (job_id);
CREATE TABLE "{SCHEMA}".chaos_ids (id uuid PRIMARY KEY);
"""


def say(message: str) -> None:
    """Progress on stderr; the figures go to stdout."""
    print(f"[chaos] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Outcome:
    """A scenario's single line and whether every target was met."""

    name: str
    figures: str
    missed: list[str]

    @property
    def ok(self) -> bool:
        return not self.missed

    def line(self) -> str:
        verdict = "OK" if self.ok else "FAILED (" + ", ".join(self.missed) + ")"
        return f"chaos {self.name}: {self.figures} -> {verdict}"


def missed_targets(**must_be_zero: int) -> list[str]:
    """The names of the figures that are not zero (the "nothing lost, nothing dies" targets)."""
    return [name for name, value in must_be_zero.items() if value]


class Proc:
    """One process in its own session (process group), its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.popen.pid
        self.killed_by_us = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def returncode(self) -> int | None:
        return self.popen.poll()

    def children(self) -> list[int]:
        return child_pids(self.pid)

    def sigkill(self) -> None:
        """SIGKILL the main process only (prefork children must notice on their own)."""
        self.killed_by_us = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def terminate(self, grace: float = 10.0) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL of the group if it is still there after ``grace``."""
        self.killed_by_us = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        self.stop()

    def stop(self) -> None:
        """Kill whatever is left of the group, then close the log."""
        self.killed_by_us = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        if not self._log.closed:
            self._log.close()

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


#: FAILUREs recorded without running task code (the row was refused, the task is not registered
#: here, the worker died under it): there is no traceback to keep, and their message says why.
NO_CODE_RAN = ("sqlq.errors.InvalidJobError", "sqlq.errors.NotRegistered", "sqlq.errors.WorkerLostError")
#: A FAILURE that ran code but kept no traceback (``%s``: NO_CODE_RAN as an array).
MISSING_TRACEBACK = "r.state = 'FAILURE' AND r.traceback IS NULL AND r.exc_type <> ALL(%s::text[])"


class Lab:
    """``with Lab(log_dir, settings) as lab:`` a migrated private cluster and a process registry."""

    def __init__(self, log_dir: Path, settings: dict[str, str] | None = None):
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.settings = dict(settings or {})
        self.cluster = PrivateCluster()  # its own temp dir: the server user must be able to reach it
        self.procs: list[Proc] = []
        self._conn: psycopg.Connection | None = None
        self.client: App | None = None

    # set-up and tear-down ------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.cluster.init()
            self.cluster.start()
            self.cluster.wait_ready()
            self.migrate()
            self.execute(SIDE_TABLES)
            client = App("chaos-client", schema=SCHEMA)
            client.set_database_url(self.url)  # the CLI-level override: beats any SQLQ_* in this process
            self.client = client
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.stop()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        self._drop_connection()
        self.cluster.destroy()

    @property
    def url(self) -> str:
        return self.cluster.url

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every process the scenario starts: the private cluster, its schema."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SQLQ_") and k != "DATABASE_URL"}
        env.update(SQLQ_DATABASE_URL=self.url, SQLQ_SCHEMA=SCHEMA, PYTHONPATH=str(REPO),
                   PYTHONPYCACHEPREFIX=str(self.log_dir.parent / "pycache"))
        env.update({f"SQLQ_{k.upper()}": str(v) for k, v in self.settings.items()})
        env.update(extra)
        return env

    def migrate(self) -> None:
        subprocess.run([sys.executable, "-m", "sqlq", "migrate"], cwd=REPO, env=self.env(), check=True,
                       capture_output=True, timeout=120)

    # processes -----------------------------------------------------------------------------------

    def spawn(self, name: str, argv: Sequence[str], **env: str) -> Proc:
        proc = Proc(name, argv, self.env(**env), self.log_dir)
        self.procs.append(proc)
        return proc

    def worker(self, name: str, pool: str, concurrency: int = 1, queues: str | None = None) -> Proc:
        argv = [sys.executable, "-m", "sqlq", "-A", APP, "worker", "-l", "warning", "-P", pool,
                "-c", str(concurrency), "-n", f"{name}@chaos"]
        if queues:
            argv += ["-Q", queues]
        return self.spawn(name, argv)

    def beat(self, name: str) -> Proc:
        return self.spawn(name, [sys.executable, "-m", "sqlq", "-A", APP, "beat", "-l", "warning"])

    def wait_workers_registered(self, count: int, timeout: float = 60.0) -> None:
        """Wait for ``count`` rows in the workers table (the pools have booted and connected)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.scalar(f'SELECT count(*) FROM "{SCHEMA}".workers') or 0) >= count:
                return
            time.sleep(0.1)
        raise TimeoutError(f"fewer than {count} workers registered after {timeout:.0f}s")

    # SQL on the side -----------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                         application_name="chaos-observer")
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def rows(self, query: str, *params: Any, retry_s: float = 30.0) -> list[tuple]:
        """Run a query; across a restart of the server, reconnect and retry for ``retry_s``."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                bound = params[0] if len(params) == 1 and isinstance(params[0], dict) else params
                cur = self._connection().execute(query, bound or None)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                self._drop_connection()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def scalar(self, query: str, *params: Any, retry_s: float = 30.0) -> Any:
        found = self.rows(query, *params, retry_s=retry_s)
        return found[0][0] if found else None

    def execute(self, statements: str) -> None:
        self._connection().execute(statements)

    def db_now(self) -> float:
        """The database's clock, as a Unix time (the same host's clock as ours, but read where the
        rows are stamped)."""
        return float(self.scalar("SELECT extract(epoch FROM clock_timestamp())"))

    def store_ids(self, ids: Sequence[str]) -> None:
        """The scenario's job ids, in a table, so that lost/stuck are one query each."""
        conn = self._connection()
        with conn.cursor() as cur, cur.copy(f'COPY "{SCHEMA}".chaos_ids (id) FROM STDIN') as copy:
            for job_id in ids:
                copy.write_row((job_id,))

    def ids_accounting(self) -> tuple[int, int, dict[str, int]]:
        """(lost, stuck, results by state and exception type) over chaos_ids: lost = neither a result
        nor a job row."""
        s = f'"{SCHEMA}"'
        lost = self.scalar(f"SELECT count(*) FROM {s}.chaos_ids i WHERE NOT EXISTS "
                           f"(SELECT 1 FROM {s}.results r WHERE r.id = i.id) AND NOT EXISTS "
                           f"(SELECT 1 FROM {s}.jobs j WHERE j.id = i.id)")
        stuck = self.scalar(f"SELECT count(*) FROM {s}.chaos_ids i JOIN {s}.jobs j USING (id)")
        states = self.rows(
            f"SELECT r.state || coalesce('(' || regexp_replace(r.exc_type, '^.*\\.', '') || ')', '') "
            f"|| CASE WHEN {MISSING_TRACEBACK} THEN '[no traceback]' ELSE '' END, "
            f"count(*) FROM {s}.chaos_ids i JOIN {s}.results r USING (id) GROUP BY 1 ORDER BY 1", list(NO_CODE_RAN))
        return int(lost), int(stuck), {k: int(v) for k, v in states}

    def failures_without_traceback(self) -> int:
        s = f'"{SCHEMA}"'
        return int(self.scalar(f"SELECT count(*) FROM {s}.chaos_ids i JOIN {s}.results r USING (id) "
                               f"WHERE {MISSING_TRACEBACK}", list(NO_CODE_RAN)))

    def jobs_left(self) -> int:
        return int(self.scalar(f'SELECT count(*) FROM "{SCHEMA}".jobs') or 0)


def format_states(states: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(states.items())) or "none"


def settings_note(settings: dict[str, str]) -> str:
    """What the scenario changed from sqlq's defaults, for its line (empty when nothing)."""
    if not settings:
        return "settings=defaults"
    return "settings=" + ",".join(f"{k}={v}" for k, v in sorted(settings.items()))


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    started = time.monotonic()
    say(f"{what} ...")
    yield
    say(f"{what}: {time.monotonic() - started:.1f}s")
