"""``make bench-scale``: does the drain stay flat when the tables are big, or when vacuum is held back?

    .venv/bin/python -m benchmarks.bench_scale

Every scenario runs the same steady load on a private cluster of its own (``tests/cluster.py``, with
fsync on as a production server would be; 10 million history rows do not belong on a shared server):
one ``sqlq worker -P solo --prefetch-multiplier 1000`` (``BENCH_SCALE_FLAGS``) drains while a
producer keeps the queue's backlog topped up (``delay_many`` of 5,000 whenever fewer than the
scenario's backlog wait), so the worker never runs dry and its rate is the drain's capacity. A line
per 10 s gives the jobs finished in it (from ``results.finished_at``), the backlog and the time of
the last CLAIM; the verdict compares every window but the first against the baseline's median.

Scenarios (``BENCH_SCALE_ONLY=a,c`` runs some):

* ``baseline``: empty tables, a backlog of 20,000.
* ``a``: 1,000,000 jobs waiting while draining (the backlog kept at a million).
* ``b``: 10,000,000 rows of history in ``results`` (written by SQL before the run).
* ``c``: a transaction held open on another connection (REPEATABLE READ, a snapshot: held xmin)
  for the whole scenario, ``BENCH_SCALE_HELD_S`` seconds (default 600: the issue's ten minutes).
* ``d``: 100,000 scheduled jobs (a day from now) beside the available ones.

Target: every window within 20 % of the baseline's median. ``BENCH_SCALE_SECONDS`` is the length of
the other scenarios (default 120).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench_costs import APP_MODULE, DATABASE, SCHEMA, environment  # noqa: E402
from tests.cluster import PrivateCluster  # noqa: E402

WINDOW_S = 10.0
TOLERANCE = 0.20
DEFAULT_FLAGS = "-P solo --prefetch-multiplier 1000"


@dataclass
class Window:
    at_s: float
    per_s: float
    backlog: int
    claim_ms: float | None


@dataclass
class Scenario:
    name: str
    what: str
    windows: list[Window] = field(default_factory=list)
    note: str = ""


@contextlib.contextmanager
def scale_cluster() -> Iterator[str]:
    """A private cluster (fsync on, room for big tables) with sqlq's database, migrated: its URL."""
    with PrivateCluster() as cluster:
        cluster.stop()
        with open(cluster.data / "postgresql.conf", "a") as conf:
            conf.write("\nfsync = on\nshared_buffers = 256MB\nmax_wal_size = 4GB\n"
                       "shared_preload_libraries = 'pg_stat_statements'\n")
        cluster.start()
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        url = cluster.url.rsplit("/", 1)[0] + f"/{DATABASE}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        subprocess.run([sys.executable, "-m", "sqlq", "-A", APP_MODULE, "migrate"], env=environment(url),
                       cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=True)
        yield url


def table(name: str) -> str:
    return f'"{SCHEMA}"."{name}"'


def reset(conn: psycopg.Connection) -> None:
    conn.execute(f"TRUNCATE {table('jobs')}, {table('results')}, {table('workers')}")
    conn.execute("SELECT pg_stat_statements_reset()")
    conn.execute(f"VACUUM ANALYZE {table('jobs')}")


def backlog(conn: psycopg.Connection) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table('jobs')} WHERE state = 'available'").fetchone()
    return int(row[0]) if row else 0


def producer(url: str, target: int, stop: threading.Event) -> threading.Thread:
    """A thread that tops the backlog up to ``target`` in ``delay_many`` batches of 5,000."""
    os.environ["SQLQ_DATABASE_URL"], os.environ["SQLQ_SCHEMA"] = url, SCHEMA
    from benchmarks import bench_tasks

    def run() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                missing = target - backlog(conn)
                if missing <= 0:
                    stop.wait(0.2)
                    continue
                for _ in range(max(1, min(missing, 50_000) // 5_000)):
                    bench_tasks.noop.delay_many(range(5_000))

    thread = threading.Thread(target=run, name="bench-scale-producer", daemon=True)
    thread.start()
    return thread


def claim_ms(conn: psycopg.Connection) -> float | None:
    """CLAIM's mean time since the last look (pg_stat_statements, reset each time)."""
    row = conn.execute("SELECT sum(total_exec_time) / nullif(sum(calls), 0) FROM pg_stat_statements "
                       "WHERE query LIKE 'WITH picked%%'").fetchone()
    conn.execute("SELECT pg_stat_statements_reset()")
    return None if row is None or row[0] is None else float(row[0])


def run_scenario(url: str, scenario: Scenario, seconds: float, target: int, flags: list[str], log_dir: Path,
                 prepare: Callable[[psycopg.Connection], None] | None = None,
                 during: Callable[[], contextlib.AbstractContextManager[object]] | None = None) -> Scenario:
    with psycopg.connect(url, autocommit=True) as conn:
        reset(conn)
        if prepare is not None:
            prepare(conn)
        stop = threading.Event()
        feeding = producer(url, target, stop)
        while backlog(conn) < min(target, 20_000):
            time.sleep(0.1)
        with open(log_dir / f"worker-{scenario.name}.log", "wb") as log, \
                (during() if during is not None else contextlib.nullcontext()):
            worker = subprocess.Popen([sys.executable, "-m", "sqlq", "-A", APP_MODULE, "worker", "-l", "warning",
                                       *flags], env=environment(url), cwd=REPO, stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                start = time.monotonic()
                last = conn.execute(f"SELECT count(*) FROM {table('results')}").fetchone()
                done_before = int(last[0]) if last else 0
                claim_ms(conn)
                while time.monotonic() - start < seconds:
                    time.sleep(max(0.0, start + (len(scenario.windows) + 1) * WINDOW_S - time.monotonic()))
                    row = conn.execute(f"SELECT count(*) FROM {table('results')}").fetchone()
                    done = int(row[0]) if row else 0
                    window = Window(time.monotonic() - start, (done - done_before) / WINDOW_S, backlog(conn),
                                    claim_ms(conn))
                    done_before = done
                    scenario.windows.append(window)
                    print(f"  [{scenario.name}] {window.at_s:5.0f}s {window.per_s:>9,.0f} jobs/s  backlog "
                          f"{window.backlog:>9,}  CLAIM {window.claim_ms or 0:7.1f} ms", file=sys.stderr, flush=True)
            finally:
                stop.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
                feeding.join(timeout=60)
    return scenario


def history(rows: int) -> Callable[[psycopg.Connection], None]:
    def prepare(conn: psycopg.Connection) -> None:
        for lo in range(0, rows, 1_000_000):
            conn.execute(
                f"INSERT INTO {table('results')} (id, task, queue, state, result, enqueued_at, started_at, finished_at) "
                "SELECT gen_random_uuid(), 'benchmarks.bench_tasks.noop', 'default', 'SUCCESS', 'null', t, t, t "
                "FROM (SELECT now() - make_interval(secs => random() * 43200) AS t "
                "      FROM generate_series(1, %s)) AS g", (min(1_000_000, rows - lo),))
        conn.execute(f"VACUUM ANALYZE {table('results')}")
    return prepare


def scheduled(rows: int) -> Callable[[psycopg.Connection], None]:
    def prepare(conn: psycopg.Connection) -> None:
        conn.execute(
            f"INSERT INTO {table('jobs')} (id, task, queue, state, args, kwargs, run_at) "
            "SELECT gen_random_uuid(), 'benchmarks.bench_tasks.noop', 'default', 'scheduled', '[0]', '{}', "
            "       now() + interval '1 day' + make_interval(secs => g) FROM generate_series(1, %s) AS g", (rows,))
        conn.execute(f"VACUUM ANALYZE {table('jobs')}")
    return prepare


@contextlib.contextmanager
def held_snapshot(url: str) -> Iterator[object]:
    """A REPEATABLE READ transaction that has taken its snapshot: the server's xmin horizon stays
    where it is, so no row version deleted since can be vacuumed away."""
    with psycopg.connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT count(*) FROM pg_class")
        yield conn
        conn.rollback()


def verdict(scenario: Scenario, base: float | None) -> str:
    rates = [w.per_s for w in scenario.windows[1:]] or [w.per_s for w in scenario.windows]
    if not rates:
        return f"{scenario.name}: no window measured"
    low, median = min(rates), statistics.median(rates)
    if base is None:
        return f"{scenario.name} ({scenario.what}): median {median:,.0f} jobs/s, lowest window {low:,.0f}"
    ok = low >= base * (1 - TOLERANCE)
    return (f"{scenario.name} ({scenario.what}): median {median:,.0f} jobs/s ({median / base:.2f}x baseline), "
            f"lowest window {low:,.0f} ({low / base:.2f}x): {'FLAT' if ok else 'NOT FLAT'} (target >= "
            f"{1 - TOLERANCE:.2f}x in every window)")


def main() -> int:
    seconds = float(os.environ.get("BENCH_SCALE_SECONDS") or 120)
    held_s = float(os.environ.get("BENCH_SCALE_HELD_S") or 600)
    only = {s.strip() for s in (os.environ.get("BENCH_SCALE_ONLY") or "").split(",") if s.strip()}
    flags = shlex.split(os.environ.get("BENCH_SCALE_FLAGS") or DEFAULT_FLAGS)
    log_dir = Path(tempfile.mkdtemp(prefix="sqlq-scale-"))
    results: list[Scenario] = []
    with scale_cluster() as url:
        plan: list[tuple[Scenario, float, int, Callable[[psycopg.Connection], None] | None,
                         Callable[[], contextlib.AbstractContextManager[object]] | None]] = [
            (Scenario("baseline", "empty tables, backlog 20,000"), seconds, 20_000, None, None),
            (Scenario("a", "1,000,000 jobs waiting"), seconds, 1_000_000, None, None),
            (Scenario("b", "10,000,000 rows in results"), seconds, 20_000, history(10_000_000), None),
            (Scenario("c", f"a snapshot held for {held_s:.0f}s (held xmin)"), held_s, 20_000, None,
             lambda: held_snapshot(url)),
            (Scenario("d", "100,000 scheduled jobs beside the available"), seconds, 20_000, scheduled(100_000), None),
        ]
        for scenario, length, target, prepare, during in plan:
            if only and scenario.name not in only and scenario.name != "baseline":
                continue
            print(f"bench-scale: {scenario.name}: {scenario.what} ({length:.0f}s)", file=sys.stderr, flush=True)
            results.append(run_scenario(url, scenario, length, target, flags, log_dir, prepare, during))
    base_rates = [w.per_s for w in results[0].windows[1:]] if results else []
    base = statistics.median(base_rates) if base_rates else None
    print(f"sqlq bench-scale: one `sqlq worker {' '.join(flags)}` draining while a producer keeps the backlog "
          f"topped up; jobs/s per {WINDOW_S:.0f} s window (private cluster, fsync on)")
    for scenario in results:
        print("  " + verdict(scenario, None if scenario.name == "baseline" else base))
        print("    " + ", ".join(f"{w.per_s:,.0f}" for w in scenario.windows)
              + "  (CLAIM ms: " + ", ".join(f"{w.claim_ms or 0:.1f}" for w in scenario.windows) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
