"""Runs the four-part workload against ONE peer; started as a subprocess by run_peers.py.

    python harness.py --peer pgqueuer --n 10000 --out result.json --timeout 120

Phases: (a) enqueue n jobs one at a time, (b) bulk-enqueue n jobs (when the peer has a bulk
API), (c) start one worker process and drain the n queued jobs, (d) with that worker now idle,
send latency jobs at a fixed interval and measure enqueue -> task start.

The result is rewritten to ``--out`` after every phase, so the parent can report partial numbers
if it has to kill this process. The process group id of every worker started is appended to
``<out>.pgids`` as soon as it exists, so the parent can kill workers even if this process dies
without running its ``finally`` blocks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import statistics
import subprocess
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
NUMERIC_KEYS = RESULT_KEYS[1:-1]
DRAIN_KEYS = ("drain_per_s", "drain_after_startup_per_s")
LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms")
LABELS_KEY = "_labels"  # why a number is missing ("n/a", "timeout", ...); read by run_peers.py

WARMUP_BASE = 2_000_000_000  # job indices used for connection warm-up (purged, never run)
LATENCY_BASE = 1_000_000_000  # job indices of the latency phase, disjoint from 0..n-1
PROBE_ID = LATENCY_BASE - 1  # readiness probe run before the latency jobs
WARMUP_JOBS = 20
IDLE_BEFORE_LATENCY_S = 1.0
LATENCY_WAIT_S = 20.0  # after the last latency job was sent
POLL_S = 0.02
ENQUEUE_CHUNK = 250  # the one-by-one enqueue checks its time budget between chunks
ENQUEUE_BUDGET_SHARE = 0.35  # of --timeout, for the one-by-one enqueue


class Peer(Protocol):
    system: str
    enqueue_api: str
    bulk_api: str | None  # None when the peer has no bulk enqueue API
    worker_description: str

    def open(self) -> None: ...  # check service, connect, start from an empty namespace
    def purge(self) -> None: ...  # drop all jobs (no worker is running)
    def enqueue_one_by_one(self, ids: range) -> None: ...
    def enqueue_bulk(self, ids: range) -> None: ...
    def enqueue_paced(self, ids: range, interval: float) -> dict[int, float]: ...
    def worker_command(self) -> list[str]: ...
    def worker_env(self) -> dict[str, str]: ...
    def close(self) -> None: ...  # disconnect and remove our keys/queues/database


@dataclass
class Options:
    n: int
    latency_jobs: int
    latency_interval_s: float
    deadline: float  # time.monotonic() by which the whole run must be over
    enqueue_budget_s: float  # the one-by-one enqueue stops early after this long
    out: Path

    @property
    def latency_reserve_s(self) -> float:
        """Time kept back from the drain so the latency phase can still run."""
        return IDLE_BEFORE_LATENCY_S + self.latency_jobs * self.latency_interval_s + 20


@dataclass
class Workspace:
    sink_dir: Path
    log_path: Path


class Report:
    """The result row (plus labels for missing numbers), saved to disk after every change."""

    def __init__(self, system: str, out: Path) -> None:
        self.row: dict[str, object] = dict.fromkeys(RESULT_KEYS)
        self.row["system"] = system
        self.labels: dict[str, str] = {}
        self.notes: list[str] = []
        self.out = out

    def set(self, **values: object) -> None:
        self.row.update(values)
        self.save()

    def label(self, keys: tuple[str, ...], text: str) -> None:
        self.labels.update(dict.fromkeys(keys, text))
        self.save()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.save()

    def save(self) -> None:
        self.row["notes"] = "; ".join(self.notes)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self.row, LABELS_KEY: self.labels}))
        tmp.replace(self.out)


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_s, n=100, method="inclusive")
    return {f"p{p}_ms": round(cuts[p - 1] * 1000, 2) for p in (50, 95, 99)}


def load_peer(name: str) -> Peer:
    module_name, class_name = PEERS[name]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)()


class Worker:
    """The peer's worker process (at most one at a time), always in its own process group."""

    def __init__(self, peer: Peer, opts: Options, ws: Workspace) -> None:
        self.peer, self.opts, self.ws = peer, opts, ws
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Spawn the worker; return the wall-clock time just before spawning."""
        spawned_at = time.time()
        env = procs.worker_env(self.ws.sink_dir, self.peer.worker_env())
        self.proc = procs.spawn(self.peer.worker_command(), env, self.ws.log_path)
        with open(f"{self.opts.out}.pgids", "a") as fh:
            fh.write(f"{self.proc.pid}\n")
        return spawned_at

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None

    def failure(self) -> str | None:
        """Why the worker is gone, or None while it runs."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"worker exited with code {self.proc.returncode}: {procs.tail(self.ws.log_path, 5)!r}"

    def wait_for_jobs(self, ids: range, until: float) -> dict[int, float] | None:
        """Poll the sink until every id in ``ids`` has started; None on timeout or worker exit."""
        sink_dir = self.ws.sink_dir
        while time.monotonic() < until and not self.failure():
            # cheap size-based count first; parse the records only once they could be complete
            if sink.count_records(sink_dir) >= len(ids):
                starts = sink.read_records(sink_dir)
                if all(i in starts for i in ids):
                    return {i: starts[i] for i in ids}
            time.sleep(POLL_S)
        return None

    def count_started(self, ids: range) -> int:
        return sum(1 for i in sink.read_records(self.ws.sink_dir) if i in ids)


# --------------------------------------------------------------------------- phases


def warm_up(peer: Peer) -> None:
    """Open producer connections/pools before timing anything, then throw the jobs away."""
    peer.enqueue_one_by_one(range(WARMUP_BASE, WARMUP_BASE + WARMUP_JOBS))
    peer.purge()


def enqueue_within_budget(peer: Peer, ids: range, until: float) -> tuple[int, float]:
    """Enqueue ``ids`` one at a time, in chunks, stopping early once ``until`` has passed.

    Returns (jobs enqueued, seconds taken); the enqueued jobs are ``ids[:count]``.
    """
    count, start = 0, time.perf_counter()
    for offset in range(0, len(ids), ENQUEUE_CHUNK):
        chunk = ids[offset : offset + ENQUEUE_CHUNK]
        peer.enqueue_one_by_one(chunk)
        count += len(chunk)
        if time.monotonic() > until:
            break
    return count, time.perf_counter() - start


def measure_enqueue(peer: Peer, opts: Options, report: Report) -> int:
    """(a) one at a time, then (b) bulk; return how many jobs (ids 0..k-1) are left queued."""
    until = time.monotonic() + opts.enqueue_budget_s
    count, seconds = enqueue_within_budget(peer, range(opts.n), until)
    report.set(enqueue_one_per_s=rate(count, seconds))
    report.note(f"enqueue: {peer.enqueue_api}")
    if count < opts.n:
        report.note(f"enqueue: stopped after {count}/{opts.n} jobs ({opts.enqueue_budget_s:.0f}s budget)")
    if peer.bulk_api is None:
        report.label(("bulk_per_s",), "n/a")
        report.note("bulk: n/a (no bulk enqueue API)")
        return count
    peer.purge()
    report.set(bulk_per_s=rate(opts.n, timed(peer.enqueue_bulk, range(opts.n))))
    report.note(f"bulk: {peer.bulk_api}")
    return opts.n


def measure_drain(opts: Options, report: Report, worker: Worker, queued: int) -> str:
    """(c) start the worker on the ``queued`` jobs and time until the last one has run.

    Returns "done", "timeout" or "error".
    """
    ids = range(queued)
    spawned_at = worker.start()
    starts = worker.wait_for_jobs(ids, opts.deadline - opts.latency_reserve_s)
    waited = time.time() - spawned_at
    if failure := worker.failure():
        report.label(DRAIN_KEYS, "error")
        report.note(f"drain: {failure}")
        return "error"
    if starts is None:
        done = worker.count_started(ids)
        report.label(("drain_after_startup_per_s",), "timeout")
        report.label(("drain_per_s",), f"timeout (~{done / waited:.0f})")
        report.note(
            f"drain: timeout, {done}/{queued} jobs done in {waited:.0f}s since worker start "
            f"(~{done / waited:.0f} jobs/s so far)"
        )
        return "timeout"
    first, last = min(starts.values()), max(starts.values())
    report.set(
        drain_per_s=rate(queued, last - spawned_at),
        drain_after_startup_per_s=rate(queued - 1, last - first),
    )
    report.note(f"drain: {queued} jobs, worker start-up to first job {first - spawned_at:.2f}s")
    return "done"


def restart_on_empty_queue(peer: Peer, report: Report, worker: Worker) -> None:
    """After a drain timeout: stop the worker, empty the queue, start a fresh worker."""
    worker.stop()
    peer.purge()
    worker.start()
    report.note("latency: measured on a fresh worker after purging the unfinished drain")


def wait_until_ready(peer: Peer, opts: Options, worker: Worker) -> bool:
    """Run one probe job end to end, so the worker is known to be up and listening."""
    probe = range(PROBE_ID, PROBE_ID + 1)
    peer.enqueue_one_by_one(probe)
    return worker.wait_for_jobs(probe, min(opts.deadline, time.monotonic() + LATENCY_WAIT_S)) is not None


def measure_latency(peer: Peer, opts: Options, report: Report, worker: Worker) -> None:
    """(d) jobs sent at a fixed interval to the idle worker: enqueue -> task start."""
    if not wait_until_ready(peer, opts, worker):
        report.label(LATENCY_KEYS, "error" if worker.failure() else "timeout")
        report.note(f"latency: worker not ready ({worker.failure() or 'probe job did not run'})")
        return
    time.sleep(IDLE_BEFORE_LATENCY_S)
    ids = range(LATENCY_BASE, LATENCY_BASE + opts.latency_jobs)
    sent = peer.enqueue_paced(ids, opts.latency_interval_s)
    starts = worker.wait_for_jobs(ids, min(opts.deadline, time.monotonic() + LATENCY_WAIT_S))
    if starts is None:
        failure = worker.failure()
        report.label(LATENCY_KEYS, "error" if failure else "timeout")
        report.note(f"latency: {failure or 'timeout'}; {worker.count_started(ids)}/{len(ids)} jobs started")
        return
    report.set(**percentiles_ms([starts[i] - sent[i] for i in ids]))
    report.note(
        f"latency: {len(ids)} jobs {opts.latency_interval_s * 1000:.0f}ms apart to the idle worker, "
        "enqueue time taken just before each enqueue call"
    )


def run_workload(peer: Peer, opts: Options, report: Report) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        ws = Workspace(sink_dir=Path(tmp, "sink"), log_path=Path(tmp, "worker.log"))
        ws.sink_dir.mkdir()
        peer.open()
        worker = Worker(peer, opts, ws)
        try:
            warm_up(peer)
            queued = measure_enqueue(peer, opts, report)
            report.note(f"worker: {peer.worker_description}")
            drain = measure_drain(opts, report, worker, queued)
            if drain == "timeout":
                restart_on_empty_queue(peer, report, worker)
            if drain == "error":
                report.label(LATENCY_KEYS, "error")
            else:
                measure_latency(peer, opts, report, worker)
        finally:
            worker.stop()
            peer.close()


def describe(exc: BaseException) -> str:
    """``Type: message`` for an exception and the chain of exceptions that caused it."""
    parts = []
    while exc is not None and len(parts) < 4:
        parts.append(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(parts)


def run(name: str, opts: Options) -> int:
    report = Report(name, opts.out)
    report.save()
    try:
        run_workload(load_peer(name), opts, report)
    except Skipped as exc:
        report.label(NUMERIC_KEYS, "skipped")
        report.note(f"skipped: {exc}")
    except ImportError as exc:
        report.label(NUMERIC_KEYS, "skipped")
        report.note(f"skipped: cannot import ({exc})")
    except Exception as exc:
        traceback.print_exc()
        report.note(f"error: {describe(exc)}")
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
        enqueue_budget_s=ENQUEUE_BUDGET_SHARE * args.timeout,
        out=args.out,
    )
    return args.peer, opts


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    name, opts = parse_args(sys.argv[1:] if argv is None else argv)
    return run(name, opts)


if __name__ == "__main__":
    sys.exit(main())
