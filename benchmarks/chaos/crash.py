"""Scenario ``crash``: nothing is lost and nothing runs twice without a cause, under SIGKILLs of
workers (solo, threads, prefork), a prefork child's death, a fast restart and a crash-stop of the
server and a termination of every client backend.

Each job (``app.work``) sleeps a few ms and then writes ``(job id, attempt, worker id, start)`` to
``chaos_runs`` on a connection of its own, so a run that ended but whose outcome was never
recorded is still counted.
"""

from __future__ import annotations

from pathlib import Path

from .lab import SCHEMA, Lab, Outcome, format_states, missed_targets, say, settings_note, step
from .storm import PLANS, format_rescue, interrupted, play, rescue_seconds, storm_figures

S = f'"{SCHEMA}"'
TASK = "benchmarks.chaos.app.work"


def duplicate_results(lab: Lab) -> int:
    """Jobs whose one claim ran to its end twice, or that ran again after their outcome was
    recorded: what the guarded writes and the results primary key are there to make impossible."""
    return int(lab.scalar(
        f"SELECT count(*) FROM ("
        f"  SELECT job_id FROM {S}.chaos_runs GROUP BY job_id, attempt HAVING count(*) > 1"
        f"  UNION SELECT r.job_id FROM {S}.chaos_runs r JOIN {S}.results res ON res.id = r.job_id"
        f"        WHERE r.started_at > res.finished_at) d"))


def show_duplicates(lab: Lab, limit: int = 12) -> None:
    """On stderr, the runs of a few duplicated jobs beside their recorded outcome: the evidence a
    missed ``dup_results`` target needs to be explained."""
    rows = lab.rows(
        f"WITH d AS ("
        f"  SELECT job_id FROM {S}.chaos_runs GROUP BY job_id, attempt HAVING count(*) > 1"
        f"  UNION SELECT r.job_id FROM {S}.chaos_runs r JOIN {S}.results res ON res.id = r.job_id"
        f"        WHERE r.started_at > res.finished_at LIMIT %(limit)s)"
        f"SELECT r.job_id::text, r.attempt, r.worker_id::text, r.pid, r.started_at::time, r.done_at::time,"
        f"       res.attempts, res.worker_id::text, res.started_at::time, res.finished_at::time "
        f"FROM d JOIN {S}.chaos_runs r USING (job_id) LEFT JOIN {S}.results res ON res.id = r.job_id "
        f"ORDER BY r.job_id, r.done_at", {"limit": limit})
    for job_id, attempt, worker, pid, started, done, attempts, res_worker, res_started, res_finished in rows:
        say(f"dup {job_id} run attempt={attempt} worker={worker} pid={pid} {started}-{done} | "
            f"result attempts={attempts} worker={res_worker} {res_started}-{res_finished}")


def reruns(lab: Lab, dead: set[str], killed_jobs: set[str], run_windows: list, margin_s: float) -> tuple[int, int]:
    """(jobs that ran to their end more than once, how many of them had no interruption to explain it)."""
    rows = lab.rows(
        f"SELECT job_id::text, worker_id::text, extract(epoch FROM done_at) FROM {S}.chaos_runs "
        f"WHERE job_id IN (SELECT job_id FROM {S}.chaos_runs GROUP BY job_id HAVING count(*) > 1) "
        "ORDER BY job_id, done_at")
    by_job: dict[str, list[tuple[str | None, float]]] = {}
    for job_id, worker_id, done_at in rows:
        by_job.setdefault(job_id, []).append((worker_id, float(done_at)))
    unexplained = sum(
        1 for job_id, runs in by_job.items()
        if not all(interrupted(w, t, job_id, dead, killed_jobs, run_windows, margin_s) for w, t in runs[:-1]))
    return len(by_job), unexplained


def run(size: str, log_dir: Path) -> Outcome:
    plan = PLANS[size]
    with Lab(log_dir / "crash", plan.settings) as lab:
        with step("crash: storm"):
            storm = play(lab, plan, TASK)
        lost, stuck, states = lab.ids_accounting()
        dups = duplicate_results(lab)
        if dups:
            show_duplicates(lab)
        killed_jobs = {j for k in storm.log.kills for j in k.jobs}
        twice, unexplained = reruns(lab, storm.dead_worker_ids, killed_jobs, storm.log.disruptions, margin_s=10.0)
        rescue, never = rescue_seconds(lab, storm.log.kills)
        no_tb = lab.failures_without_traceback()
    explained = "yes" if not unexplained else f"no, {unexplained} not"
    figures = (f"jobs={len(storm.ids)} lost={lost} stuck={stuck} dup_results={dups} "
               f"run_twice={twice} (all interrupted: {explained}) {format_rescue(rescue)} "
               f"worker_exits={len(storm.exits)} {storm_figures(storm)} states={format_states(states)} "
               f"{settings_note(plan.settings)}")
    return Outcome("crash", figures, missed_targets(lost=lost, stuck=stuck, dup_results=dups,
                                                    unexplained_reruns=unexplained,
                                                    worker_exits=len(storm.exits), never_rescued=never,
                                                    failures_without_traceback=no_tb))
