"""The storm the crash and transactional scenarios share: three workers of different pools under
SIGKILL, a prefork child killed, the server restarted, crash-stopped and its backends terminated.

``Fleet`` keeps the three workers running the way a supervisor (systemd, Kubernetes) would: a
worker killed by the storm is started again at once, and one that exits by itself is counted as a
*worker exit* (a target: must be 0) and started again too, so that one bug does not hide the
others' figures. ``run_storm`` plays the timeline and returns what it did, with the database's
clock, so that the figures can be read from the rows afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import statistics
import time
from collections.abc import Sequence

from .lab import SCHEMA, Lab, Proc, say

S = f'"{SCHEMA}"'


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    name: str
    pool: str
    concurrency: int


#: One worker of each pool: 1 + 4 + 2 slots.
FLEET = (WorkerSpec("solo", "solo", 1), WorkerSpec("threads", "threads", 4), WorkerSpec("prefork", "prefork", 2))


@dataclasses.dataclass
class Kill:
    """A SIGKILL of a worker: when (database clock), which worker row, the jobs it held then."""

    at: float
    worker: str
    worker_id: str | None
    jobs: list[str]


@dataclasses.dataclass
class Disruption:
    """A database event: what, and the wall-clock window during which the server was unusable."""

    kind: str
    start: float
    end: float


@dataclasses.dataclass
class StormLog:
    kills: list[Kill] = dataclasses.field(default_factory=list)
    disruptions: list[Disruption] = dataclasses.field(default_factory=list)
    child_kills: int = 0


class Fleet:
    """The workers, restarted at once whenever they die; self-inflicted exits are recorded."""

    def __init__(self, lab: Lab, specs: Sequence[WorkerSpec] = FLEET):
        self.lab = lab
        self.specs = list(specs)
        self.current: dict[str, Proc] = {}
        self.exits: list[str] = []

    def start(self, spec: WorkerSpec) -> Proc:
        proc = self.lab.worker(spec.name, spec.pool, spec.concurrency)
        self.current[spec.name] = proc
        return proc

    def start_all(self) -> None:
        for spec in self.specs:
            self.start(spec)

    def reap(self) -> None:
        """Count and restart the workers that exited without being killed."""
        for spec in self.specs:
            proc = self.current[spec.name]
            if not proc.alive() and not proc.killed_by_us:
                self.exits.append(f"{spec.name} rc={proc.returncode()}")
                say(f"worker {spec.name} (pid {proc.pid}) exited by itself, rc={proc.returncode()}: "
                    f"{proc.tail(2)[-300:]}")
                proc.stop()
                self.start(spec)

    def alive_worker_ids(self) -> set[str]:
        pids = [p.pid for p in self.current.values() if p.alive()]
        if not pids:
            return set()
        rows = self.lab.rows(f"SELECT id::text FROM {S}.workers WHERE pid = ANY(%s)", pids)
        return {r[0] for r in rows}

    def stop(self) -> None:
        for proc in self.current.values():
            proc.stop()


def kill_worker(lab: Lab, fleet: Fleet, spec: WorkerSpec) -> Kill | None:
    """SIGKILL one worker, note the jobs it held, start its replacement at once."""
    proc = fleet.current[spec.name]
    if not proc.alive():
        return None
    worker_id = lab.scalar(f"SELECT id::text FROM {S}.workers WHERE pid = %s ORDER BY started_at DESC LIMIT 1",
                           proc.pid, retry_s=5)
    proc.sigkill()
    at = lab.db_now()
    jobs = [r[0] for r in lab.rows(f"SELECT id::text FROM {S}.jobs WHERE worker_id = %s AND state = 'running'",
                                   worker_id)] if worker_id else []
    fleet.start(spec)
    return Kill(at=at, worker=spec.name, worker_id=worker_id, jobs=jobs)


def kill_prefork_child(fleet: Fleet) -> bool:
    children = fleet.current["prefork"].children()
    if not children:
        return False
    os.kill(children[0], signal.SIGKILL)
    return True


def disrupt(lab: Lab, kind: str) -> Disruption:
    """One database event; returns the window during which the server could not be used."""
    start = time.time()
    if kind == "restart":
        lab.cluster.restart("fast")
    elif kind == "crash":
        lab.cluster.stop("immediate")
        time.sleep(1.0)
        lab.cluster.start()
    elif kind == "terminate":
        lab.cluster.terminate_backends()
    lab.cluster.wait_ready()
    return Disruption(kind, start, time.time())


#: When each one-off event happens, as a fraction of the storm's duration.
EVENTS = ((0.15, "child"), (0.35, "restart"), (0.55, "terminate"), (0.75, "crash"))
#: No worker is killed this close (s) to a database event, so that each re-run has one cause.
QUIET_S = 2.0


def _near_event(elapsed: float, pending: Sequence[tuple[float, str]], past: Sequence[Disruption]) -> bool:
    """A kill due this close to a database event waits until it is over (it is postponed, not
    dropped)."""
    return any(abs(at - elapsed) < QUIET_S for at, kind in pending if kind != "child") or any(time.time() - d.end < QUIET_S for d in past)


def run_storm(lab: Lab, fleet: Fleet, duration: float, kill_every: float, seed: int = 10) -> StormLog:
    """Play the timeline for ``duration`` seconds: a random worker SIGKILLed every ``kill_every``."""
    rng = random.Random(seed)
    log = StormLog()
    started = time.monotonic()
    pending = [(fraction * duration, kind) for fraction, kind in EVENTS]
    next_kill = kill_every
    while (elapsed := time.monotonic() - started) < duration:
        fleet.reap()
        if pending and elapsed >= pending[0][0]:
            _, kind = pending.pop(0)
            if kind == "child":
                log.child_kills += int(kill_prefork_child(fleet))
            else:
                log.disruptions.append(disrupt(lab, kind))
                say(f"database {kind}: {log.disruptions[-1].end - log.disruptions[-1].start:.1f}s")
        elif elapsed >= next_kill and not _near_event(elapsed, pending, log.disruptions):
            next_kill = elapsed + kill_every
            kill = kill_worker(lab, fleet, rng.choice(fleet.specs))
            if kill is not None:
                log.kills.append(kill)
        time.sleep(0.05)
    return log


def drain(lab: Lab, fleet: Fleet, timeout: float) -> float | None:
    """Wait for the jobs table to empty (workers still supervised); seconds taken, None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        fleet.reap()
        if lab.jobs_left() == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    return None


def rescue_seconds(lab: Lab, kills: Sequence[Kill]) -> tuple[list[float], int]:
    """Per kill that held jobs: seconds until the last of them ran again elsewhere (or was recorded
    as lost); plus the number of jobs that never did. A job whose outcome the killed worker itself
    recorded (a transactional task's child commits its own outcome) needed no rescue."""
    per_kill: list[float] = []
    never = 0
    for kill in kills:
        if not kill.jobs:
            continue
        rows = lab.rows(
            f"SELECT (SELECT extract(epoch FROM min(r.started_at)) FROM {S}.chaos_runs r WHERE r.job_id = j.id "
            f"        AND r.worker_id IS DISTINCT FROM %(w)s::uuid AND r.started_at > to_timestamp(%(at)s)), "
            f"  CASE WHEN res.worker_id IS DISTINCT FROM %(w)s::uuid AND res.started_at > to_timestamp(%(at)s) "
            f"       THEN extract(epoch FROM res.started_at) END, "
            f"  CASE WHEN res.state <> 'SUCCESS' THEN extract(epoch FROM res.finished_at) END, "
            f"  res.worker_id = %(w)s::uuid "
            f"FROM unnest(%(ids)s::uuid[]) AS j(id) LEFT JOIN {S}.results res ON res.id = j.id",
            {"w": kill.worker_id, "at": kill.at, "ids": kill.jobs})
        again: list[float | None] = []
        for *times, by_the_dead in rows:
            if by_the_dead:
                continue  # finished by the killed worker itself (an orphaned prefork child's own commit)
            found = [float(t) for t in times if t is not None]
            again.append(min(found) if found else None)
        never += sum(1 for t in again if t is None)
        done = [t for t in again if t is not None]
        if done:
            per_kill.append(max(done) - kill.at)
    return per_kill, never


def format_rescue(per_kill: Sequence[float]) -> str:
    if not per_kill:
        return "rescue_s n/a"
    return f"rescue_s max={max(per_kill):.1f} p50={statistics.median(per_kill):.1f}"


def interrupted(worker_id: str | None, done_at: float, job_id: str, dead: set[str], killed_jobs: set[str],
                windows: Sequence[Disruption], margin_s: float) -> bool:
    """Whether a run that was followed by another run of the same job had a cause to be repeated:
    its worker died, the job was held by a killed worker, or the run ended near a database event
    (its outcome could not be recorded)."""
    if worker_id in dead or job_id in killed_jobs:
        return True
    return any(d.start - 2.0 <= done_at <= d.end + margin_s for d in windows)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A storm's size: jobs, how long the storm lasts, how often a worker dies, how long the drain
    may take afterwards, and the sqlq settings changed for it (printed in the scenario's line)."""

    jobs: int
    duration: float
    kill_every: float
    drain_timeout: float
    settings: dict[str, str]

    @property
    def sleep_ms(self) -> float:
        """Each job's sleep, chosen so that the queue lasts about the storm (7 slots, ~70% busy):
        the kills and restarts then hit a loaded fleet rather than an idle one."""
        slots = sum(spec.concurrency for spec in FLEET)
        return max(2.0, round(0.7 * slots * self.duration / self.jobs * 1000.0, 1))


#: worker_lost_timeout is 30 s by default: the small run lowers it (and the maintenance interval)
#: so that rescues fit in CI's few minutes; the full run keeps sqlq's defaults.
PLANS = {
    "full": Plan(jobs=20_000, duration=120.0, kill_every=6.0, drain_timeout=300.0, settings={}),
    "small": Plan(jobs=3_000, duration=24.0, kill_every=4.0, drain_timeout=75.0,
                  settings={"worker_lost_timeout": "10", "worker_maintenance_interval": "2"}),
}


@dataclasses.dataclass
class StormRun:
    ids: list[str]
    log: StormLog
    drain_s: float | None
    exits: list[str]
    dead_worker_ids: set[str]


def play(lab: Lab, plan: Plan, task: str) -> StormRun:
    """Start the fleet, enqueue ``plan.jobs`` calls of ``task``, storm, drain; the fleet is gone after."""
    fleet = Fleet(lab)
    try:
        fleet.start_all()
        lab.wait_workers_registered(len(fleet.specs))
        assert lab.client is not None
        results = lab.client.enqueue_calls(task, [((i, plan.sleep_ms), None) for i in range(plan.jobs)])
        ids = [r.id for r in results]
        lab.store_ids(ids)
        say(f"{len(ids)} jobs of {task} enqueued ({plan.sleep_ms} ms each); storm for {plan.duration:.0f}s")
        log = run_storm(lab, fleet, plan.duration, plan.kill_every)
        say(f"storm over: {len(log.kills)} kills; draining (at most {plan.drain_timeout:.0f}s)")
        drain_s = drain(lab, fleet, plan.drain_timeout)
        alive = fleet.alive_worker_ids()
        seen = {r[0] for r in lab.rows(f"SELECT DISTINCT worker_id::text FROM {S}.chaos_runs "
                                       f"UNION SELECT DISTINCT worker_id::text FROM {S}.chaos_ledger")}
        seen |= {k.worker_id for k in log.kills if k.worker_id}
        return StormRun(ids, log, drain_s, list(fleet.exits), {w for w in seen if w} - alive)
    finally:
        fleet.stop()


def storm_figures(run: StormRun) -> str:
    """The storm's own figures, common to both scenarios' lines."""
    kinds = ",".join(d.kind for d in run.log.disruptions) or "none"
    drain = f"{run.drain_s:.1f}" if run.drain_s is not None else "timeout"
    return (f"kills={len(run.log.kills)} child_kills={run.log.child_kills} db_events={kinds} "
            f"drain_s={drain}")
