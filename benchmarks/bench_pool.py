"""sqlq's connection pool against psycopg_pool: the cost of a check-out, and of a ``delay()``.

    .venv/bin/python benchmarks/bench_pool.py        # needs psycopg_pool (pip install psycopg-pool)

Measures, on the server of ``SQLQ_DATABASE_URL`` (default the local test server), in a schema of
its own (dropped at the end):

* a check-out and return with nothing done in between (``with pool.connection(): pass``), for
  ``sqlq.db.ConnectionPool`` (which checks every idle connection before handing it out:
  ``db.usable``), ``psycopg_pool.ConnectionPool`` with the same check as its ``check=`` callback,
  without any check (what it does by default: a dead idle connection is handed out), and with
  its own ``check_connection`` (a round trip); and ``db.usable`` alone;
* ``delay()`` one by one (``BENCH_POOL_DELAYS`` calls, default 3000) on an app whose pool is
  sqlq's, then psycopg_pool's with the cheap check, alternating, ``BENCH_POOL_ROUNDS`` rounds
  (default 5); the median of each counts.

and, on a private cluster (``BENCH_POOL_OUTAGE=0`` skips it), the first check-out after a server
restart with three idle connections, and one made during a two-second outage, for each pool.

``make bench`` prints the check-out line (``checkout_figures``) after (a) when psycopg_pool is
installed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlq import App  # noqa: E402
from sqlq.config import libpq_url  # noqa: E402
from sqlq.db import ConnectionPool, usable  # noqa: E402

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"


def cheap_check(conn: psycopg.Connection) -> None:
    """``db.usable`` as psycopg_pool's ``check=`` callback (it raises to mean 'not usable'). The
    connection is closed first: psycopg_pool discards only a connection libpq knows is bad, and
    would otherwise hand the same dead one out again and again until its timeout."""
    if not usable(conn):
        conn.close()
        raise psycopg.OperationalError("idle connection lost")


def checkout_us(pool: Any, n: int = 20_000) -> float:
    """µs per check-out and return, the best of three runs of ``n``."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            with pool.connection():
                pass
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def usable_us(url: str, n: int = 20_000) -> float:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        start = time.perf_counter()
        for _ in range(n):
            usable(conn)
        return (time.perf_counter() - start) / n * 1e6


def psycopg_pool(url: str, check: Any) -> Any:
    from psycopg_pool import ConnectionPool as PsycopgPool

    pool = PsycopgPool(libpq_url(url), min_size=1, max_size=25, kwargs={"autocommit": True},
                       check=check, open=True)
    pool.wait()
    return pool


def delays_per_s(app: App, n: int) -> float:
    task = app.tasks["bench_pool.noop"]
    for i in range(50):  # warm: a connection in the pool, statements prepared
        task.delay(-i)
    start = time.perf_counter()
    for i in range(n):
        task.delay(i)
    return n / (time.perf_counter() - start)


def checkout_figures(url: str) -> dict[str, float]:
    """µs per check-out for each pool and check, and for ``db.usable`` alone (about a second)."""
    from psycopg_pool import ConnectionPool as PsycopgPool

    figures: dict[str, float] = {"usable_us": usable_us(url)}
    ours = ConnectionPool(url)
    figures["sqlq_checkout_us"] = checkout_us(ours)
    ours.dispose()
    for key, check in (("psycopg_pool_checkout_us", cheap_check), ("psycopg_pool_nocheck_checkout_us", None),
                       ("psycopg_pool_roundtrip_checkout_us", PsycopgPool.check_connection)):
        pool = psycopg_pool(url, check)
        figures[key] = checkout_us(pool, 5_000 if key.endswith("roundtrip_checkout_us") else 20_000)
        pool.close()
    return figures


def checkout_line(figures: dict[str, float]) -> str:
    return (f"pool check-out: sqlq {figures['sqlq_checkout_us']:.1f} µs (its check {figures['usable_us']:.1f} µs), "
            f"psycopg_pool {figures['psycopg_pool_checkout_us']:.1f} µs with the same check "
            f"({figures['psycopg_pool_nocheck_checkout_us']:.1f} µs without, "
            f"{figures['psycopg_pool_roundtrip_checkout_us']:.0f} µs with its round-trip check)")


def outage_figures(idle: int = 3, outage_s: float = 2.0) -> dict[str, str]:
    """On a private cluster (tests/cluster.py): for each pool holding ``idle`` idle connections,
    the first check-out after a server restart, and a check-out made while the server is down
    for ``outage_s`` seconds (and brought back meanwhile)."""
    import threading

    from tests.cluster import PrivateCluster

    out: dict[str, str] = {}
    with PrivateCluster() as cluster:
        for label, make in (("sqlq", lambda: ConnectionPool(cluster.url)),
                            ("psycopg_pool", lambda: psycopg_pool(cluster.url, cheap_check))):
            pool = make()
            try:
                held = [pool.connection() for _ in range(idle)]
                for ctx in held:
                    ctx.__enter__()
                for ctx in held:
                    ctx.__exit__(None, None, None)
                cluster.restart()
                start = time.perf_counter()
                with pool.connection() as conn:
                    conn.execute("SELECT 1")
                out[f"{label}_after_restart"] = f"{(time.perf_counter() - start) * 1000:.0f} ms"
                cluster.stop()
                back = threading.Timer(outage_s, cluster.start)
                back.start()
                start = time.perf_counter()
                try:
                    with pool.connection() as conn:
                        conn.execute("SELECT 1")
                    outcome = "connected"
                except Exception as exc:  # what the caller gets is the measurement
                    outcome = type(exc).__name__
                out[f"{label}_during_outage"] = f"{outcome} after {(time.perf_counter() - start) * 1000:.0f} ms"
                back.join()
                cluster.wait_ready()
            finally:
                (pool.dispose if isinstance(pool, ConnectionPool) else pool.close)()
    return out


def measure(url: str, delays: int = 3000, rounds: int = 5) -> dict[str, Any]:
    figures: dict[str, Any] = checkout_figures(url)

    schema = f"bench_pool_{uuid.uuid4().hex[:8]}"
    app = App("bench_pool", database_url=url, schema=schema)
    app.task(name="bench_pool.noop")(lambda i=None: None)
    app.migrate()
    runs: dict[str, list[float]] = {"sqlq": [], "psycopg_pool": []}
    try:
        for _ in range(rounds):
            for which in runs:
                app.close()
                if which == "psycopg_pool":
                    # App.connection() uses .connection()
                    app._connections._pool = psycopg_pool(app.database_url, cheap_check)
                try:
                    runs[which].append(delays_per_s(app, delays))
                finally:
                    _drop_psycopg_pool(app)
                with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                    conn.execute(f'TRUNCATE "{schema}".jobs')
    finally:
        _drop_psycopg_pool(app)
        app.close()
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    figures["sqlq_delay_per_s"] = statistics.median(runs["sqlq"])
    figures["psycopg_pool_delay_per_s"] = statistics.median(runs["psycopg_pool"])
    figures["delay_runs"] = runs  # type: ignore[assignment]
    return figures


def _drop_psycopg_pool(app: App) -> None:
    connections = app._connections
    if connections._pool is not None and not isinstance(connections._pool, ConnectionPool):
        connections._pool.close()
        connections._pool = None


def summary(figures: dict[str, Any]) -> str:
    ours, theirs = figures["sqlq_delay_per_s"], figures["psycopg_pool_delay_per_s"]
    return (checkout_line(figures) + f"; delay() 1-by-1: {ours:,.0f}/s on sqlq's pool, {theirs:,.0f}/s on "
            f"psycopg_pool ({theirs / ours:.3f}x)")


def main() -> int:
    try:
        import psycopg_pool  # noqa: F401
    except ImportError:
        print("bench_pool: psycopg_pool is not installed (pip install psycopg-pool)", file=sys.stderr)
        return 1
    url = os.environ.get("SQLQ_DATABASE_URL") or LOCAL_URL
    figures = measure(url, int(os.environ.get("BENCH_POOL_DELAYS", "3000")),
                      int(os.environ.get("BENCH_POOL_ROUNDS", "5")))
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(summary(figures))
    if os.environ.get("BENCH_POOL_OUTAGE", "1") != "0":
        for key, value in outage_figures().items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
