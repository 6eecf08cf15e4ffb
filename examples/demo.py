"""`make demo`: a worker, a producer and their results, end to end.

With no database URL configured this runs on the embedded development database in ./.sqlq/
(set SQLQ_DATABASE_URL to use your own PostgreSQL). It migrates, starts `sqlq worker` as a real
process, sends one task of each kind, prints what came back, and stops the worker cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from psycopg import sql  # noqa: E402

from examples import transactional_enqueue as shop  # noqa: E402
from examples.tasks import add, always_down, app, divide, flaky_fetch, slow_greeting  # noqa: E402


def start_worker() -> subprocess.Popen:
    env = dict(os.environ, SQLQ_DATABASE_URL=app.database_url)
    command = [sys.executable, "-m", "sqlq", "-A", "examples.tasks", "worker", "-c", "2", "-l", "info"]
    print(f"$ {' '.join(command[2:])}", flush=True)
    return subprocess.Popen(command, cwd=ROOT, env=env)


def show(label: str, result) -> None:
    value = result.get(timeout=60, propagate=False)
    shown = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else repr(value)
    print(f"  {label:<44} {result.state:<8} {shown}", flush=True)


def report() -> None:
    """Reporting is a query: outcomes per task, straight from the results table."""
    query = sql.SQL("SELECT task, state, count(*) FROM {} GROUP BY 1, 2 ORDER BY 1, 2").format(
        sql.Identifier(app.conf.schema, "results"))
    with app.connection() as conn:
        print(f"\n{query.as_string(conn)};")
        for task, state, count in conn.execute(query):
            print(f"  {task:<36} {state:<8} {count}")


def main() -> int:
    started = time.monotonic()
    app.migrate()
    shop.create_orders_table()
    worker = start_worker()
    try:
        print("\nsending tasks ...", flush=True)
        results = [
            ("add.delay(2, 3)", add.delay(2, 3)),
            ("add.apply_async((20, 22), countdown=1)", add.apply_async((20, 22), countdown=1)),
            ("flaky_fetch.delay(...)  # retries twice", flaky_fetch.delay("https://example.org")),
            ("slow_greeting.delay('world')  # async def", slow_greeting.delay("world")),
            ("divide.delay(1, 0)  # fails", divide.delay(1, 0)),
            ("always_down.delay(...)  # autoretry, gives up", always_down.delay("db-7")),
        ]
        committed = shop.place_order_with_sqlalchemy("teapot")
        rolled_back = shop.place_order_with_sqlalchemy("kettle", fail=True)
        results.append(("ship_order (enqueued in a committed txn)", app.AsyncResult(committed)))
        print(f"  order enqueued in a rolled-back transaction: job {rolled_back} (never existed)\n", flush=True)
        for label, result in results:
            show(label, result)
        report()
    finally:
        print("\nstopping the worker (SIGTERM: warm shutdown) ...", flush=True)
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    print(f"worker exited with {code}; demo took {time.monotonic() - started:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
