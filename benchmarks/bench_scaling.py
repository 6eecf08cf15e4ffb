"""``make bench-scaling`` (and a part of ``make bench``): many workers on one database.

    .venv/bin/python -m benchmarks.bench_scaling

1. **The curve**: 1, 2, 4 and 8 worker processes (``BENCH_SCALING_FLAGS``, default
   ``-P solo --prefetch-multiplier 1000``) are started and left idle until every one has registered;
   then n jobs are enqueued (``delay_many``) and drained by all of them together. Per row: jobs/s
   (n / first ``enqueued_at`` → last ``finished_at``, database clock: no start-up in it), the
   connections the workers hold (idle, and the most seen while draining), the claims made and jobs
   per claim (``pg_stat_statements``), and how often a backend was seen waiting for a lock while
   draining (sampled every 10 ms: claims that wait on each other instead of skipping).
2. **50 idle workers**: the server's CPU (its whole process tree, from ``/proc``) over 20 s with
   50 idle ``-P solo`` workers, less the same server's CPU over 10 s with none, as a share of one
   core; and the workers' own CPU.

It runs on a private cluster of its own (``bench_costs.stats_cluster``), so every connection and
every CPU tick counted is sqlq's.

Environment: ``BENCH_SCALING_N`` jobs per row (default 20000), ``BENCH_SCALING_FLAGS``,
``BENCH_SCALING_IDLE`` idle workers (default 50; 0 skips that part).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench_costs import APP_MODULE, DATABASE, SCHEMA, environment, server_cpu_us, stats_cluster  # noqa: E402
from tests.cluster import PrivateCluster  # noqa: E402

TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")
DEFAULT_FLAGS = "-P solo --prefetch-multiplier 1000"


@dataclass
class CurveRow:
    workers: int
    jobs: int
    per_s: float
    connections_idle: int
    connections_max: int
    claims: int
    jobs_per_claim: float
    lock_wait_samples: int
    samples: int


@dataclass
class IdleCost:
    workers: int
    connections: int
    server_core_share: float  # of one core, less the idle server's own
    server_baseline_core_share: float
    workers_core_share: float  # all idle workers together


class Side:
    """Reads on the private cluster's ``postgres`` database, never counted as sqlq's."""

    def __init__(self, cluster: PrivateCluster):
        self.conn = psycopg.connect(cluster.url, autocommit=True)
        self.db = psycopg.connect(cluster.url.rsplit("/", 1)[0] + f"/{DATABASE}", autocommit=True)
        self.postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])

    def one(self, conn: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> int:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row and row[0] is not None else 0

    def connections(self) -> int:
        """sqlq's client backends on its database, less the one this side holds there."""
        return self.one(self.conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                   "AND backend_type = 'client backend'", (DATABASE,)) - 1

    def lock_waiters(self) -> int:
        return self.one(self.conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                   "AND wait_event_type = 'Lock'", (DATABASE,))

    def registered(self) -> int:
        return self.one(self.db, f"SELECT count(*) FROM {SCHEMA}.workers")

    def results(self) -> int:
        return self.one(self.db, f"SELECT count(*) FROM {SCHEMA}.results")

    def reset(self) -> None:
        self.db.execute(f"TRUNCATE {SCHEMA}.jobs, {SCHEMA}.results")
        self.conn.execute("SELECT pg_stat_statements_reset()")

    def claims(self) -> tuple[int, int]:
        """CLAIM's calls and rows since the reset (every claim statement starts ``WITH picked``)."""
        row = self.conn.execute(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0) FROM pg_stat_statements AS s "
            "JOIN pg_database AS d ON d.oid = s.dbid WHERE d.datname = %s AND s.query LIKE 'WITH picked%%'",
            (DATABASE,)).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def span_s(self) -> float:
        row = self.db.execute(f"SELECT extract(epoch FROM max(r.finished_at) - min(r.enqueued_at))::float8 "
                              f"FROM {SCHEMA}.results AS r").fetchone()
        assert row is not None
        return float(row[0])


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench-scaling: {what} not seen after {timeout:.0f}s")
        time.sleep(0.05)


@contextlib.contextmanager
def workers(url: str, count: int, flags: list[str], log_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            with open(log_dir / f"worker-{count}-{i}.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "sqlq", "-A", APP_MODULE, "worker", "-l", "warning",
                     "-n", f"w{i}@bench-scaling", *flags],
                    env=environment(url), cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True))
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def enqueue(url: str, n: int) -> subprocess.Popen[bytes]:
    """A producer process sending n jobs by ``delay_many``, 5,000 a statement."""
    code = ("import sys\nfrom benchmarks.bench_tasks import noop\nn = int(sys.argv[1])\n"
            "for lo in range(0, n, 5000):\n    noop.delay_many(range(lo, min(n, lo + 5000)))\n")
    return subprocess.Popen([sys.executable, "-c", code, str(n)], env=environment(url), cwd=REPO,
                            stdin=subprocess.DEVNULL)


def curve_row(side: Side, url: str, count: int, n: int, flags: list[str], log_dir: Path) -> CurveRow:
    side.reset()
    with workers(url, count, flags, log_dir):
        wait_until(lambda: side.registered() >= count, 120, f"{count} workers registered")
        idle = side.connections()
        producer = enqueue(url, n)
        most, waits, samples = idle, 0, 0
        deadline = time.monotonic() + 300
        while side.results() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench-scaling: {count} workers did not drain {n} jobs in 300s")
            most = max(most, side.connections())
            waits += side.lock_waiters() > 0
            samples += 1
            time.sleep(0.01)
        producer.wait(timeout=60)
        calls, rows = side.claims()
        span = side.span_s()
    side.db.execute(f"DELETE FROM {SCHEMA}.workers")  # the next row counts its own registrations
    return CurveRow(count, n, n / span, idle, most, calls, rows / calls if calls else 0.0, waits, samples)


def process_cpu_us(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/stat").read_text()
            fields = text[text.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
    return total * TICK_US


def idle_cost(side: Side, url: str, count: int, log_dir: Path) -> IdleCost:
    side.reset()
    side.db.execute(f"DELETE FROM {SCHEMA}.workers")
    before = server_cpu_us(side.postmaster)
    time.sleep(10)
    baseline = (server_cpu_us(side.postmaster) - before) / 10e6
    with workers(url, count, ["-P", "solo"], log_dir) as procs:
        wait_until(lambda: side.registered() >= count, 300, f"{count} idle workers registered")
        time.sleep(5)  # past their start-up's first heartbeats and housekeeping
        connections = side.connections()
        pids = [p.pid for p in procs]
        server0, workers0 = server_cpu_us(side.postmaster), process_cpu_us(pids)
        time.sleep(20)
        server = (server_cpu_us(side.postmaster) - server0) / 20e6
        worker_share = (process_cpu_us(pids) - workers0) / 20e6
    side.db.execute(f"DELETE FROM {SCHEMA}.workers")
    return IdleCost(count, connections, server - baseline, baseline, worker_share)


def measure(n: int, flags: list[str], idle: int) -> tuple[list[CurveRow], IdleCost | None]:
    log_dir = Path(tempfile.mkdtemp(prefix="sqlq-scaling-"))
    with stats_cluster(max_connections=max(200, idle * 6 + 50)) as (cluster, url):
        side = Side(cluster)
        enqueue(url, 200).wait(timeout=120)  # warm-up: caches, bytecode
        rows = [curve_row(side, url, count, n, flags, log_dir) for count in (1, 2, 4, 8)]
        cost = idle_cost(side, url, idle, log_dir) if idle else None
        side.conn.close()
        side.db.close()
    return rows, cost


def render(rows: list[CurveRow], cost: IdleCost | None, flags: str) -> str:
    out = [f"sqlq workers on one database (private cluster; each row: that many `sqlq worker {flags}`, "
           f"idle, then {rows[0].jobs if rows else 0} jobs enqueued and drained together):",
           "workers |  jobs/s | vs 1 worker | connections idle / max | claims | jobs/claim | lock waits seen"]
    first = rows[0].per_s if rows else 0.0
    for r in rows:
        out.append(f"{r.workers:>7} | {r.per_s:>7,.0f} | {r.per_s / first:>10.2f}x | "
                   f"{r.connections_idle:>11} / {r.connections_max:<8} | {r.claims:>6} | {r.jobs_per_claim:>10.0f} | "
                   f"{r.lock_wait_samples}/{r.samples} samples")
    if len(rows) > 1:
        last = rows[-1].per_s / first
        out.append(f"  8 workers hold {last:.2f}x the 1-worker figure (target >= 0.9x: "
                   f"{'ok' if last >= 0.9 else 'MISSED'})")
    if cost is not None:
        out.append(f"{cost.workers} idle `sqlq worker -P solo`: {cost.connections} connections "
                   f"({cost.connections / cost.workers:.1f} each); the server {cost.server_core_share:.1%} of a core "
                   f"above its own idle {cost.server_baseline_core_share:.1%} (target < 5 %: "
                   f"{'ok' if cost.server_core_share < 0.05 else 'MISSED'}); the workers together "
                   f"{cost.workers_core_share:.1%} of a core")
    return "\n".join(out)


def main() -> int:
    n = int(os.environ.get("BENCH_SCALING_N") or 20_000)
    flags = os.environ.get("BENCH_SCALING_FLAGS") or DEFAULT_FLAGS
    idle = int(os.environ.get("BENCH_SCALING_IDLE") or 50)
    rows, cost = measure(n, shlex.split(flags), idle)
    print(render(rows, cost, flags))
    out = os.environ.get("BENCH_SCALING_OUT")
    if out:
        Path(out).write_text(json.dumps({"curve": [asdict(r) for r in rows],
                                         "idle": asdict(cost) if cost else None}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
