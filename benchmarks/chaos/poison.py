"""Scenario ``poison``: one job of each kind PostgreSQL, the encoder or the decoder cannot take,
each followed by 20 normal jobs, on a worker of each pool.

A poison job must end in ``results`` (FAILURE with a traceback, as a rule) without taking its
worker down or wedging it: the 20 jobs queued behind it must all finish. Each (kind, pool) pair
has a queue and a worker of its own, so that one pair's failure cannot spoil another's figures;
they all run at once, under one deadline.

Kinds: ``nan`` (a task returns ``float('nan')``, JSON ``NaN``, which jsonb refuses), ``nul_result``
(a result holding ``\\x00``), ``nul_error`` (an exception message holding ``\\x00``),
``bad_str`` (an exception whose ``__str__`` raises), ``bad_tag`` (a hand-written job row whose
argument is a tagged value that does not decode: ``{"__type__": "datetime", "__value__": "never"}``),
``deep_json`` (a hand-written row whose arguments nest deeper than Python's JSON decoder goes),
``max_attempt`` (a hand-written row at ``attempt = 2147483647``, which the claim increments).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from .lab import NO_CODE_RAN, SCHEMA, Lab, Outcome, Proc, say

S = f'"{SCHEMA}"'
APP_TASKS = "benchmarks.chaos.app"
NORMAL_JOBS = 20
POOLS = (("solo", 1), ("threads", 2), ("prefork", 1))
DEEP = 3000

#: kind -> (task to send, or None for a hand-written row; the hand-written row's args and attempt)
KINDS: dict[str, tuple[str | None, str, int]] = {
    "nan": (f"{APP_TASKS}.returns_nan", "[]", 0),
    "nul_result": (f"{APP_TASKS}.returns_nul", "[]", 0),
    "nul_error": (f"{APP_TASKS}.raises_nul", "[]", 0),
    "bad_str": (f"{APP_TASKS}.raises_unprintable", "[]", 0),
    "bad_tag": (None, json.dumps([{"__type__": "datetime", "__value__": "never"}]), 0),
    "deep_json": (None, "[" * DEEP + "]" * DEEP, 0),
    "max_attempt": (None, "[1]", 2_147_483_647),
}
DEADLINE_S = {"full": 60.0, "small": 25.0}


@dataclasses.dataclass
class Pair:
    kind: str
    pool: str
    queue: str
    worker: Proc
    poison_id: str = ""
    normal_ids: list[str] = dataclasses.field(default_factory=list)


def send_poison(lab: Lab, pair: Pair) -> None:
    """The poison job, then 20 normal ones behind it on the same queue."""
    assert lab.client is not None
    task, args, attempt = KINDS[pair.kind]
    if task is not None:
        pair.poison_id = lab.client.send_task(task, queue=pair.queue).id
    else:
        pair.poison_id = lab.scalar(
            f"INSERT INTO {S}.jobs (id, task, queue, state, args, kwargs, attempt) VALUES (gen_random_uuid(), "
            f"%s, %s, 'available', %s::jsonb, '{{}}'::jsonb, %s) RETURNING id::text",
            f"{APP_TASKS}.noop", pair.queue, args, attempt)
    results = lab.client.enqueue_calls(f"{APP_TASKS}.noop", [((i,), None) for i in range(NORMAL_JOBS)],
                                       queue=pair.queue)
    pair.normal_ids = [r.id for r in results]


def settled(lab: Lab, pairs: list[Pair]) -> bool:
    ids = [p.poison_id for p in pairs] + [i for p in pairs for i in p.normal_ids]
    return int(lab.scalar(f"SELECT count(*) FROM {S}.results WHERE id = ANY(%s::uuid[])", ids)) == len(ids)


def poison_state(lab: Lab, job_id: str) -> tuple[str, bool]:
    """(the poison job's final state as shown, whether it is an acceptable end: a result row, and a
    traceback when it is a FAILURE)."""
    row = lab.rows(f"SELECT state, exc_type, traceback IS NOT NULL FROM {S}.results WHERE id = %s", job_id)
    if row:
        state, exc_type, has_tb = row[0]
        shown = state + (f"({exc_type.rsplit('.', 1)[-1]})" if exc_type else "")
        if state == "FAILURE" and not has_tb and exc_type not in NO_CODE_RAN:
            return shown + "[no traceback]", False
        return shown, True
    job = lab.rows(f"SELECT state, attempt FROM {S}.jobs WHERE id = %s", job_id)
    if job:
        return f"still-{job[0][0]}", False
    return "gone", False


def run(size: str, log_dir: Path) -> Outcome:
    with Lab(log_dir / "poison") as lab:
        pairs = [Pair(kind, pool, f"p_{kind}_{pool}", lab.worker(f"{kind}-{pool}", pool, c, queues=f"p_{kind}_{pool}"))
                 for kind in KINDS for pool, c in POOLS]
        lab.wait_workers_registered(len(pairs), timeout=120)
        for pair in pairs:
            send_poison(lab, pair)
        say(f"{len(pairs)} poison jobs sent, {NORMAL_JOBS} normal jobs behind each")
        deadline = time.monotonic() + DEADLINE_S[size]
        while time.monotonic() < deadline and not settled(lab, pairs):
            time.sleep(0.25)
        parts, missed, total_exits = [], [], 0
        for kind in KINDS:
            group = [p for p in pairs if p.kind == kind]
            states, normals, exits, bad = [], [], 0, False
            for pair in group:
                state, ok = poison_state(lab, pair.poison_id)
                done = int(lab.scalar(f"SELECT count(*) FROM {S}.results WHERE state = 'SUCCESS' "
                                      "AND id = ANY(%s::uuid[])", pair.normal_ids))
                died = not pair.worker.alive()
                if died:
                    say(f"worker {pair.worker.name} exited rc={pair.worker.returncode()}: "
                        f"{pair.worker.tail(1)[-300:]}")
                states.append(state)
                normals.append(str(done))
                exits += int(died)
                bad |= not ok or died or done != NORMAL_JOBS
            total_exits += exits
            shown = states[0] if len(set(states)) == 1 else "/".join(states)
            parts.append(f"{kind}={shown} normals={'/'.join(normals)} exits={exits}")
            if bad:
                missed.append(kind)
    figures = ("pools=solo/threads/prefork " + "; ".join(parts) + f"; worker_exits={total_exits}")
    return Outcome("poison", figures, missed)
