"""``make bench``: sqlq's throughput and latency, then its peers', in one table.

    .venv/bin/python benchmarks/run.py

Environment:
    SQLQ_DATABASE_URL     server to use (default postgresql://postgres@127.0.0.1:5432/test); the
                          benchmark works in a fresh schema bench_<random>, dropped at the end
    BENCH_N               jobs for the enqueue, bulk and drain tests (default 10000)
    BENCH_PEERS=0         skip the peers (Celery/Redis, Celery/RabbitMQ, PgQueuer, Procrastinate)
    BENCH_PEER_LIST       comma-separated subset of peers to run
    BENCH_DRAIN_CONFIGS   worker configs for the drain, pool:concurrency:prefetch,... (see bench_sqlq.py)
    BENCH_LATENCY_POOLS   pools for the latency test (default default,solo,threads,prefork; "default" is
                          the worker without -P/-c/--prefetch-multiplier)
    BENCH_LATENCY_JOBS    jobs in the latency test (default 300, sent 20 ms apart)
    BENCH_NOSYNC=0        skip the extra enqueue + best drain run with synchronous_commit=off
    BENCH_BUDGET_S        wall-clock budget for everything (default 480): sqlq's drain configs past
                          its share are skipped, and the peers' per-peer timeout is cut to fit
    BENCH_SQLQ_BUDGET_S   sqlq's share when the peers run too (default 190)
    BENCH_OUT             where to write the JSON results (default benchmarks/results/latest.json)
    BENCH_KEEP_LOGS=1     keep the worker and peer logs (in a temp dir, printed at the start)

See benchmarks/README.md for what is measured and how to read the output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_sqlq  # noqa: E402
from benchmarks.bench_sqlq import SqlqResults, WorkerConfig  # noqa: E402

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"
PEERS_DIR = REPO / "benchmarks" / "peers"
BENCH_VENV = REPO / ".venv-bench"
PEERS = ("celery-redis", "celery-rabbitmq", "pgqueuer", "procrastinate")
SQLQ_BUDGET_S = 190.0  # sqlq's own phases, when the peers run too (they get the rest of the budget)

TARGETS = {  # key: (target, higher is better)
    "enqueue_one_per_s": (4_500, True),
    "bulk_per_s": (100_000, True),
    "drain_per_s": (20_000, True),
    "p50_ms": (2.0, False),
    "p99_ms": (5.0, False),
}

COLUMNS = (  # header, key, format
    ("system", "system", "{}"),
    ("worker (pool / options)", "worker", "{}"),
    ("enqueue 1-by-1 jobs/s", "enqueue_one_per_s", "{:,.0f}"),
    ("bulk jobs/s", "bulk_per_s", "{:,.0f}"),
    ("drain jobs/s", "drain_per_s", "{:,.0f}"),
    ("drain after start-up jobs/s", "drain_after_startup_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p95 ms", "p95_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Terminated(Exception):
    pass


def _on_signal(signum, frame):  # noqa: ARG001
    raise Terminated(f"terminated by signal {signum}")


# --------------------------------------------------------------------------- table


def render_table(rows: list[dict], columns=COLUMNS) -> str:
    def cell(row: dict, key: str, fmt: str) -> str:
        value = row.get(key)
        if value is None:
            return str(row.get("_labels", {}).get(key, "n/a"))
        if isinstance(value, str):
            return value
        return fmt.format(value)

    cells = [[header for header, _, _ in columns]]
    cells += [[cell(row, key, fmt) for _, key, fmt in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        left = [values[0].ljust(widths[0]), values[1].ljust(widths[1])]
        return " | ".join(left + [v.rjust(w) for v, w in zip(values[2:], widths[2:], strict=True)])

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(values) for values in cells[1:]])


def sqlq_rows(res: SqlqResults) -> list[dict]:
    """One row per pool: its best drain config, and the latency measured with that pool."""
    best = bench_sqlq.best_by_pool(res.drains)
    pools = list(dict.fromkeys([run.pool for run in res.drains] + [lat.pool for lat in res.latencies]))
    rows = []
    overall = max(best.values(), key=lambda r: r.drain_per_s, default=None)
    for pool in pools:
        drain = best.get(pool)
        latency = next((lat for lat in res.latencies if lat.pool == pool), None)
        failed = [r for r in res.drains if r.pool == pool and r.error]
        worker = drain.config if drain else (latency.config if latency else f"-P {pool}")
        row = {"system": "sqlq", "worker": worker + (" (best)" if drain is overall and drain else ""),
               "_labels": {}}
        if drain:
            row["drain_per_s"] = drain.drain_per_s
            row["drain_after_startup_per_s"] = drain.drain_after_startup_per_s
        elif failed:
            row["_labels"].update(drain_per_s="error", drain_after_startup_per_s="error")
        if latency and latency.p50_ms is not None:
            row.update(p50_ms=latency.p50_ms, p95_ms=latency.p95_ms, p99_ms=latency.p99_ms)
        elif latency:
            row["_labels"].update(p50_ms="error", p95_ms="error", p99_ms="error")
        rows.append(row)
    if not rows:
        rows.append({"system": "sqlq", "worker": "-", "_labels": {}})
    rows[0]["enqueue_one_per_s"] = res.enqueue_one_per_s
    rows[0]["bulk_per_s"] = res.bulk_per_s
    for row in rows[1:]:
        row["_labels"].update(enqueue_one_per_s="=", bulk_per_s="=")
    blank = dict.fromkeys(("bulk_per_s", "drain_per_s", "drain_after_startup_per_s", "p50_ms", "p95_ms",
                           "p99_ms"), "")
    if res.nosync_enqueue_one_per_s is not None or res.nosync_drain is not None:
        drain = res.nosync_drain
        rows.append({"system": "sqlq, synchronous_commit=off", "worker": drain.config if drain else "-",
                     "enqueue_one_per_s": res.nosync_enqueue_one_per_s,
                     "drain_per_s": drain.drain_per_s if drain else None,
                     "drain_after_startup_per_s": drain.drain_after_startup_per_s if drain else None,
                     "_labels": {**blank, "drain_per_s": "error" if drain else "",
                                 "drain_after_startup_per_s": "error" if drain else "",
                                 "enqueue_one_per_s": "error"}})
    if res.events_drain is not None:
        drain = res.events_drain
        rows.append({"system": "sqlq, events on (-E)", "worker": drain.config,
                     "drain_per_s": drain.drain_per_s,
                     "drain_after_startup_per_s": drain.drain_after_startup_per_s,
                     "_labels": {**blank, "enqueue_one_per_s": "",
                                 "drain_per_s": "error", "drain_after_startup_per_s": "error"}})
    routed = res.routed or {}
    if routed.get("status") == "ok":
        rows.append({"system": "sqlq routed", "worker": "bench_routed_enqueue(app, n)",
                     "enqueue_one_per_s": routed["value"], "_labels": dict(blank)})
    return rows


def peer_worker(notes: str) -> str:
    for part in (notes or "").split("; "):
        if part.startswith("worker: "):
            text = part[len("worker: "):]
            return text.split(" (")[0]
    return "-"


def peer_rows(peers: list[dict]) -> list[dict]:
    rows = []
    for peer in peers:
        row = {key: peer.get(key) for key, _ in [(c[1], None) for c in COLUMNS]}
        row["system"] = peer.get("system", "?")
        row["worker"] = peer_worker(peer.get("notes") or "")
        row["_labels"] = dict(peer.get("_labels") or {})
        for key in ("enqueue_one_per_s", "bulk_per_s", "drain_per_s", "drain_after_startup_per_s",
                    "p50_ms", "p95_ms", "p99_ms"):
            if row.get(key) is None:
                row["_labels"].setdefault(key, _peer_label(peer, key))
        rows.append(row)
    return rows


def _peer_label(peer: dict, key: str) -> str:
    notes = peer.get("notes") or ""
    if "skipped" in notes:
        return "skipped"
    if key == "bulk_per_s" and "no bulk" in notes:
        return "n/a"
    if "timeout" in notes:
        return "timeout"
    if "error" in notes:
        return "error"
    return "n/a"


def target_lines(res: SqlqResults, rows: list[dict]) -> list[str]:
    best = {
        "enqueue_one_per_s": res.enqueue_one_per_s,
        "bulk_per_s": res.bulk_per_s,
        "drain_per_s": max((r.drain_per_s for r in res.drains if r.drain_per_s), default=None),
        "p50_ms": min((lat.p50_ms for lat in res.latencies if lat.p50_ms is not None), default=None),
        "p99_ms": min((lat.p99_ms for lat in res.latencies if lat.p99_ms is not None), default=None),
    }
    names = {"enqueue_one_per_s": "enqueue 1-by-1", "bulk_per_s": "bulk enqueue", "drain_per_s": "drain",
             "p50_ms": "latency p50", "p99_ms": "latency p99"}
    out = []
    for key, (target, higher) in TARGETS.items():
        value = best[key]
        unit = "jobs/s" if key.endswith("per_s") else "ms"
        sign = ">=" if higher else "<="
        if value is None:
            out.append(f"  {names[key]:<15} target {sign} {target:,} {unit}: not measured")
            continue
        ok = value >= target if higher else value <= target
        shown = f"{value:,.0f}" if unit == "jobs/s" else f"{value:.2f}"
        out.append(f"  {names[key]:<15} target {sign} {target:,} {unit}: {shown} {unit}  "
                   f"{'MET' if ok else 'NOT MET'}")
    nosync = [f"enqueue 1-by-1 {res.nosync_enqueue_one_per_s:,.0f} jobs/s"
              if res.nosync_enqueue_one_per_s else None,
              f"drain {res.nosync_drain.drain_per_s:,.0f} jobs/s "
              f"({res.nosync_drain.drain_after_startup_per_s or 0:,.0f} after start-up)"
              if res.nosync_drain and res.nosync_drain.drain_per_s else None]
    if res.nosync_pair_on and res.nosync_pair_on.drain_per_s and nosync[1]:
        on = res.nosync_pair_on
        nosync[1] += (f" vs {on.drain_per_s:,.0f} ({on.drain_after_startup_per_s or 0:,.0f}) with it on, "
                      f"run just before")
    if any(nosync):
        out.append("  (with synchronous_commit=off in sqlq's sessions: " + ", ".join(filter(None, nosync)) + ")")
    plain, keyed = res.unique_pair_plain, res.unique_drain
    if plain and keyed and plain.drain_per_s and keyed.drain_per_s:
        ratio = keyed.drain_per_s / plain.drain_per_s
        out.append(f"  drain with unique keys target >= 85% of the plain drain run just before: "
                   f"{keyed.drain_per_s:,.0f} vs {plain.drain_per_s:,.0f} jobs/s = {ratio:.0%}  "
                   f"{'MET' if ratio >= 0.85 else 'NOT MET'}")
    elif keyed:
        out.append(f"  drain with unique keys: not measured ({keyed.error or plain and plain.error})")
    plain, limited = res.limit_pair_plain, res.limit_drain
    if plain and limited and plain.drain_per_s and limited.drain_per_s:
        out.append(f"  drain with a concurrency limit that does not bind (no target): {limited.drain_per_s:,.0f} vs "
                   f"{plain.drain_per_s:,.0f} jobs/s plain run just before = "
                   f"{limited.drain_per_s / plain.drain_per_s:.0%}")
    elif limited:
        out.append(f"  drain with a concurrency limit: not measured ({limited.error or plain and plain.error})")
    if res.bare_insert_per_s:
        out.append(f"  (this machine, right after: bare PostgreSQL, one INSERT per commit from psycopg, "
                   f"{res.bare_insert_per_s:,.0f}/s; the targets assumed ~5,800/s. sqlq's 1-by-1 is "
                   f"{(res.enqueue_one_per_s or 0) / res.bare_insert_per_s:.0%} of it)")
    if res.pool_checkout:
        out.append(f"  ({res.pool_checkout})")
    return out


def default_lines(res: SqlqResults, peers: list[dict]) -> list[str]:
    """Issue #16's first target: ``sqlq worker`` with no flags drains >= 2x PgQueuer in the same run,
    every outcome recorded (measure_drain checks n SUCCESS rows), and its idle p50 <= 2 ms."""
    drain = next((r for r in res.drains if r.pool == bench_sqlq.DEFAULT), None)
    if drain is None:
        return []
    latency = next((lat for lat in res.latencies if lat.pool == bench_sqlq.DEFAULT), None)
    peer = next((p for p in peers if str(p.get("system", "")).lower().startswith("pgqueuer")), None)
    figure = f"{drain.drain_per_s:,.0f} jobs/s" if drain.drain_per_s else f"failed ({drain.error})"
    line = f"  default drain   `sqlq worker --burst` (no flags): {figure}, SUCCESS {drain.success}/{res.n}"
    theirs = peer.get("drain_per_s") if peer else None
    if drain.drain_per_s and isinstance(theirs, (int, float)) and theirs:
        ratio = drain.drain_per_s / theirs
        line += f"; PgQueuer {theirs:,.0f} jobs/s: {ratio:.2f}x (target >= 2x: {'MET' if ratio >= 2 else 'NOT MET'})"
    else:
        line += "; PgQueuer not measured in this run"
    out = [line]
    if latency and latency.p50_ms is not None:
        out.append(f"  default latency p50 {latency.p50_ms:.2f} ms, p99 {latency.p99_ms:.2f} ms "
                   f"(target p50 <= 2 ms: {'MET' if latency.p50_ms <= 2.0 else 'NOT MET'})")
    return out


def drain_table(res: SqlqResults) -> str:
    best = max((r for r in res.drains if r.drain_per_s), key=lambda r: r.drain_per_s, default=None)
    rows = []
    runs = res.drains + [r for r in (res.nosync_pair_on, res.nosync_drain, res.unique_pair_plain,
                                      res.unique_drain, res.limit_pair_plain, res.limit_drain, res.events_pair_off,
                                      res.events_drain) if r]
    for run in runs:
        suffix = {id(res.nosync_pair_on): " [again]", id(res.nosync_drain): " [again, synchronous_commit=off]",
                  id(res.unique_pair_plain): " [again, plain]", id(res.unique_drain): " [unique keys]",
                  id(res.limit_pair_plain): " [again]", id(res.limit_drain): " [concurrency limit]",
                  id(res.events_pair_off): " [again, before -E]", id(res.events_drain): " [again, events on]"}
        rows.append({
            "config": ("* " if run is best else "  ") + run.config + suffix.get(id(run), ""),
            "wall": f"{run.wall_s:.2f}" if run.wall_s else "-",
            "drain": f"{run.drain_per_s:,.0f}" if run.drain_per_s else "-",
            "after": f"{run.drain_after_startup_per_s:,.0f}" if run.drain_after_startup_per_s else "-",
            "started": f"{run.started_span_per_s:,.0f}" if run.started_span_per_s else "-",
            "startup": f"{run.startup_s:.2f}" if run.startup_s is not None else "-",
            "tail": (f"{run.wall_s - run.to_last_outcome_s:.2f}"
                     if run.wall_s and run.to_last_outcome_s is not None else "-"),
            "ok": f"{run.success}/{res.n}",
        })
    headers = {"config": "  worker options (python -m sqlq -A benchmarks.bench_tasks worker --burst ...)",
               "wall": "start->exit s", "drain": "jobs/s", "after": "after start-up jobs/s",
               "started": "claim span jobs/s", "startup": "spawn->1st claim s",
               "tail": "last outcome->exit s", "ok": "SUCCESS"}
    keys = list(headers)
    widths = {k: max([len(headers[k])] + [len(r[k]) for r in rows]) for k in keys}
    out = [" | ".join(headers[k].ljust(widths[k]) if k in ("config", "ok") else headers[k].rjust(widths[k])
                      for k in keys)]
    out.append("-+-".join("-" * widths[k] for k in keys))
    for r in rows:
        out.append(" | ".join(r[k].ljust(widths[k]) if k in ("config", "ok") else r[k].rjust(widths[k])
                              for k in keys).rstrip())
    out += [f"  ! {run.config}: {run.error}" for run in runs if run.error]
    return "\n".join(out)


def latency_table(res: SqlqResults) -> str:
    lines = []
    for lat in res.latencies:
        if lat.p50_ms is None:
            lines.append(f"  {lat.config}: {lat.error}")
            continue
        lines.append(f"  {lat.config}: p50 {lat.p50_ms:.2f} ms, p95 {lat.p95_ms:.2f} ms, p99 {lat.p99_ms:.2f} ms, "
                     f"max {lat.max_ms:.2f} ms, mean {lat.mean_ms:.2f} ms ({lat.recorded}/{lat.jobs} jobs; "
                     f"spawn -> first jobs done {lat.warmup_s:.2f}s)"
                     + (f"  [{lat.error}]" if lat.error else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- peers


def peers_python() -> Path | None:
    python = BENCH_VENV / "bin" / "python"
    return python if python.exists() else None


def peers_server_dsn(url: str) -> str:
    """The peers' PostgreSQL server: the one sqlq uses (their own database on it)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def run_peers(url: str, n: int, time_left: float, peer_list: list[str], log_dir: Path) -> tuple[list[dict], str]:
    """Run benchmarks/peers/run_peers.py in .venv-bench; returns (rows, its own text output)."""
    python = peers_python()
    if python is None:
        return [], ".venv-bench is missing: `make bench` creates it (or BENCH_PEERS=0 to skip the peers)"
    # Not every peer uses its whole timeout (the fast ones finish early), so the slow ones may use a
    # little more than an even share; 20 s of cleanup per peer comes on top in run_peers.py.
    per_peer = max(40.0, min(120.0, (time_left - 10) / max(1, len(peer_list)) * 1.25 - 20))
    out = log_dir / "peers.json"
    cmd = [str(python), str(PEERS_DIR / "run_peers.py"), "--n", str(n), "--timeout", f"{per_peer:.0f}",
           "--peers", ",".join(peer_list), "--json", str(out)]
    env = dict(os.environ)
    env.setdefault("BENCH_PG_SERVER_DSN", peers_server_dsn(url))
    hard_limit = len(peer_list) * (per_peer + 30) + 15
    say(f"peers: {', '.join(peer_list)} (n={n}, at most {per_peer:.0f}s each)")
    with open(log_dir / "peers.out", "wb") as stdout:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=None, start_new_session=True)
        try:
            proc.wait(timeout=hard_limit)
        except subprocess.TimeoutExpired:
            say(f"peers: not done after {hard_limit:.0f}s; stopping them")
        finally:
            stop_group(proc)
    text = (log_dir / "peers.out").read_text(errors="replace")
    try:
        rows = json.loads(out.read_text())
    except (OSError, ValueError):
        return [], f"run_peers.py wrote no results (exit {proc.returncode}); its output:\n{text[-2000:]}"
    return rows, text


def stop_group(proc: subprocess.Popen, grace: float = 25.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


# --------------------------------------------------------------------------- main


def check_server(url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


def main() -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="sqlq-bench-"))
    try:
        return run(log_dir)
    finally:
        shutil.rmtree(log_dir / "pycache", ignore_errors=True)
        if os.environ.get("BENCH_KEEP_LOGS", "") not in ("", "0"):
            say(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


def run(log_dir: Path) -> int:
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _on_signal)
    url = os.environ.get("SQLQ_DATABASE_URL") or LOCAL_URL
    n = env_int("BENCH_N", 10_000)
    budget = env_float("BENCH_BUDGET_S", 480.0)
    with_peers = os.environ.get("BENCH_PEERS", "1").strip().lower() not in ("0", "no", "false", "off")
    peer_list = [p.strip() for p in os.environ.get("BENCH_PEER_LIST", ",".join(PEERS)).split(",") if p.strip()]
    drain_configs = tuple(WorkerConfig.parse(c) for c in
                          os.environ.get("BENCH_DRAIN_CONFIGS", ",".join(bench_sqlq.DEFAULT_DRAIN_CONFIGS))
                          .split(",") if c.strip())
    latency_pools = tuple(p.strip() for p in os.environ.get("BENCH_LATENCY_POOLS", ",".join(bench_sqlq.Options.latency_pools))
                          .split(",") if p.strip())
    out_path = Path(os.environ.get("BENCH_OUT") or REPO / "benchmarks" / "results" / "latest.json")

    problem = check_server(url)
    if problem:
        print(f"bench: cannot reach PostgreSQL at {url}: {problem}\n"
              f"bench: start the server or set SQLQ_DATABASE_URL", file=sys.stderr)
        return 1

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    opts = bench_sqlq.Options(
        url=url, schema=schema, n=n, latency_jobs=env_int("BENCH_LATENCY_JOBS", 300),
        drain_configs=drain_configs, latency_pools=latency_pools,
        nosync=os.environ.get("BENCH_NOSYNC", "1").strip().lower() not in ("0", "no", "false", "off"),
        budget_s=env_float("BENCH_SQLQ_BUDGET_S", SQLQ_BUDGET_S) if with_peers else budget * 0.95,
        log_dir=log_dir,
    )
    say(f"sqlq: n={n}, schema {schema}, worker logs in {log_dir} (BENCH_KEEP_LOGS=1 keeps them)")
    res = SqlqResults(n=n)
    bench_sqlq.create_schema(url, schema)
    try:
        res = bench_sqlq.run_all(opts)
    except (KeyboardInterrupt, Terminated) as exc:
        say(f"interrupted ({exc or 'Ctrl-C'}); cleaning up")
        return 130
    finally:
        bench_sqlq.drop_schema(url, schema)

    peers: list[dict] = []
    peers_text = "skipped (BENCH_PEERS=0)"
    if with_peers:
        try:
            peers, peers_text = run_peers(url, n, budget - (time.monotonic() - started), peer_list, log_dir)
        except (KeyboardInterrupt, Terminated) as exc:
            say(f"interrupted ({exc or 'Ctrl-C'})")
            return 130

    report = render(res, peers, peers_text, with_peers, url, time.monotonic() - started)
    print(report)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"sqlq": res.as_dict(), "peers": peers, "database": redact(url),
                                    "n": n}, indent=2, default=str) + "\n")
    out_path.with_suffix(".txt").write_text(report + "\n")
    say(f"results written to {out_path} and {out_path.with_suffix('.txt')}")
    return 0


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def workflow_lines(res: SqlqResults) -> list[str]:
    """(f): plain jobs, a group, a chord of n members, each sent then drained by one worker."""
    runs = res.workflows or {}
    if not runs:
        return []
    out = ["", f"sqlq workflows: {res.n} noop members sent, then one `sqlq worker --burst` "
               f"({next(iter(runs.values())).config}); jobs/s = n / (send start -> worker exit)"]
    plain, grp = runs.get("plain"), runs.get("group")
    for kind, target, base in (("plain", None, None), ("group", 1.25, plain), ("chord", 1.25, grp)):
        run = runs.get(kind)
        if run is None:
            continue
        if run.error is not None:
            out.append(f"  {kind:<6} FAILED: {run.error}")
            continue
        ratio = ""
        if base is not None and base.total_s and run.total_s:
            verdict = "ok" if run.total_s / base.total_s <= target else "MISSED"
            ratio = (f"; {run.total_s / base.total_s:.2f}x the {base.kind}'s time (target <= {target}x: {verdict})")
        vs_plain = (f", {run.total_s / plain.total_s:.2f}x plain" if kind == "chord" and plain and plain.total_s
                    and run.total_s else "")
        out.append(f"  {kind:<6} {run.per_s:>9,.0f} jobs/s ({run.total_s:.2f}s, sent in {run.send_s:.3f}s, "
                   f"{run.drain_after_startup_per_s or 0:,.0f} jobs/s after start-up){ratio}{vs_plain}")
    return out


def render(res: SqlqResults, peers: list[dict], peers_text: str, with_peers: bool, url: str,
           elapsed: float) -> str:
    s = res.server
    out = [
        f"sqlq benchmark: n={res.n} noop(i) jobs; {os.cpu_count()} CPUs; database {redact(url)}",
        f"PostgreSQL {s.get('server_version', '?')}: synchronous_commit={s.get('synchronous_commit')} "
        f"fsync={s.get('fsync')} shared_buffers={s.get('shared_buffers')}",
        f"  ({s.get('version', '')})",
        "",
        render_table(sqlq_rows(res) + peer_rows(peers)),
        "",
    ]
    routed = res.routed or {}
    if routed.get("status") == "ok":
        out.append(f"routed: bench_routed_enqueue(app, {res.n}) = {routed['value']:,.1f} (shown as jobs/s)"
                   + (f" -- {routed['doc']}" if routed.get("doc") else ""))
    else:
        out.append(f"routed: {routed.get('status', 'not available yet')}")
    out += workflow_lines(res)
    out += ["", "Targets (sqlq, best measured):"] + target_lines(res, []) + default_lines(res, peers)
    out += ["", "sqlq drain: one `sqlq worker --burst` process per row, each on a fresh queue of "
                f"{res.n} jobs (* = best)", drain_table(res)]
    out += ["", "sqlq latency (started_at - enqueued_at, DB clock): "
                f"{res.latencies[0].jobs if res.latencies else 0} jobs 20 ms apart to an idle worker", latency_table(res)]
    if res.bulk_runs_per_s:
        out += ["", f"sqlq bulk enqueue: median of {len(res.bulk_runs_per_s)} delay_many({res.n}) runs; each run: "
                    + ", ".join(f"{r:,.0f}" for r in res.bulk_runs_per_s) + " jobs/s. "
                    f"The same rows encoded beforehand, COPY alone: {res.bulk_statement_s:.3f}s "
                    f"(= {res.n / res.bulk_statement_s:,.0f} jobs/s, the server's ceiling on this machine)"]
    if res.notes:
        out += ["", "sqlq notes:"] + [f"  - {note}" for note in res.notes]
    out += ["", "Peers:"]
    if peers:
        out += [f"  - {p.get('system')}: {p.get('notes') or ''}" for p in peers]
    else:
        out.append(f"  {peers_text if with_peers else 'skipped (BENCH_PEERS=0)'}")
    out += ["", "How to read: throughput columns are jobs/s (higher is better); drain = n / (worker process "
                "start -> exit) for sqlq, n / (start -> last job started) for peers; 'after start-up' excludes "
                "interpreter/connection start-up. sqlq latency is measured in the database (enqueue statement "
                "-> claim); peers' latency is client clock -> task body (see benchmarks/README.md).",
            f"Total time: {elapsed:.0f}s"]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
