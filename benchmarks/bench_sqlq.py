"""sqlq's side of ``make bench``: enqueue, bulk enqueue, drain, latency (and the routed variant).

Everything runs in one fresh schema (``bench_<random>``) that the caller creates and drops; worker
processes get it through ``SQLQ_SCHEMA``. Each worker is started as a real ``sqlq worker`` process
in its own process group, bounded in time, and killed (the whole group) when its phase is over.

Timings that span client and server use the database clock only (``enqueued_at``, ``started_at``,
``finished_at`` and ``clock_timestamp()``), so they hold for a remote server too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
APP_MODULE = "benchmarks.bench_tasks"
ROUTED_FILE = REPO / "benchmarks" / "bench_routed.py"


# --------------------------------------------------------------------------- configuration


#: The pseudo-pool of ``sqlq worker`` run with no -P, -c or --prefetch-multiplier: what a user
#: gets without tuning (prefork, a slot per CPU, adaptive prefetch), measured first.
DEFAULT = "default"


@dataclass(frozen=True)
class WorkerConfig:
    pool: str  # solo | threads | prefork | DEFAULT (no pool, concurrency or prefetch flags)
    concurrency: int
    prefetch: int

    @property
    def label(self) -> str:
        if self.pool == DEFAULT:
            return "(no flags: defaults)"
        return f"-P {self.pool} -c {self.concurrency} --prefetch-multiplier {self.prefetch}"

    @property
    def short(self) -> str:
        if self.pool == DEFAULT:
            return DEFAULT
        return f"{self.pool} c={self.concurrency} pf={self.prefetch}"

    @classmethod
    def parse(cls, text: str) -> WorkerConfig:
        """``pool:concurrency:prefetch``, e.g. ``threads:4:64``, or ``default`` (no flags)."""
        if text.strip() == DEFAULT:
            return cls(DEFAULT, os.cpu_count() or 1, 0)
        pool, concurrency, prefetch = text.strip().split(":")
        if pool not in ("solo", "threads", "prefork"):
            raise ValueError(f"unknown pool {pool!r} in {text!r}")
        return cls(pool, 1 if pool == "solo" else int(concurrency), int(prefetch))


# Tried by default for the drain, in this order: the worker without flags first (what a user gets
# untuned: the figure the README quotes first), then the likely best of each pool, so that a run
# short of time (the budget skips the rest) still covers every pool; then other prefetch sizes, and
# last the small prefetch multipliers (slow, they show what batching is worth).
# BENCH_DRAIN_CONFIGS="default,solo:1:256,threads:4:64" overrides.
DEFAULT_DRAIN_CONFIGS = (
    DEFAULT, "solo:1:1000", "threads:4:256", "prefork:2:500",
    "solo:1:256", "threads:2:64", "threads:8:32", "prefork:2:64",
    "solo:1:4", "threads:2:4",
)


@dataclass
class Options:
    url: str
    schema: str
    n: int = 10_000
    latency_jobs: int = 300
    latency_interval_s: float = 0.020
    drain_configs: tuple[WorkerConfig, ...] = ()
    latency_pools: tuple[str, ...] = (DEFAULT, "solo", "threads", "prefork")
    drain_timeout_s: float = 60.0
    budget_s: float = 300.0  # the whole sqlq part; drain configs past it are skipped
    nosync: bool = True  # also measure (a) and the best drain with synchronous_commit=off
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "sqlq-bench")


# --------------------------------------------------------------------------- results


@dataclass
class DrainRun:
    config: str
    pool: str
    concurrency: int
    prefetch: int
    wall_s: float | None = None  # process start -> exit
    drain_per_s: float | None = None  # n / wall_s
    drain_after_startup_per_s: float | None = None  # (n-1) / (last finished_at - first finished_at)
    started_span_per_s: float | None = None  # (n-1) / (last started_at - first started_at)
    startup_s: float | None = None  # process start -> first job claimed (DB clock)
    to_last_outcome_s: float | None = None  # process start -> last outcome recorded (DB clock)
    success: int = 0
    other_states: int = 0
    left_in_jobs: int = 0
    exit_code: int | None = None
    error: str | None = None


@dataclass
class LatencyRun:
    pool: str
    config: str
    jobs: int
    recorded: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    warmup_s: float | None = None  # worker spawned -> its first jobs done (start-up, prefork children too)
    error: str | None = None


@dataclass
class WorkflowRun:
    """(f) One workflow shape: sent (the send's own time) then drained by one burst worker."""

    kind: str  # plain | group | chord
    config: str
    send_s: float | None = None
    total_s: float | None = None  # send start -> worker exit
    per_s: float | None = None  # n / total_s
    drain_after_startup_per_s: float | None = None
    error: str | None = None


@dataclass
class SqlqResults:
    server: dict[str, str] = field(default_factory=dict)
    n: int = 0
    enqueue_one_per_s: float | None = None
    enqueue_one_s: float | None = None
    bulk_per_s: float | None = None
    bulk_s: float | None = None
    bulk_runs_per_s: list[float] = field(default_factory=list)  # every run; bulk_per_s is their median
    bulk_statement_s: float | None = None  # COPY of the same rows encoded beforehand: the server's share
    drains: list[DrainRun] = field(default_factory=list)
    latencies: list[LatencyRun] = field(default_factory=list)
    routed: dict[str, object] = field(default_factory=dict)
    # the same enqueue and best drain with synchronous_commit=off in sqlq's sessions: what the WAL
    # flush at every commit costs on this machine's disk
    nosync_enqueue_one_per_s: float | None = None
    # the machine's own floor for (a): one INSERT of one int per commit, from psycopg, no sqlq
    bare_insert_per_s: float | None = None
    # sqlq's pool check-out against psycopg_pool's (benchmarks/bench_pool.py), one line
    pool_checkout: str | None = None
    nosync_drain: DrainRun | None = None
    # (f) workflows: n plain jobs, a group of n members, a chord of n members, each sent and then
    # drained by one worker process of the same config (kind -> WorkflowRun)
    workflows: dict[str, WorkflowRun] = field(default_factory=dict)
    nosync_pair_on: DrainRun | None = None  # the same config run just before, synchronous_commit=on
    # the "concurrency limit" drain: n jobs of noop_limited (a limit that does not bind) by the best
    # plain config, run back to back with a plain drain of the same config (limit_pair_plain)
    limit_drain: DrainRun | None = None
    limit_pair_plain: DrainRun | None = None
    # the best config drained twice more, back to back: plain noop jobs, then jobs that each carry
    # a distinct unique key (sent through the unique path, the index jobs_unique kept up)
    unique_pair_plain: DrainRun | None = None
    unique_drain: DrainRun | None = None
    # the best drain config again with task events on (-E), right after the same config without
    # them: what the events stream costs a drain (the events_pair_off run is the comparison)
    events_pair_off: DrainRun | None = None
    events_drain: DrainRun | None = None
    events_written: int | None = None  # rows in the events table after the -E drain
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def log(message: str) -> None:
    print(f"[sqlq] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- database helpers


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def server_settings(url: str) -> dict[str, str]:
    with connect(url) as conn:
        names = ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections")
        out = {name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
               for name in names}
        out["version"] = conn.execute("SELECT version()").fetchone()[0]
    return out


def create_schema(url: str, schema: str) -> None:
    with connect(url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def drop_schema(url: str, schema: str) -> None:
    with connect(url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class Db:
    """A side connection for resetting tables and reading results (never the app's pool)."""

    def __init__(self, url: str, schema: str):
        self.conn = connect(url)
        self.schema = schema

    def t(self, name: str) -> sql.Composable:
        return sql.Identifier(self.schema, name)

    def reset(self) -> None:
        """Empty tables (fresh files, so no dead rows from the previous phase slow the next)."""
        self.conn.execute(sql.SQL("TRUNCATE {}, {}, {}, {}, {}, {}").format(
            self.t("jobs"), self.t("results"), self.t("workers"), self.t("groups"), self.t("chords"),
            self.t("events")))

    def events_count(self) -> int:
        return self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.t("events"))).fetchone()[0]

    def clear_results(self) -> None:
        self.conn.execute(sql.SQL("DELETE FROM {}").format(self.t("results")))

    def analyze(self) -> None:
        self.conn.execute(sql.SQL("ANALYZE {}").format(self.t("jobs")))

    def clock(self) -> float:
        return self.conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()[0]

    def jobs_count(self) -> int:
        return self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.t("jobs"))).fetchone()[0]

    def keyed_jobs_count(self) -> int:
        return self.conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE unique_hash IS NOT NULL").format(
            self.t("jobs"))).fetchone()[0]

    def results_count(self) -> int:
        return self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.t("results"))).fetchone()[0]

    def drain_stats(self) -> tuple:
        return self.conn.execute(sql.SQL("""
            SELECT count(*) FILTER (WHERE state = 'SUCCESS'), count(*) FILTER (WHERE state <> 'SUCCESS'),
                   extract(epoch FROM min(started_at))::float8, extract(epoch FROM max(started_at))::float8,
                   extract(epoch FROM min(finished_at))::float8, extract(epoch FROM max(finished_at))::float8
            FROM {}""").format(self.t("results"))).fetchone()

    def latency_stats(self) -> tuple:
        return self.conn.execute(sql.SQL("""
            WITH l AS (SELECT extract(epoch FROM started_at - enqueued_at)::float8 * 1000 AS ms
                       FROM {} WHERE state = 'SUCCESS')
            SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms),
                   max(ms), avg(ms)
            FROM l""").format(self.t("results"))).fetchone()

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- worker processes


NOSYNC_ENV = {"PGOPTIONS": "-c synchronous_commit=off"}  # libpq: for every session the process opens


def subprocess_env(opts: Options, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("SQLQ_POOL", "SQLQ_CONCURRENCY", "SQLQ_PREFETCH_MULTIPLIER", "SQLQ_BURST", "SQLQ_QUEUES",
                "SQLQ_APP", "SQLQ_WORKER_POOL", "SQLQ_WORKER_CONCURRENCY", "SQLQ_WORKER_PREFETCH_MULTIPLIER",
                "SQLQ_DEFAULT_QUEUE"):
        env.pop(key, None)  # the worker's options are exactly the ones on its command line
    env["SQLQ_DATABASE_URL"] = opts.url
    env["SQLQ_SCHEMA"] = opts.schema
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # Bytecode cache in the run's temp dir, as an installed sqlq has .pyc files: without it, where
    # PYTHONDONTWRITEBYTECODE is set, every worker start compiles sqlq from source again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(opts.log_dir / "pycache")
    env.update(extra or {})
    return env


def warm_bytecode_cache(opts: Options) -> None:
    """Import what a worker (and a prefork child) imports once, so every measured start finds .pyc."""
    code = "import sqlq.cli, sqlq.worker.worker, sqlq.worker.prefork, sqlq.worker.child, benchmarks.bench_tasks"
    for cmd in ([sys.executable, "-c", code], [sys.executable, "-m", "sqlq", "--version"]):
        with contextlib.suppress(subprocess.TimeoutExpired):  # only a warm-up: the drains will tell
            subprocess.run(cmd, env=subprocess_env(opts), cwd=REPO, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=120, check=False)


def worker_command(config: WorkerConfig, burst: bool, extra_args: tuple[str, ...] = ()) -> list[str]:
    # -l warning: no log line per job (sqlq logs each success at info, as Celery does; the Celery
    # peers run at WARNING too)
    cmd = [sys.executable, "-m", "sqlq", "-A", APP_MODULE, "worker", "-l", "warning"]
    if config.pool != DEFAULT:  # (the environment carries none either: subprocess_env)
        cmd += ["-P", config.pool, "-c", str(config.concurrency), "--prefetch-multiplier", str(config.prefetch)]
    return cmd + (["--burst"] if burst else []) + list(extra_args)


def kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the worker's process group (children too), SIGKILL what is left after ``grace``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers (prefork children) of an exited leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def worker_process(opts: Options, config: WorkerConfig, burst: bool, log_path: Path,
                   extra_env: dict[str, str] | None = None,
                   extra_args: tuple[str, ...] = ()) -> Iterator[subprocess.Popen]:
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(worker_command(config, burst, extra_args), env=subprocess_env(opts, extra_env), cwd=REPO,
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        kill_group(proc)


def wait_exit(proc: subprocess.Popen, timeout: float) -> int | None:
    """The exit code the moment ``proc`` exits; None if it ran past ``timeout`` (then it is killed).

    Not ``Popen.wait(timeout=)``: that polls, every 50 ms once it has waited 0.1 s, which added up
    to 0.05 s (10 %) to a drain of half a second. A blocking wait returns at the exit itself."""
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        kill_group(proc)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        code = proc.wait()
    finally:
        timer.cancel()
    return None if expired.is_set() else code


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- phases


def measure_enqueue(app, task, db: Db, opts: Options, res: SqlqResults) -> None:
    """(a) n x ``delay()``: one statement (one round trip) each, on the app's pooled connection."""
    db.reset()
    for i in range(50):  # warm-up: pooled connection opened, statement prepared server-side
        task.delay(-i)
    db.reset()
    n = opts.n
    start = time.perf_counter()
    for i in range(n):
        task.delay(i)
    elapsed = time.perf_counter() - start
    res.enqueue_one_s, res.enqueue_one_per_s = elapsed, n / elapsed
    count = db.jobs_count()
    if count != n:
        res.notes.append(f"enqueue: expected {n} jobs in the table, found {count}")
    log(f"(a) delay() x {n}: {elapsed:.2f}s = {n / elapsed:,.0f} jobs/s")


def measure_bulk(app, task, db: Db, opts: Options, res: SqlqResults, repeats: int = 5) -> None:
    """(b) one ``delay_many`` of n calls, ``repeats`` times on an empty table; the median counts
    (one run takes ~0.1 s, so a single one is at the mercy of a scheduler hiccup). Then, apart, the
    server's share: the same rows, encoded beforehand, through the same COPY."""
    n = opts.n
    db.reset()
    task.delay_many(range(-10, 0))  # warm-up
    times = []
    for _ in range(repeats):
        db.reset()
        start = time.perf_counter()
        task.delay_many(range(n))
        times.append(time.perf_counter() - start)
        count = db.jobs_count()
        if count != n:
            res.notes.append(f"bulk: expected {n} jobs in the table, found {count}")
    elapsed = statistics.median(times)
    res.bulk_s, res.bulk_per_s = elapsed, n / elapsed
    res.bulk_runs_per_s = [n / t for t in times]
    # the server's share: COPY of rows encoded beforehand (not part of the headline number)
    from sqlq.enqueue import new_job_ids

    first = task.build_job((0,), {})
    lean = first.copies_lean()  # the columns delay_many sends for this task
    rows = [(job_id, first.task, first.queue, "available", f"[{i}]", "{}") if lean else
            (job_id, first.task, first.queue, first.priority, "available", f"[{i}]", "{}", None,
             first.content_type, first.headers, first.acks_late, None, None, None)
            for i, job_id in enumerate(new_job_ids(n))]
    copies = []
    for _ in range(3):
        db.reset()
        start = time.perf_counter()
        with app.connection() as conn:
            app.store.copy_jobs(conn, rows, [first.queue], lean=lean)
        copies.append(time.perf_counter() - start)
    res.bulk_statement_s = statistics.median(copies)
    db.reset()
    log(f"(b) delay_many({n}): median {elapsed:.3f}s = {n / elapsed:,.0f} jobs/s "
        f"(runs: {', '.join(f'{r:,.0f}' for r in res.bulk_runs_per_s)}); "
        f"COPY of pre-encoded rows alone: {res.bulk_statement_s:.3f}s")


def seed(task, db: Db, n: int) -> None:
    db.reset()
    chunk = 5_000
    for lo in range(0, n, chunk):
        task.delay_many(range(lo, min(n, lo + chunk)))
    db.analyze()


def measure_drain(task, db: Db, opts: Options, config: WorkerConfig, timeout: float,
                  extra_env: dict[str, str] | None = None, label: str | None = None,
                  extra_args: tuple[str, ...] = ()) -> DrainRun:
    """(c) n queued jobs, one ``sqlq worker --burst`` process: start -> exit, and from the DB.
    ``label`` names a variant in the log file and line (the task's own seeding decides the rest);
    by default a run with ``extra_env`` is the synchronous_commit=off one. ``extra_args``: more
    worker options (``-E``: the drain with task events on)."""
    n = opts.n
    run = DrainRun(config=config.label, pool=config.pool, concurrency=config.concurrency,
                   prefetch=config.prefetch)
    seed(task, db, n)  # (a task with unique_on: delay_many writes each job through the unique path)
    if getattr(task, "unique_on", None) is not None and (keyed := db.keyed_jobs_count()) != n:
        run.error = f"seeding wrote {keyed} keyed jobs, not {n}"
        return run
    label = label if label is not None else ("synchronous_commit=off" if extra_env else "")
    log_path = opts.log_dir / (f"drain-{config.pool}-{config.concurrency}-{config.prefetch}"
                               f"{'-' + label.replace(' ', '-') if label else ''}"
                               f"{'-E' if extra_args else ''}.log")
    db_t0 = db.clock()
    t0 = time.perf_counter()
    with worker_process(opts, config, burst=True, log_path=log_path, extra_env=extra_env,
                        extra_args=extra_args) as proc:
        run.exit_code = wait_exit(proc, timeout)
        run.wall_s = time.perf_counter() - t0
        if run.exit_code is None:
            run.error = f"timeout: not done after {timeout:.0f}s (killed)"
    success, other, first_start, last_start, first_fin, last_fin = db.drain_stats()
    run.success, run.other_states, run.left_in_jobs = success, other, db.jobs_count()
    if run.exit_code not in (None, 0):
        run.error = f"worker exited {run.exit_code}: {tail(log_path)}"
    if first_start is not None:
        run.startup_s = first_start - db_t0
        run.to_last_outcome_s = last_fin - db_t0
    if success == n and run.error is None:
        run.drain_per_s = n / run.wall_s
        if last_fin > first_fin:
            run.drain_after_startup_per_s = (n - 1) / (last_fin - first_fin)
        if last_start > first_start:
            run.started_span_per_s = (n - 1) / (last_start - first_start)
    elif run.error is None:
        run.error = f"only {success}/{n} SUCCESS recorded ({other} other, {run.left_in_jobs} left in jobs)"
    if extra_args:
        run.config += " " + " ".join(extra_args)
    log(f"(c) drain {config.label}{f' [{label}]' if label else ''}"
        f"{' ' + ' '.join(extra_args) if extra_args else ''}: " + (
        f"{run.wall_s:.2f}s = {run.drain_per_s:,.0f} jobs/s start-to-exit, "
        f"{run.drain_after_startup_per_s or 0:,.0f} jobs/s after start-up "
        f"(first job claimed {run.startup_s:.2f}s after spawn); SUCCESS {success}/{n}"
        if run.error is None else f"FAILED: {run.error}"))
    return run


def measure_concurrency_limit(db: Db, opts: Options, config: WorkerConfig, res: SqlqResults) -> None:
    """(c') The "concurrency limit" drain: n jobs of a task whose concurrency limit does not bind
    (``bench_tasks.BENCH_CONCURRENCY_LIMIT``), so the worker claims through CONCURRENCY_LOCK +
    CLAIM_CONCURRENCY_LIMITED and CLAIM_UNLIMITED instead of CLAIM; a plain drain of the same config
    runs just before it, so both see the same machine."""
    from benchmarks import bench_tasks

    res.limit_pair_plain = measure_drain(bench_tasks.noop, db, opts, config, timeout=opts.drain_timeout_s)
    res.limit_drain = measure_drain(bench_tasks.noop_limited, db, opts, config, timeout=opts.drain_timeout_s,
                                    extra_env={bench_tasks.LIMITED_ENV: "1"}, label="concurrency limit")
    plain, limited = res.limit_pair_plain.drain_per_s, res.limit_drain.drain_per_s
    if plain and limited:
        log(f"(c') concurrency limit {bench_tasks.BENCH_CONCURRENCY_LIMIT} (not binding), {config.label}: "
            f"{limited:,.0f} jobs/s vs {plain:,.0f} plain ({limited / plain - 1:+.1%})")


def wait_for_results(db: Db, count: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if db.results_count() >= count:
            return True
        time.sleep(0.02)
    return False


def measure_latency(task, db: Db, opts: Options, config: WorkerConfig) -> LatencyRun:
    """(d) jobs sent ``interval`` apart to an idle, already running worker: started_at - enqueued_at."""
    run = LatencyRun(pool=config.pool, config=config.label, jobs=opts.latency_jobs)
    db.reset()
    log_path = opts.log_dir / f"latency-{config.pool}.log"
    spawned = time.monotonic()
    with worker_process(opts, config, burst=False, log_path=log_path) as proc:
        # Up means able to run jobs, which is later than "ready" is logged (prefork children are
        # still importing the app then): a few jobs go through it first, then it is left idle.
        warm = 4 * config.concurrency
        task.delay_many(range(-warm, 0))
        if not wait_for_results(db, warm, proc, timeout=60):
            run.error = f"warm-up jobs not done 60s after start: {tail(log_path)}"
            return run
        run.warmup_s = time.monotonic() - spawned
        time.sleep(1.0)  # idle: the worker is waiting on LISTEN, nothing prefetched
        db.clear_results()
        start = time.monotonic()
        for k in range(opts.latency_jobs):
            delay = start + k * opts.latency_interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            task.delay(k)
        wait_for_results(db, opts.latency_jobs, proc, timeout=20)
        if proc.poll() is not None:
            run.error = f"worker exited {proc.returncode}: {tail(log_path)}"
    count, cuts, max_ms, mean_ms = db.latency_stats()
    run.recorded = count
    if count and cuts:
        run.p50_ms, run.p95_ms, run.p99_ms = cuts
        run.max_ms, run.mean_ms = max_ms, mean_ms
    if count < opts.latency_jobs and run.error is None:
        run.error = f"only {count}/{opts.latency_jobs} jobs recorded within 20s of the last send"
    if run.p50_ms is not None:
        log(f"(d) latency {config.label}: p50 {run.p50_ms:.2f} ms, p95 {run.p95_ms:.2f} ms, "
            f"p99 {run.p99_ms:.2f} ms, max {run.max_ms:.2f} ms ({count}/{opts.latency_jobs} jobs)")
    if run.error:
        log(f"(d) latency {config.label}: {run.error}")
    return run


NOSYNC_ENQUEUE_SNIPPET = """
import sys, time
from benchmarks.bench_tasks import app, noop
n = int(sys.argv[1])
for i in range(50):
    noop.delay(-i)
start = time.perf_counter()
for i in range(n):
    noop.delay(i)
print(n / (time.perf_counter() - start))
app.close()
"""


def measure_bare_insert(db: Db, res: SqlqResults, n: int = 3000) -> None:
    """(a) without sqlq: one INSERT of one int per commit into a one-column table, from psycopg.
    What one round trip plus a WAL flush costs on this machine right now: the ceiling of any
    durable one-by-one enqueue (the issue's targets assumed ~5,800/s)."""
    table = db.t("bare_insert")
    db.conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(table))
    try:
        statement = sql.SQL("INSERT INTO {} VALUES (%s)").format(table)
        for i in range(50):
            db.conn.execute(statement, (i,), prepare=True)
        start = time.perf_counter()
        for i in range(n):
            db.conn.execute(statement, (i,), prepare=True)
        res.bare_insert_per_s = n / (time.perf_counter() - start)
    finally:
        db.conn.execute(sql.SQL("DROP TABLE {}").format(table))
    log(f"(a0) bare PostgreSQL, one INSERT per commit: {res.bare_insert_per_s:,.0f}/s")


def measure_pool_checkout(url: str, res: SqlqResults) -> None:
    """(a1) what a check-out of sqlq's pool costs, beside psycopg_pool's (benchmarks/bench_pool.py;
    about a second). Skipped when psycopg_pool is not installed."""
    try:
        import psycopg_pool  # noqa: F401
    except ImportError:
        res.notes.append("pool check-out: psycopg_pool not installed (pip install psycopg-pool), not compared")
        return
    from benchmarks import bench_pool

    res.pool_checkout = bench_pool.checkout_line(bench_pool.checkout_figures(url))
    log(f"(a1) {res.pool_checkout}")


def measure_enqueue_nosync(db: Db, opts: Options, timeout: float) -> float | None:
    """(a) again in a subprocess whose sessions run with synchronous_commit=off (PGOPTIONS)."""
    db.reset()
    try:
        done = subprocess.run([sys.executable, "-c", NOSYNC_ENQUEUE_SNIPPET, str(opts.n)],
                              env=subprocess_env(opts, NOSYNC_ENV), cwd=REPO, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        log(f"(a') enqueue with synchronous_commit=off: timeout after {timeout:.0f}s")
        return None
    finally:
        db.reset()
    if done.returncode != 0:
        log(f"(a') enqueue with synchronous_commit=off failed: {done.stderr.strip()[-300:]}")
        return None
    rate = float(done.stdout.strip().splitlines()[-1])
    log(f"(a') delay() x {opts.n} with synchronous_commit=off: {rate:,.0f} jobs/s")
    return rate


ROUTED_SNIPPET = """
import json, sys, time
from benchmarks.bench_tasks import app
import benchmarks.bench_routed as m
value = m.bench_routed_enqueue(app, int(sys.argv[1]))
doc = (m.__doc__ or m.bench_routed_enqueue.__doc__ or '').strip().splitlines()
print(json.dumps({"value": value, "doc": doc[0] if doc else ""}))
app.close()
"""


def measure_routed(db: Db, opts: Options, timeout: float) -> dict[str, object]:
    """(e) another engineer's ``benchmarks/bench_routed.py``: ``bench_routed_enqueue(app, n) -> float``.

    Run in a subprocess so that whatever it does is bounded in time and cannot break this run.
    """
    if not ROUTED_FILE.exists() or importlib.util.find_spec("benchmarks.bench_routed") is None:
        log("(e) routed: not available yet")
        return {"status": "not available yet"}
    db.reset()
    log_path = opts.log_dir / "routed.log"
    try:
        done = subprocess.run([sys.executable, "-c", ROUTED_SNIPPET, str(opts.n)], env=subprocess_env(opts),
                              cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f}s"}
    finally:
        db.reset()
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        log(f"(e) routed: error: {last}")
        return {"status": f"error: {last}"}
    try:
        out = json.loads(done.stdout.strip().splitlines()[-1])
        value = float(out["value"])
    except (ValueError, KeyError, IndexError, TypeError):
        return {"status": f"unexpected output: {done.stdout.strip()[-200:]!r}"}
    log(f"(e) routed: bench_routed_enqueue(app, {opts.n}) = {value:,.1f}")
    return {"status": "ok", "value": value, "doc": out.get("doc", "")}


# --------------------------------------------------------------------------- workflows

WORKFLOW_CONFIG = WorkerConfig("threads", 4, 256)


def measure_workflow(kind: str, db: Db, opts: Options, config: WorkerConfig, timeout: float) -> WorkflowRun:
    """(f) n noop jobs sent as ``kind`` (plain ``delay_many``, ``group``, ``chord`` with a counting
    body), then one ``sqlq worker --burst``: jobs/s = n / (send start -> worker exit). The chord's
    count includes its body, which the last member's finish enqueues."""
    from benchmarks import bench_tasks
    from sqlq import chord, group

    n, task = opts.n, bench_tasks.noop
    run = WorkflowRun(kind=kind, config=config.label)
    db.reset()
    t0 = time.perf_counter()
    if kind == "plain":
        task.delay_many(range(n))
    elif kind == "group":
        group(task.s(i) for i in range(n)).apply_async()
    else:
        chord((task.s(i) for i in range(n)), bench_tasks.count.s()).apply_async()
    run.send_s = time.perf_counter() - t0
    log_path = opts.log_dir / f"workflow-{kind}.log"
    with worker_process(opts, config, burst=True, log_path=log_path) as proc:
        code = wait_exit(proc, timeout)
        run.total_s = time.perf_counter() - t0
    success, other, _, _, first_fin, last_fin = db.drain_stats()
    want = n + (1 if kind == "chord" else 0)
    if code != 0:
        run.error = f"worker exited {code}: {tail(log_path)}" if code is not None else f"timeout after {timeout:.0f}s"
    elif success != want:
        run.error = f"only {success}/{want} SUCCESS recorded ({other} other)"
    else:
        run.per_s = n / run.total_s
        if last_fin > first_fin:
            run.drain_after_startup_per_s = (want - 1) / (last_fin - first_fin)
    log(f"(f) {kind} of {n}: " + (f"sent in {run.send_s:.3f}s, {run.total_s:.2f}s send-to-exit = {run.per_s:,.0f} "
                                  f"jobs/s ({run.drain_after_startup_per_s or 0:,.0f} after start-up)"
                                  if run.error is None else f"FAILED: {run.error}"))
    return run


def measure_workflows(db: Db, opts: Options, res: SqlqResults, budget: float) -> None:
    started = time.monotonic()
    for kind in ("plain", "group", "chord"):
        left = budget - (time.monotonic() - started)
        if left < 10:
            res.notes.append(f"workflows: {kind} skipped (time budget)")
            continue
        res.workflows[kind] = measure_workflow(kind, db, opts, WORKFLOW_CONFIG, timeout=min(opts.drain_timeout_s, left))


# --------------------------------------------------------------------------- the whole sqlq part


def best_by_pool(drains: list[DrainRun]) -> dict[str, DrainRun]:
    best: dict[str, DrainRun] = {}
    for run in drains:
        if run.drain_per_s is None:
            continue
        if run.pool not in best or run.drain_per_s > best[run.pool].drain_per_s:
            best[run.pool] = run
    return best


def run_all(opts: Options) -> SqlqResults:
    """All sqlq phases in ``opts.schema`` (already created by the caller, who also drops it)."""
    started = time.monotonic()
    res = SqlqResults(n=opts.n)
    res.server = server_settings(opts.url)
    os.environ["SQLQ_DATABASE_URL"] = opts.url
    os.environ["SQLQ_SCHEMA"] = opts.schema
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks import bench_tasks

    app, task = bench_tasks.app, bench_tasks.noop
    app.set_database_url(opts.url)
    app.conf.schema = opts.schema
    app.migrate()
    db = Db(opts.url, opts.schema)
    try:
        warm_bytecode_cache(opts)
        measure_enqueue(app, task, db, opts, res)
        measure_bare_insert(db, res)  # right after (a), so that both see the same machine
        measure_pool_checkout(opts.url, res)
        if opts.nosync:  # (a) again right away, so that both see the same machine
            res.nosync_enqueue_one_per_s = measure_enqueue_nosync(
                db, opts, timeout=min(120.0, 20 + 2 * (res.enqueue_one_s or 30)))
        measure_bulk(app, task, db, opts, res)
        # (c) every drain config gets its own fresh queue of n jobs; stop trying configs at the budget,
        # keeping time for what comes after (latency ~10 s per pool, routed ~ as long as (a))
        reserve = len(opts.latency_pools) * (opts.latency_jobs * opts.latency_interval_s + 8)
        if ROUTED_FILE.exists():
            reserve += 1.2 * (res.enqueue_one_s or 0) + 5
        if opts.nosync:  # two more drains
            reserve += 15
        reserve += 15  # the concurrency-limit pair (measure_concurrency_limit)
        reserve += 20  # the unique-keys pair: two more drains, one of them seeded job by job
        reserve += 15  # the events pair (two more drains)
        for config in opts.drain_configs:
            left = opts.budget_s - (time.monotonic() - started) - reserve
            if left < 10:
                res.notes.append(f"drain: {config.label} skipped (time budget)")
                log(f"(c) drain {config.label}: skipped, time budget spent")
                continue
            res.drains.append(measure_drain(task, db, opts, config, timeout=min(opts.drain_timeout_s, left)))
        best = best_by_pool(res.drains)
        overall = max(best.values(), key=lambda r: r.drain_per_s, default=None)
        if opts.nosync and overall is not None:
            # the best config twice more, back to back: synchronous_commit=on, then off
            config = WorkerConfig(overall.pool, overall.concurrency, overall.prefetch)
            res.nosync_pair_on = measure_drain(task, db, opts, config, timeout=opts.drain_timeout_s)
            res.nosync_drain = measure_drain(task, db, opts, config, timeout=opts.drain_timeout_s,
                                             extra_env=NOSYNC_ENV)
        if overall is not None:
            # unique keys: the best config again on plain jobs, then on jobs with a key each, back to back
            config = WorkerConfig(overall.pool, overall.concurrency, overall.prefetch)
            res.unique_pair_plain = measure_drain(task, db, opts, config, timeout=opts.drain_timeout_s)
            res.unique_drain = measure_drain(bench_tasks.noop_keyed, db, opts, config,
                                             timeout=opts.drain_timeout_s, label="unique keys")
            measure_concurrency_limit(db, opts, config, res)
            # the plain drain's config once more, then with -E, back to back: the events' cost
            res.events_pair_off = measure_drain(task, db, opts, config, timeout=opts.drain_timeout_s)
            res.events_drain = measure_drain(task, db, opts, config, timeout=opts.drain_timeout_s, extra_args=("-E",))
            res.events_written = db.events_count()
            off, on = res.events_pair_off.drain_per_s, res.events_drain.drain_per_s
            if off and on:
                log(f"(c) events on (-E): {on:,.0f} jobs/s against {off:,.0f} without ({on / off - 1:+.1%}), "
                    f"{res.events_written:,} events written")
        for pool in opts.latency_pools:
            config = best.get(pool)
            if pool == DEFAULT:
                config_obj = WorkerConfig.parse(DEFAULT)
            elif config is None:
                config_obj = WorkerConfig(pool, 1 if pool == "solo" else 2, 4)
            else:
                config_obj = WorkerConfig(config.pool, config.concurrency, config.prefetch)
            res.latencies.append(measure_latency(task, db, opts, config_obj))
        # one delay() per job like (a): allow a few times what (a) took
        res.routed = measure_routed(db, opts, timeout=min(180.0, 30 + 3 * (res.enqueue_one_s or 30)))
        measure_workflows(db, opts, res, budget=max(30.0, opts.budget_s - (time.monotonic() - started)))
    finally:
        db.close()
        app.close()
    return res
