"""Scenario ``outage``: the server is stopped for a minute (small: 10 s) and started again while
a producer calls ``delay()`` at a bounded rate and two workers (threads, prefork) run.

Targets: the workers are still alive afterwards (no worker exits), the producer's errors all fall
inside the down window (an error after the server is back means a producer that did not
reconnect), every call that returned is in the database (nothing lost, nothing stuck), and the
backlog present when the server came back drains. Reported too: how long that drain took.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from .lab import SCHEMA, Lab, Outcome, Proc, missed_targets, say

S = f'"{SCHEMA}"'


@dataclasses.dataclass(frozen=True)
class Plan:
    outage_s: float
    rate: float
    before_s: float = 3.0
    after_s: float = 5.0
    drain_timeout: float = 60.0


PLANS = {"full": Plan(outage_s=60.0, rate=200.0, drain_timeout=90.0),
         "small": Plan(outage_s=10.0, rate=100.0, drain_timeout=25.0)}

#: An error this soon after the server is back still counts as inside the window (a call that
#: started while it was down).
BACK_GRACE_S = 1.0


def wait_backlog(lab: Lab, back_db: float, timeout: float, workers: list[Proc]) -> float | None:
    """Seconds until no job enqueued before the server came back is left; None on timeout, or at
    once when no worker is left to drain it."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and any(p.alive() for p in workers):
        left = lab.scalar(f"SELECT count(*) FROM {S}.jobs WHERE enqueued_at <= to_timestamp(%s)", back_db)
        if left == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def run(size: str, log_dir: Path) -> Outcome:
    plan = PLANS[size]
    here = log_dir / "outage"
    with Lab(here) as lab:
        workers = [lab.worker("threads", "threads", 4), lab.worker("prefork", "prefork", 2)]
        lab.wait_workers_registered(len(workers))
        stop_file, out = here / "producer.stop", here / "producer.json"
        producer = lab.spawn("producer", [sys.executable, "-m", "benchmarks.chaos.producer", "--rate",
                                          str(plan.rate), "--max-seconds", str(plan.outage_s * 3 + 60),
                                          "--stop-file", str(stop_file), "--out", str(out)])
        time.sleep(plan.before_s)
        down_at = time.time()
        lab.cluster.stop("fast")
        say(f"server down for {plan.outage_s:.0f}s")
        time.sleep(plan.outage_s)
        lab.cluster.start()
        lab.cluster.wait_ready()
        back_at = time.time()
        back_db = lab.db_now()
        drain_s = wait_backlog(lab, back_db, plan.drain_timeout, workers)
        remaining = plan.after_s - (time.time() - back_at)
        if remaining > 0:
            time.sleep(remaining)
        stop_file.touch()
        producer.popen.wait(60)
        report = json.loads(out.read_text()) if out.exists() else None
        if report is None:
            raise RuntimeError(f"the producer wrote no report (rc={producer.returncode()}): {producer.tail()}")
        lab.store_ids(report["accepted"])
        deadline = time.monotonic() + plan.drain_timeout
        while lab.jobs_left() and time.monotonic() < deadline and any(p.alive() for p in workers):
            time.sleep(0.2)
        lost, stuck, _ = lab.ids_accounting()
        exits = [f"{p.name} rc={p.returncode()}" for p in workers if not p.alive()]
        written_anyway = int(lab.scalar(
            f"SELECT count(*) FROM {S}.results WHERE id = ANY(%s::uuid[])", report["refused"]) or 0) + int(
            lab.scalar(f"SELECT count(*) FROM {S}.jobs WHERE id = ANY(%s::uuid[])", report["refused"]) or 0)
    errors = report["errors"]
    outside = [e for e in errors if not down_at <= e[0] <= back_at + BACK_GRACE_S]
    kinds = sorted({e[1] for e in errors})
    drain = f"{drain_s:.1f}" if drain_s is not None else "timeout"
    figures = (f"outage_s={back_at - down_at:.1f} worker_exits={len(exits)}"
               f"{' (' + ', '.join(exits) + ')' if exits else ''} "
               f"producer_calls={len(report['accepted']) + len(report['refused'])} producer_errors={len(errors)} "
               f"(all in down window: {'yes' if not outside else f'no, {len(outside)} after'}"
               f"{'; ' + ','.join(kinds) if kinds else ''}) refused_but_written={written_anyway} "
               f"backlog_drained_s={drain} lost={lost} stuck={stuck} rate={plan.rate:.0f}/s settings=defaults")
    return Outcome("outage", figures, missed_targets(
        worker_exits=len(exits), producer_errors_outside_window=len(outside), lost=lost, stuck=stuck,
        backlog_not_drained=int(drain_s is None)))
