"""Scenario ``transactional``: the crash storm again, with ``transactional=True`` tasks.

``app.pay`` inserts a business row keyed by its job id into ``chaos_ledger`` (no unique key on
purpose, so that a duplicate would show instead of raising) through the connection whose
transaction also records the job's outcome. However often a job runs, its row must exist exactly
once when it ended SUCCESS, and never otherwise.
"""

from __future__ import annotations

from pathlib import Path

from .lab import SCHEMA, Lab, Outcome, format_states, missed_targets, settings_note, step
from .storm import PLANS, format_rescue, play, rescue_seconds, storm_figures

S = f'"{SCHEMA}"'
TASK = "benchmarks.chaos.app.pay"


def ledger_figures(lab: Lab) -> tuple[int, int, int]:
    """(jobs with more than one business row, SUCCESS jobs without one, rows of jobs not SUCCESS)."""
    duplicates = lab.scalar(f"SELECT count(*) FROM (SELECT job_id FROM {S}.chaos_ledger GROUP BY job_id "
                            "HAVING count(*) > 1) d")
    missing = lab.scalar(f"SELECT count(*) FROM {S}.results r WHERE r.state = 'SUCCESS' AND NOT EXISTS "
                         f"(SELECT 1 FROM {S}.chaos_ledger l WHERE l.job_id = r.id)")
    orphans = lab.scalar(f"SELECT count(DISTINCT l.job_id) FROM {S}.chaos_ledger l WHERE NOT EXISTS "
                         f"(SELECT 1 FROM {S}.results r WHERE r.id = l.job_id AND r.state = 'SUCCESS')")
    return int(duplicates), int(missing), int(orphans)


def run(size: str, log_dir: Path) -> Outcome:
    plan = PLANS[size]
    with Lab(log_dir / "transactional", plan.settings) as lab:
        with step("transactional: storm"):
            storm = play(lab, plan, TASK)
        lost, stuck, states = lab.ids_accounting()
        duplicates, missing, orphans = ledger_figures(lab)
        reclaimed = int(lab.scalar(f"SELECT count(*) FROM {S}.results WHERE attempts > 1"))
        rescue, never = rescue_seconds(lab, storm.log.kills)
        no_tb = lab.failures_without_traceback()
    figures = (f"jobs={len(storm.ids)} lost={lost} stuck={stuck} dup_business_rows={duplicates} "
               f"missing_business_rows={missing} rows_without_success={orphans} claimed_twice={reclaimed} "
               f"{format_rescue(rescue)} worker_exits={len(storm.exits)} {storm_figures(storm)} "
               f"states={format_states(states)} {settings_note(plan.settings)}")
    return Outcome("transactional", figures, missed_targets(
        lost=lost, stuck=stuck, dup_business_rows=duplicates, missing_business_rows=missing,
        rows_without_success=orphans, worker_exits=len(storm.exits), never_rescued=never,
        failures_without_traceback=no_tb))
