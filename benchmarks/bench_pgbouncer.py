"""Drain throughput direct versus through PgBouncer in transaction pooling mode.

    .venv/bin/python -m benchmarks.bench_pgbouncer [N] [ROUNDS]

Writes N no-op jobs (bulk, direct), then times a burst worker (threads pool, 8 threads) draining
them, ROUNDS times per configuration, on a schema of its own (dropped at the end):

* ``direct``: database_url is the server, the claim's settings are session settings (the default);
* ``direct, per-transaction claim``: the same server, but ``listen_database_url`` set as well, so
  each claim sets its settings for its own transaction, as behind a pooler: the cost of that alone;
* ``pgbouncer``: database_url is a private PgBouncer (tests/bouncer.py) in transaction mode,
  LISTEN and the housekeeping session direct, prepared statements as the PgBouncer version allows.

Prints the best jobs/s of each configuration. Needs ``pgbouncer`` (``apt-get install pgbouncer``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import psycopg

from sqlq import App
from tests.bouncer import PrivateBouncer, pgbouncer_binary

DIRECT = os.environ.get("SQLQ_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
APP = "benchmarks.bench_pgbouncer:app"

app = App("benchmarks.bench_pgbouncer")


@app.task(name="bench.noop")
def noop() -> None:
    """Nothing: the drain measures sqlq, not the task."""


def drain(schema: str, n: int, env: dict[str, str]) -> float:
    """jobs/s of one burst worker draining ``n`` jobs written just before."""
    writer = App("bench-writer", database_url=DIRECT, schema=schema)
    writer.enqueue_calls("bench.noop", [((), {})] * n)
    writer.close()
    command = [sys.executable, "-m", "sqlq", "-A", APP, "worker", "--burst", "-P", "threads", "-c", "8",
               "--loglevel", "warning"]
    started = time.perf_counter()
    subprocess.run(command, env={**os.environ, **env, "SQLQ_SCHEMA": schema}, check=True)
    elapsed = time.perf_counter() - started
    with psycopg.connect(DIRECT, autocommit=True) as conn:
        left = conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()
    assert left is not None and left[0] == 0, f"{left} jobs left"
    return n / elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    binary = pgbouncer_binary()
    if binary is None:
        sys.exit("bench_pgbouncer: pgbouncer is not installed (apt-get install pgbouncer)")
    schema = f"bench_pgb_{uuid.uuid4().hex[:8]}"
    App("bench-migrate", database_url=DIRECT, schema=schema).migrate()
    try:
        with PrivateBouncer(DIRECT, binary, pool_size=20) as bouncer:
            configs = {
                "direct": {"SQLQ_DATABASE_URL": DIRECT},
                "direct, per-transaction claim": {"SQLQ_DATABASE_URL": DIRECT, "SQLQ_LISTEN_DATABASE_URL": DIRECT},
                f"pgbouncer {'.'.join(map(str, bouncer.version))} (transaction mode)": {
                    "SQLQ_DATABASE_URL": bouncer.url, "SQLQ_LISTEN_DATABASE_URL": DIRECT,
                    "SQLQ_DATABASE_PREPARED_STATEMENTS": "1" if bouncer.prepared_statements else "0"},
            }
            best: dict[str, list[float]] = {name: [] for name in configs}
            for _ in range(rounds):  # interleaved, so a busy moment of the machine hits each alike
                for name, env in configs.items():
                    best[name].append(drain(schema, n, env))
            for name, rates in best.items():
                print(f"{name:45s} best {max(rates):8.0f} jobs/s  (all: {', '.join(f'{r:.0f}' for r in rates)})")
    finally:
        with psycopg.connect(DIRECT, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
