"""Scenario ``beat``: three ``sqlq beat`` processes, one of them SIGKILLed every ~15 s (small:
~4 s) and started again at once, an every-1-second schedule, for 90 s (small: 20 s).

Beat has no leader: whichever beat claims the schedule row writes the tick row and its job in one
transaction, and the tick row's primary key keeps a tick from being sent twice. So, with at least
two beats alive at any moment, every second of the window must have exactly one tick:

* missed ticks: seconds of the window with no tick row, or whose tick row's job is nowhere (neither
  in ``jobs`` nor in ``results``);
* duplicate ticks: a second with more than one tick row, or a tick sent as more than one job
  (the job's ``periodic_tick`` header);
* beat exits: beats that exited without being killed.

No worker runs: the tick jobs stay in ``jobs``, where they are counted.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path

from .lab import SCHEMA, Lab, Outcome, Proc, missed_targets, say

S = f'"{SCHEMA}"'
SCHEDULE = "chaos-tick"
TASK = "benchmarks.chaos.app.tick"
BEATS = 3


@dataclasses.dataclass(frozen=True)
class Plan:
    window_s: float
    kill_every: float


PLANS = {"full": Plan(window_s=90.0, kill_every=15.0), "small": Plan(window_s=20.0, kill_every=4.0)}


def first_tick(lab: Lab, timeout: float = 60.0) -> float:
    """The database time of the first tick sent (the beats are up and the schedule synced)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = lab.scalar(f"SELECT extract(epoch FROM min(tick)) FROM {S}.schedule_ticks WHERE schedule = %s",
                           SCHEDULE)
        if found is not None:
            return float(found)
        time.sleep(0.1)
    raise TimeoutError(f"no tick within {timeout:.0f}s of starting {BEATS} beats")


def count_ticks(lab: Lab, start: float, seconds: int) -> tuple[int, int]:
    """(missed, duplicates) over ``seconds`` whole seconds from ``start`` (database time)."""
    rows = lab.rows(
        f"SELECT extract(epoch FROM t.tick), EXISTS (SELECT 1 FROM {S}.jobs j WHERE j.id = t.job_id) "
        f"  OR EXISTS (SELECT 1 FROM {S}.results r WHERE r.id = t.job_id) "
        f"FROM {S}.schedule_ticks t WHERE t.schedule = %s AND t.tick >= to_timestamp(%s) "
        "AND t.tick < to_timestamp(%s)", SCHEDULE, start, start + seconds)
    per_second: dict[int, int] = {}
    for tick, job_exists in rows:
        if job_exists:
            second = math.floor(float(tick) - start)
            per_second[second] = per_second.get(second, 0) + 1
    missed = sum(1 for s in range(seconds) if s not in per_second)
    duplicates = sum(n - 1 for n in per_second.values())
    duplicates += int(lab.scalar(
        f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {S}.jobs WHERE task = %s "
        "GROUP BY headers->>'periodic_tick' HAVING count(*) > 1) d", TASK))
    return missed, duplicates


def run(size: str, log_dir: Path) -> Outcome:
    plan = PLANS[size]
    rng = random.Random(15)
    with Lab(log_dir / "beat") as lab:
        beats: list[Proc] = [lab.beat(f"beat{i}") for i in range(BEATS)]
        # the window starts at the first whole second after the first tick: all beats are up by then
        start = math.floor(first_tick(lab)) + 2.0
        while lab.db_now() < start:
            time.sleep(0.05)
        kills, exits = 0, []
        next_kill = time.monotonic() + plan.kill_every
        end = time.monotonic() + plan.window_s
        while time.monotonic() < end:
            for i, proc in enumerate(beats):
                if not proc.alive() and not proc.killed_by_us:
                    exits.append(f"{proc.name} rc={proc.returncode()}")
                    say(f"{proc.name} exited by itself: {proc.tail(1)[-300:]}")
                    proc.stop()
                    beats[i] = lab.beat(proc.name)
            if time.monotonic() >= next_kill:
                i = rng.randrange(BEATS)
                beats[i].sigkill()
                beats[i].stop()
                beats[i] = lab.beat(beats[i].name)
                kills += 1
                next_kill += plan.kill_every * rng.uniform(0.8, 1.2)
            time.sleep(0.05)
        time.sleep(2.0)  # the window's last tick is committed
        seconds = int(plan.window_s)
        missed, duplicates = count_ticks(lab, start, seconds)
    figures = (f"beats={BEATS} window_s={seconds} kills={kills} missed_ticks={missed} "
               f"duplicate_ticks={duplicates} beat_exits={len(exits)} schedule=every 1s settings=defaults")
    return Outcome("beat", figures, missed_targets(missed_ticks=missed, duplicate_ticks=duplicates,
                                                   beat_exits=len(exits)))
