"""``make bench-cost`` (and the last part of ``make bench``): what one job costs, not how fast it goes.

    .venv/bin/python -m benchmarks.bench_costs

For enqueue one by one (``delay()``), bulk enqueue (``delay_many``) and the drain (one
``sqlq worker --burst`` with no flags, then the tuned ``-P solo --prefetch-multiplier 1000``), per job:

- statements: every statement the server executed for sqlq's database (``pg_stat_statements``
  ``calls``, utility statements such as BEGIN/COMMIT included): the round trips, as psycopg sends
  one statement per round trip outside a pipeline;
- transactions (``pg_stat_database`` commits + rollbacks);
- server CPU µs: user + system time of the whole server (the postmaster, every process it runs and
  every one that exited: backends, WAL writer, checkpointer, autovacuum), from ``/proc``;
- client CPU µs: the producer's own process time (enqueue, bulk), or the worker process and its
  children (drain);
- WAL bytes (``pg_current_wal_lsn`` before and after).

It runs on a private cluster of its own (``tests/cluster.py``: initdb on a free port, fsync off,
``pg_stat_statements`` preloaded), so that the server's counters and its WAL are sqlq's alone: on the
shared server other people's sessions would be counted too. fsync off changes the time a commit
waits, not the CPU or the WAL it costs.

Environment: ``BENCH_COST_N`` jobs per phase (default 10000; enqueue one by one does a fifth of it).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.cluster import PrivateCluster  # noqa: E402

DATABASE = "sqlq_cost"
SCHEMA = "sqlq_cost"
APP_MODULE = "benchmarks.bench_tasks"
TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")


@dataclass
class Counters:
    statements: int
    transactions: int
    server_cpu_us: float
    wal_bytes: int


@dataclass
class Cost:
    phase: str
    jobs: int
    seconds: float
    statements_per_job: float
    transactions_per_job: float
    server_cpu_us_per_job: float
    client_cpu_us_per_job: float
    wal_bytes_per_job: float


def server_cpu_us(postmaster: int) -> float:
    """User + system CPU of the postmaster, of its live children, and (cutime/cstime, which the
    kernel adds when a child is reaped) of every child that has exited."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited while we looked
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        ppid, utime, stime, cutime, cstime = int(fields[1]), *map(int, fields[11:15])
        if int(entry) == postmaster:
            total += utime + stime + cutime + cstime
        elif ppid == postmaster:
            total += utime + stime
    return total * TICK_US


class Meter:
    """The server's counters for sqlq's database, read on a connection to another one (``postgres``),
    so the reading itself is not counted."""

    def __init__(self, cluster: PrivateCluster):
        self.conn = psycopg.connect(cluster.url, autocommit=True)
        self.postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])

    def read(self) -> Counters:
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        row = self.conn.execute(
            "SELECT (SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements AS s"
            "        JOIN pg_database AS d ON d.oid = s.dbid WHERE d.datname = %(db)s) AS statements,"
            "       (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %(db)s) AS xacts,"
            "       pg_current_wal_lsn()::text AS lsn", {"db": DATABASE}).fetchone()
        assert row is not None
        wal = self.conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, '0/0')::bigint", (row[2],)).fetchone()
        assert wal is not None
        return Counters(int(row[0]), int(row[1]), server_cpu_us(self.postmaster), int(wal[0]))

    def settle(self) -> None:
        """Every phase runs in processes of its own, and a backend reports its counters when its
        client leaves (while it lives, only every 10 s when idle): so a phase's counters are complete
        once no backend of sqlq's database is left."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = self.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (DATABASE,)).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.05)
        time.sleep(0.1)  # a backend's exit report lands just after it leaves pg_stat_activity


def measured(meter: Meter, phase: str, jobs: int, run: Callable[[], float]) -> Cost:
    """``run`` does the phase and returns the client CPU seconds it spent."""
    meter.settle()
    before = meter.read()
    start = time.perf_counter()
    client_s = run()
    seconds = time.perf_counter() - start
    meter.settle()
    after = meter.read()
    return Cost(phase, jobs, seconds,
                (after.statements - before.statements) / jobs,
                (after.transactions - before.transactions) / jobs,
                (after.server_cpu_us - before.server_cpu_us) / jobs,
                client_s * 1e6 / jobs,
                (after.wal_bytes - before.wal_bytes) / jobs)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def environment(url: str) -> dict[str, str]:
    env = {**os.environ, "SQLQ_DATABASE_URL": url, "SQLQ_SCHEMA": SCHEMA,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for key in ("SQLQ_POOL", "SQLQ_CONCURRENCY", "SQLQ_PREFETCH_MULTIPLIER", "SQLQ_QUEUES"):
        env.pop(key, None)  # the worker's options are exactly the ones on its command line
    return env


# A producer process: a warm-up on its own connection, then the phase; prints the phase's own CPU
# seconds (the interpreter's start-up and the warm-up are not the job's cost).
PRODUCER = """
import sys, time
from benchmarks.bench_tasks import noop
n, how = int(sys.argv[1]), sys.argv[2]
noop.delay(-1)
noop.delay_many([-2, -3])
start = time.process_time()
if how == "one":
    for i in range(n):
        noop.delay(i)
else:
    for lo in range(0, n, 5000):
        noop.delay_many(range(lo, min(n, lo + 5000)))
print(time.process_time() - start)
"""


def produce(url: str, n: int, how: str) -> Callable[[], float]:
    def run() -> float:
        out = subprocess.run([sys.executable, "-c", PRODUCER, str(n), how], env=environment(url), cwd=REPO,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    return run


def drain(url: str, flags: list[str], log_dir: Path, name: str) -> Callable[[], float]:
    def run() -> float:
        before = children_cpu_s()
        with open(log_dir / f"{name}.log", "wb") as log:
            subprocess.run([sys.executable, "-m", "sqlq", "-A", APP_MODULE, "worker", "-l", "warning", "--burst",
                            *flags], env=environment(url), cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                           stderr=subprocess.STDOUT, timeout=300, check=True)
        return children_cpu_s() - before  # the worker and its prefork children, all reaped
    return run


@contextlib.contextmanager
def stats_cluster(max_connections: int = 200) -> Iterator[tuple[PrivateCluster, str]]:
    """A private cluster with ``pg_stat_statements`` and sqlq's database ``DATABASE``, migrated: the
    cluster and that database's URL. Stopped and deleted on exit."""
    with PrivateCluster() as cluster:
        cluster.stop()
        with open(cluster.data / "postgresql.conf", "a") as conf:
            conf.write("\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n"
                       f"pg_stat_statements.max = 5000\nmax_connections = {max_connections}\n")
        cluster.start()
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
            conn.execute("CREATE EXTENSION pg_stat_statements")
        url = cluster.url.rsplit("/", 1)[0] + f"/{DATABASE}"
        subprocess.run([sys.executable, "-m", "sqlq", "-A", APP_MODULE, "migrate"], env=environment(url),
                       cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=True)
        yield cluster, url


def measure(n: int) -> list[Cost]:
    log_dir = Path(tempfile.mkdtemp(prefix="sqlq-cost-"))
    with stats_cluster() as (cluster, url):
        meter = Meter(cluster)
        produce(url, 100, "bulk")()  # warm-up: the server's caches, the first drain's start
        drain(url, [], log_dir, "warmup")()
        costs = [measured(meter, "enqueue 1-by-1 (delay)", n // 5, produce(url, n // 5, "one"))]
        drain(url, [], log_dir, "empty")()
        costs.append(measured(meter, "bulk (delay_many)", n, produce(url, n, "bulk")))
        costs.append(measured(meter, "drain, sqlq worker (no flags)", n, drain(url, [], log_dir, "default")))
        produce(url, n, "bulk")()
        costs.append(measured(meter, "drain, -P solo --prefetch-multiplier 1000", n,
                              drain(url, ["-P", "solo", "--prefetch-multiplier", "1000"], log_dir, "tuned")))
        meter.conn.close()
    return costs


def render(costs: list[Cost]) -> str:
    header = ("phase", "jobs", "statements/job", "transactions/job", "server CPU µs/job", "client CPU µs/job",
              "WAL bytes/job")
    rows = [(c.phase, f"{c.jobs:,}", f"{c.statements_per_job:.3f}", f"{c.transactions_per_job:.3f}",
             f"{c.server_cpu_us_per_job:,.0f}", f"{c.client_cpu_us_per_job:,.0f}", f"{c.wal_bytes_per_job:,.0f}")
            for c in costs]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(values: tuple[str, ...]) -> str:
        return " | ".join([values[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(values[1:], widths[1:],
                                                                                      strict=True)])
    return "\n".join(["sqlq cost per job (private cluster, pg_stat_statements; see benchmarks/README.md):",
                      line(header), "-+-".join("-" * w for w in widths), *map(line, rows)])


def main() -> int:
    n = int(os.environ.get("BENCH_COST_N") or 10_000)
    costs = measure(n)
    print(render(costs))
    out = os.environ.get("BENCH_COST_OUT")
    if out:
        Path(out).write_text(json.dumps([asdict(c) for c in costs], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
