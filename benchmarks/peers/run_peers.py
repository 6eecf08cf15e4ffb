"""Benchmark sqlq's peers (Celery on Redis/RabbitMQ, PgQueuer, Procrastinate) on one workload.

    python benchmarks/peers/run_peers.py [--peers celery-redis,celery-rabbitmq,pgqueuer,procrastinate]
                                         [--n 10000] [--timeout 120] [--json out.json]

Workload (noop task taking one int): (a) enqueue n jobs one at a time, (b) bulk-enqueue n jobs,
(c) drain n queued jobs with one worker process, (d) enqueue->start latency over jobs sent 20 ms
apart to an idle worker. Each peer runs in its own subprocess (harness.py) with a time limit;
a peer whose service is down or whose package is missing is reported as skipped, and every
process a peer started is killed when it is done or out of time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procs  # noqa: E402
from harness import LABELS_KEY, NUMERIC_KEYS, PEERS, RESULT_KEYS  # noqa: E402

DEFAULT_PEERS = ("celery-redis", "celery-rabbitmq", "pgqueuer", "procrastinate")
HARNESS = procs.PEERS_DIR / "harness.py"
CLEANUP_GRACE_S = 20  # beyond --timeout: lets the harness stop its worker and drop its state

COLUMNS = (  # (header, key, format)
    ("system", "system", "{}"),
    ("enqueue 1-by-1 jobs/s", "enqueue_one_per_s", "{:,.0f}"),
    ("bulk jobs/s", "bulk_per_s", "{:,.0f}"),
    ("drain jobs/s", "drain_per_s", "{:,.0f}"),
    ("drain after start-up jobs/s", "drain_after_startup_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p95 ms", "p95_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
)


def peer_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}; choose from {sorted(PEERS)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=peer_list, default=list(DEFAULT_PEERS))
    parser.add_argument("--n", type=int, default=10_000, help="jobs for the throughput tests")
    parser.add_argument("--latency-jobs", type=int, default=300)
    parser.add_argument("--latency-interval-ms", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per peer")
    parser.add_argument("--json", type=Path, help="write the result rows to this file")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- one peer


def harness_command(name: str, args: argparse.Namespace, out: Path) -> list[str]:
    return [
        sys.executable, str(HARNESS), "--peer", name, "--n", str(args.n),
        "--latency-jobs", str(args.latency_jobs),
        "--latency-interval-ms", str(args.latency_interval_ms),
        "--timeout", str(args.timeout), "--out", str(out),
    ]  # fmt: skip


def kill_recorded_workers(out: Path) -> None:
    """SIGKILL every worker process group the harness recorded (normally already gone)."""
    pgid_file = Path(f"{out}.pgids")
    if not pgid_file.exists():
        return
    for line in pgid_file.read_text().split():
        procs.kill_group(int(line), signal.SIGKILL)


def load_row(out: Path, name: str) -> tuple[dict[str, object], dict[str, str]]:
    """The harness's (possibly partial) result row, and its labels for missing numbers."""
    try:
        saved = json.loads(out.read_text())
    except (OSError, ValueError):
        saved = {}
    row = {key: saved.get(key) for key in RESULT_KEYS} | {"system": name}
    return row, saved.get(LABELS_KEY) or {}


def add_note(row: dict[str, object], text: str) -> None:
    row["notes"] = "; ".join(filter(None, [row.get("notes"), text]))


def label_missing(row: dict[str, object], labels: dict[str, str], text: str) -> None:
    for key in NUMERIC_KEYS:
        if row[key] is None:
            labels.setdefault(key, text)


def run_peer(name: str, args: argparse.Namespace, workdir: Path) -> tuple[dict[str, object], dict[str, str]]:
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    started = time.monotonic()
    harness = procs.spawn(harness_command(name, args, out), dict(os.environ), log)
    timed_out = False
    try:
        harness.wait(timeout=args.timeout + CLEANUP_GRACE_S)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        procs.stop(harness, grace=CLEANUP_GRACE_S)
        kill_recorded_workers(out)
    row, labels = load_row(out, name)
    if timed_out:
        label_missing(row, labels, "timeout")
        add_note(row, f"timeout: peer did not finish within {args.timeout:.0f}s")
    elif harness.returncode != 0:
        label_missing(row, labels, "error")
        add_note(row, f"harness exited with code {harness.returncode}")
    if timed_out or harness.returncode != 0:
        print(f"[peers] {name} log (last lines):\n{procs.tail(log, 40)}", file=sys.stderr)
    add_note(row, f"peer run took {time.monotonic() - started:.1f}s")
    return row, labels


# --------------------------------------------------------------------------- output


def cell(row: dict[str, object], labels: dict[str, str], key: str, fmt: str) -> str:
    value = row.get(key)
    return labels.get(key, "n/a") if value is None else fmt.format(value)


def render_table(results: list[tuple[dict[str, object], dict[str, str]]]) -> str:
    cells = [[header for header, _, _ in COLUMNS]]
    cells += [[cell(row, labels, key, fmt) for _, key, fmt in COLUMNS] for row, labels in results]
    widths = [max(len(line[c]) for line in cells) for c in range(len(COLUMNS))]

    def fmt_line(line: list[str]) -> str:
        first = line[0].ljust(widths[0])
        return " | ".join([first] + [v.rjust(w) for v, w in zip(line[1:], widths[1:], strict=True)])

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt_line(cells[0]), rule] + [fmt_line(line) for line in cells[1:]])


def render_notes(rows: list[dict[str, object]]) -> str:
    return "\n".join(f"- {row['system']}: {row.get('notes') or ''}" for row in rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_before = time.monotonic(), os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-run-") as tmp:
        for name in args.peers:
            print(f"[peers] running {name} (n={args.n}) ...", file=sys.stderr, flush=True)
            results.append(run_peer(name, args, Path(tmp)))
    rows = [row for row, _ in results]
    print(render_table(results))
    print("\nNotes:")
    print(render_notes(rows))
    print(
        f"\nTotal peer benchmark time: {time.monotonic() - started:.1f}s (n={args.n}); "
        f"1-min load average {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end "
        f"({os.cpu_count()} CPUs)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
