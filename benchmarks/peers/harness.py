"""Runs the four-part workload against ONE peer; started as a subprocess by run_peers.py.

    python harness.py --peer pgqueuer --n 10000 --out result.json --timeout 120

Phases: (a) enqueue n jobs one at a time, (b) bulk-enqueue n jobs (when the peer has a bulk
API), (c) start one worker process and drain the n queued jobs, (d) with that worker now idle,
send latency jobs at a fixed interval and measure enqueue -> task start.

The result is rewritten to ``--out`` after every phase, so the parent can report partial numbers
if it has to kill this process. The process group id of every worker started is appended to
``<out>.pgids`` before anything else happens to it, so the parent can kill workers even if this
process dies without running its ``finally`` blocks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import procs
import sink
from common import Skipped

# module, class: imported lazily so that a missing package only skips that peer
PEERS: dict[str, tuple[str, str]] = {
    "celery-redis": ("peer_celery", "CeleryRedisPeer"),
    "celery-rabbitmq": ("peer_celery", "CeleryRabbitPeer"),
    "pgqueuer": ("peer_pgqueuer", "PgQueuerPeer"),
    "procrastinate": ("peer_procrastinate", "ProcrastinatePeer"),
}

RESULT_KEYS = (
    "system",
    "enqueue_one_per_s",
    "bulk_per_s",
    "drain_per_s",
    "drain_after_startup_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "notes",
)

WARMUP_BASE = 2_000_000_000  # job indices used for connection warm-up (purged, never run)
LATENCY_BASE = 1_000_000_000  # job indices of the latency phase, disjoint from 0..n-1
WARMUP_JOBS = 20
IDLE_BEFORE_LATENCY_S = 1.0
POLL_S = 0.02


class Peer(Protocol):
    system: str
    bulk_api: str | None  # name of the bulk API, None when the peer has none
    enqueue_api: str
    worker_description: str

    def open(self) -> None: ...  # connect, create/clear our namespace; may raise Skipped
    def purge(self) -> None: ...
    def enqueue_one_by_one(self, ids: range) -> None: ...
    def enqueue_bulk(self, ids: range) -> None: ...
    def enqueue_paced(self, ids: range, interval: float) -> dict[int, float]: ...
    def worker_command(self) -> list[str]: ...
    def worker_env(self) -> dict[str, str]: ...
    def close(self) -> None: ...  # remove our keys/queues/database


@dataclass
class Options:
    n: int
    latency_jobs: int
    latency_interval_s: float
    deadline: float  # time.monotonic() by which the whole run must be over
    out: Path


class Report:
    """The result row, saved to disk after every change."""

    def __init__(self, system: str, out: Path) -> None:
        self.row: dict[str, object] = dict.fromkeys(RESULT_KEYS)
        self.row["system"] = system
        self.notes: list[str] = []
        self.out = out

    def set(self, **values: object) -> None:
        self.row.update(values)
        self.save()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.save()

    def save(self) -> None:
        self.row["notes"] = "; ".join(self.notes)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.row))
        tmp.replace(self.out)


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def percentile_ms(samples_s: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_s, n=100, method="inclusive")
    return {f"p{p}_ms": round(cuts[p - 1] * 1000, 2) for p in (50, 95, 99)}


def load_peer(name: str) -> Peer:
    module_name, class_name = PEERS[name]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)()


# --------------------------------------------------------------------------- phases


def warm_up(peer: Peer) -> None:
    """Open producer connections/pools before timing anything, then throw the jobs away."""
    peer.enqueue_one_by_one(range(WARMUP_BASE, WARMUP_BASE + WARMUP_JOBS))
    peer.purge()


def measure_enqueue(peer: Peer, opts: Options, report: Report) -> None:
    ids = range(opts.n)
    report.set(enqueue_one_per_s=rate(opts.n, timed(peer.enqueue_one_by_one, ids)))
    report.note(f"enqueue: {peer.enqueue_api}")
    if peer.bulk_api is None:
        report.note("bulk: n/a (no bulk enqueue API)")
        return
    peer.purge()
    report.set(bulk_per_s=rate(opts.n, timed(peer.enqueue_bulk, ids)))
    report.note(f"bulk: {peer.bulk_api}")


def register_worker_pgid(opts: Options, pgid: int) -> None:
    with open(f"{opts.out}.pgids", "a") as fh:
        fh.write(f"{pgid}\n")


def wait_for_jobs(sink_dir: Path, ids: range, until: float, worker) -> dict[int, float] | None:
    """Poll the sink until every id in ``ids`` has started; None on timeout or worker exit."""
    wanted = set(ids)
    while time.monotonic() < until:
        if worker.poll() is not None:
            return None
        if sink.count_records(sink_dir) >= len(wanted):
            starts = sink.read_records(sink_dir)
            if wanted <= starts.keys():
                return {i: starts[i] for i in ids}
        time.sleep(POLL_S)
    return None


def describe_failure(worker, log_path: Path, what: str, done: int, total: int, waited: float) -> str:
    if worker.poll() is not None:
        return f"{what}: worker exited with code {worker.returncode}: {procs.tail(log_path, 5)!r}"
    return f"{what}: timeout after {waited:.0f}s with {done}/{total} jobs done"


def measure_drain(peer, opts, report, sink_dir, log_path, latency_reserve) -> tuple[object, bool]:
    """Start the worker on the n queued jobs; return (worker, whether the drain completed)."""
    spawned_at = time.time()
    worker = procs.spawn(peer.worker_command(), procs.worker_env(sink_dir, peer.worker_env()), log_path)
    register_worker_pgid(opts, worker.pid)
    report.note(f"worker: {peer.worker_description}")
    starts = wait_for_jobs(sink_dir, range(opts.n), opts.deadline - latency_reserve, worker)
    if starts is None:
        done = sum(1 for i in sink.read_records(sink_dir) if i < opts.n)
        report.note(describe_failure(worker, log_path, "drain", done, opts.n, time.time() - spawned_at))
        return worker, False
    first, last = min(starts.values()), max(starts.values())
    report.set(
        drain_per_s=rate(opts.n, last - spawned_at),
        drain_after_startup_per_s=rate(opts.n - 1, last - first),
    )
    report.note(f"worker start-up to first job {first - spawned_at:.2f}s")
    return worker, True


def measure_latency(peer, opts, report, sink_dir, log_path, worker) -> None:
    time.sleep(IDLE_BEFORE_LATENCY_S)
    ids = range(LATENCY_BASE, LATENCY_BASE + opts.latency_jobs)
    sent = peer.enqueue_paced(ids, opts.latency_interval_s)
    starts = wait_for_jobs(sink_dir, ids, min(opts.deadline, time.monotonic() + 20), worker)
    if starts is None:
        done = sum(1 for i in sink.read_records(sink_dir) if i in sent)
        report.note(describe_failure(worker, log_path, "latency", done, len(ids), 20))
        return
    report.set(**percentile_ms([starts[i] - sent[i] for i in ids]))
    report.note(
        f"latency: {len(ids)} jobs {opts.latency_interval_s * 1000:.0f}ms apart to an idle worker, "
        "enqueue timestamp taken just before the enqueue call"
    )


def run_workload(peer: Peer, opts: Options, report: Report) -> None:
    latency_reserve = opts.latency_jobs * opts.latency_interval_s + IDLE_BEFORE_LATENCY_S + 10
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        sink_dir, log_path = Path(tmp, "sink"), Path(tmp, "worker.log")
        sink_dir.mkdir()
        peer.open()
        worker = None
        try:
            warm_up(peer)
            measure_enqueue(peer, opts, report)
            worker, drained = measure_drain(peer, opts, report, sink_dir, log_path, latency_reserve)
            if drained:
                measure_latency(peer, opts, report, sink_dir, log_path, worker)
            else:
                report.note("latency: not measured (drain did not complete)")
        finally:
            if worker is not None:
                procs.stop(worker)
            peer.close()


def run(name: str, opts: Options) -> int:
    report = Report(name, opts.out)
    report.save()
    try:
        run_workload(load_peer(name), opts, report)
    except Skipped as exc:
        report.note(f"skipped: {exc}")
    except ImportError as exc:
        report.note(f"skipped: cannot import ({exc})")
    except Exception as exc:
        traceback.print_exc()
        report.note(f"error: {type(exc).__name__}: {exc}")
        return 1
    return 0


def _terminate(signum, frame):  # noqa: ARG001
    raise SystemExit(f"terminated by signal {signum}")


def parse_args(argv: list[str]) -> tuple[str, Options]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, choices=sorted(PEERS))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--latency-jobs", type=int, default=300)
    parser.add_argument("--latency-interval-ms", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    opts = Options(
        n=args.n,
        latency_jobs=args.latency_jobs,
        latency_interval_s=args.latency_interval_ms / 1000,
        deadline=time.monotonic() + args.timeout,
        out=args.out,
    )
    return args.peer, opts


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    name, opts = parse_args(sys.argv[1:] if argv is None else argv)
    return run(name, opts)

if __name__ == "__main__":
    sys.exit(main())
