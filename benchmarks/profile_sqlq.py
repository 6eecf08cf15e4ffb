"""Where the time goes: profiles behind the numbers of ``make bench`` (not run by it).

    .venv/bin/python benchmarks/profile_sqlq.py explain [--batch 256]   # EXPLAIN ANALYZE of the hot statements
    .venv/bin/python benchmarks/profile_sqlq.py delay [--n 3000]        # delay(): client CPU, cProfile, commit cost
    .venv/bin/python benchmarks/profile_sqlq.py bulk [--n 10000]        # delay_many: build / encode / server
    .venv/bin/python benchmarks/profile_sqlq.py worker -P solo -c 1 --prefetch-multiplier 256 [--n 10000]
                                                                        # one burst drain under cProfile (main
                                                                        # thread) or py-spy (all threads)

Each command works in its own fresh schema (dropped at the end) on ``SQLQ_DATABASE_URL`` or the local
server, like ``make bench``. ``worker --py-spy PATH`` samples every thread of the worker with py-spy
(``pip install py-spy`` anywhere; pass the path of its executable).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_sqlq  # noqa: E402
from sqlq.store import JobSpec  # noqa: E402

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def bench_app() -> Iterator[tuple]:
    url = os.environ.get("SQLQ_DATABASE_URL") or LOCAL_URL
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    os.environ["SQLQ_DATABASE_URL"], os.environ["SQLQ_SCHEMA"] = url, schema
    bench_sqlq.create_schema(url, schema)
    from benchmarks import bench_tasks

    app = bench_tasks.app
    app.set_database_url(url)
    try:
        app.migrate()
        db = bench_sqlq.Db(url, schema)
        try:
            yield url, schema, app, bench_tasks.noop, db
        finally:
            db.close()
    finally:
        app.close()
        bench_sqlq.drop_schema(url, schema)


def explain(conn, statement: str, params: dict) -> str:
    """EXPLAIN (ANALYZE, BUFFERS, WAL) inside a transaction that is rolled back."""
    conn.execute("BEGIN")
    try:
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, WAL) " + statement, params).fetchall()
    finally:
        conn.execute("ROLLBACK")
    return "\n".join(r[0] for r in rows)


def summary(plan: str) -> str:
    keep = [line for line in plan.splitlines() if re.search(r"Execution Time|Planning Time|^\s*WAL:", line)]
    return "\n".join(keep[:1] + keep[-2:])


def outcome_params(worker_id: str, jobs: list) -> dict:
    n = len(jobs)
    return {"worker_id": worker_id, "ids": [j.id for j in jobs], "attempts": [j.attempt for j in jobs],
            "states": ["SUCCESS"] * n, "results": ["null"] * n, "result_payloads": [None] * n,
            "result_content_types": ["application/json"] * n, "exc_types": [None] * n,
            "exc_messages": [None] * n, "tracebacks": [None] * n}


def cmd_explain(args: argparse.Namespace) -> None:
    import psycopg

    with bench_app() as (url, schema, app, task, db):
        store = app.store
        bench_sqlq.seed(task, db, args.n)
        worker_id = str(uuid.uuid4())
        with psycopg.connect(url, autocommit=True) as conn:
            # CLAIM only hands jobs to a registered worker
            store.register_worker(conn, id=worker_id, hostname="profile", pid=os.getpid(), queues=["default"],
                                  concurrency=1, pool="solo")
            spec = task.build_job((1,), {})
            print("=== ENQUEUE (one delay())\n" + explain(conn, store.sql["ENQUEUE"], spec.params()))
            specs = [task.build_job((i,), {}) for i in range(args.batch)]
            plan = explain(conn, store.sql["ENQUEUE_MANY"], JobSpec.batch_params(specs))
            print(f"\n=== ENQUEUE_MANY ({args.batch} jobs)\n{plan}")
            params = {"worker_id": worker_id, "queue": "default", "limit": args.batch}
            print(f"\n=== CLAIM (limit {args.batch}, {args.n} jobs queued)\n"
                  + explain(conn, store.sql["CLAIM"], params))
            jobs = store.claim(conn, worker_id, "default", args.batch)
            print(f"\n=== FINISH ({len(jobs)} outcomes)\n"
                  + explain(conn, store.sql["FINISH"], outcome_params(worker_id, jobs)))


def timed_loop(fn, n: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) for n calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return time.perf_counter() - wall, time.process_time() - cpu


def cmd_delay(args: argparse.Namespace) -> None:
    n = args.n
    with bench_app() as (url, schema, app, task, db):
        for i in range(50):
            task.delay(-i)
        build_wall, build_cpu = timed_loop(lambda i: task.build_job((i,), {}), n)
        wall, cpu = timed_loop(task.delay, n)
        with app.connection() as conn:  # the pool's (only) connection: same session for the next loop
            conn.execute("SET synchronous_commit = off")
        nosync_wall, nosync_cpu = timed_loop(task.delay, n)
        with app.connection() as conn:
            conn.execute("RESET synchronous_commit")
            select_wall, _ = timed_loop(lambda i: conn.execute("SELECT 1"), n)
            spec = task.build_job((1,), {})
            plan = explain(conn, app.store.sql["ENQUEUE"], spec.params())
        print(f"delay() x {n}, per call:")
        print(f"  wall {wall / n * 1e6:7.0f} us   client CPU {cpu / n * 1e6:5.0f} us   "
              f"(synchronous_commit=on)")
        print(f"  wall {nosync_wall / n * 1e6:7.0f} us   client CPU {nosync_cpu / n * 1e6:5.0f} us   "
              f"(synchronous_commit=off: no WAL flush wait)")
        print(f"  build_job alone: {build_cpu / n * 1e6:.0f} us CPU;  'SELECT 1' round trip: "
              f"{select_wall / n * 1e6:.0f} us wall")
        print("  server, one ENQUEUE: " + summary(plan).replace("\n", "; "))
        profile = cProfile.Profile()
        profile.enable()
        for i in range(n):
            task.delay(i)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())


def cmd_bulk(args: argparse.Namespace) -> None:
    from psycopg import adapt
    from psycopg._queries import PostgresQuery

    n = args.n
    with bench_app() as (url, schema, app, task, db):
        store = app.store
        task.delay_many(range(10))
        db.reset()
        t0 = time.perf_counter()
        specs = [task.build_job((i,), {}) for i in range(n)]
        t1 = time.perf_counter()
        params = JobSpec.batch_params(specs)
        t2 = time.perf_counter()
        with app.connection() as conn:
            query = PostgresQuery(adapt.Transformer(conn))
            query.convert(store.sql["ENQUEUE_MANY"], params)
            t3 = time.perf_counter()
            conn.execute(store.sql["ENQUEUE_MANY"], params)
            t4 = time.perf_counter()
            db.reset()
            plan = explain(conn, store.sql["ENQUEUE_MANY"], params)
        print(f"delay_many of {n}: build_job {(t1 - t0) * 1e3:.0f} ms ({(t1 - t0) / n * 1e6:.1f} us/job), "
              f"batch_params {(t2 - t1) * 1e3:.0f} ms, psycopg parameter encoding {(t3 - t2) * 1e3:.0f} ms "
              f"({(t3 - t2) / n * 1e6:.1f} us/job), statement round trip {(t4 - t3) * 1e3:.0f} ms "
              f"(includes encoding again)")
        print(plan)
        profile = cProfile.Profile()
        db.reset()
        profile.enable()
        task.delay_many(range(n))
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue())


def collapse(path: Path, top: int = 40) -> str:
    """Summarise py-spy's raw (collapsed) output: start-up (imports) apart, then the run by thread,
    by function (self) and by function including callees, as shares of the run's samples."""
    self_c, incl, threads = Counter(), Counter(), Counter()
    total = imports = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        count = int(count)
        frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
        total += count
        if any("importlib._bootstrap" in f for f in frames):
            imports += count
            continue
        thread = next((f for f in frames if re.match(r"(Worker\.|ThreadPool\._work|Listener\._run|"
                                                   r"PreforkPool\._supervise|main \(sqlq/worker/child)", f)),
                      frames[1] if len(frames) > 1 else "?")
        threads[thread] += count
        self_c[frames[-1]] += count
        for frame in set(frames[1:]):
            incl[frame] += count
    run = max(1, total - imports)
    lines = [f"{total} samples; imports (start-up) {imports / max(1, total):.1%}; the rest ({run}) is 100% below"]
    lines += ["-- by thread entry point"] + [f"{c / run:6.1%} {f[:140]}" for f, c in threads.most_common(10)]
    lines += ["-- self"] + [f"{c / run:6.1%} {f[:140]}" for f, c in self_c.most_common(top // 2)]
    lines += ["-- inclusive"] + [f"{c / run:6.1%} {f[:140]}" for f, c in incl.most_common(top)]
    return "\n".join(lines)


def cmd_worker(args: argparse.Namespace) -> None:
    with bench_app() as (url, schema, app, task, db):
        bench_sqlq.seed(task, db, args.n)
        cache = Path(tempfile.gettempdir()) / "sqlq-profile"  # .pyc cache kept between profiles
        env = bench_sqlq.subprocess_env(bench_sqlq.Options(url=url, schema=schema, log_dir=cache))
        worker = ["-m", "sqlq", "-A", bench_sqlq.APP_MODULE, "worker", "-l", "warning", "-P", args.pool,
                  "-c", str(args.concurrency), "--prefetch-multiplier", str(args.prefetch), "--burst"]
        out = Path(f"/tmp/sqlq-profile-{args.pool}-{os.getpid()}")
        if args.py_spy:
            cmd = [args.py_spy, "record", "-r", "250", "-f", "raw", "-o", str(out), "--subprocesses", "--",
                   sys.executable, *worker]
        else:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(out), *worker]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=REPO, timeout=args.timeout, check=False, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        success, other, first_start, last_start, first_fin, last_fin = db.drain_stats()
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"drain of {args.n}: {wall:.2f}s wall, SUCCESS {success}; after start-up "
              f"{(args.n - 1) / (last_fin - first_fin):,.0f} jobs/s; worker CPU (user+sys, with children) "
              f"{cpu:.2f}s = {cpu / args.n * 1e6:.0f} us/job (profiler overhead included)")
        if args.py_spy:
            print(collapse(out))
        else:
            stream = io.StringIO()
            stats = pstats.Stats(str(out), stream=stream)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumtime").print_stats(45)
            print(stream.getvalue())
        out.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("explain")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n", type=int, default=10_000)
    p.set_defaults(fn=cmd_explain)
    p = sub.add_parser("delay")
    p.add_argument("--n", type=int, default=3_000)
    p.set_defaults(fn=cmd_delay)
    p = sub.add_parser("bulk")
    p.add_argument("--n", type=int, default=10_000)
    p.set_defaults(fn=cmd_bulk)
    p = sub.add_parser("worker")
    p.add_argument("-P", "--pool", default="solo")
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("--prefetch-multiplier", dest="prefetch", type=int, default=256)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--py-spy", metavar="PATH", help="py-spy executable: sample all threads instead of cProfile")
    p.add_argument("--timeout", type=float, default=180)
    p.set_defaults(fn=cmd_worker)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
