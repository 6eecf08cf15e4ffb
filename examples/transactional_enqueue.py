"""Enqueue inside your own transaction: the job exists exactly when your rows do.

    python examples/transactional_enqueue.py

Uses SQLQ_DATABASE_URL / DATABASE_URL, else the embedded development database. A worker
(``sqlq -A examples.tasks worker``) ships the committed order; the rolled-back one never had a job.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from examples.tasks import app, ship_order  # noqa: E402


def create_orders_table() -> None:
    with app.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS demo_orders ("
                          "id serial PRIMARY KEY, item text NOT NULL, status text NOT NULL DEFAULT 'new', "
                          "tracking text)"))


def place_order_with_sqlalchemy(item: str, fail: bool = False) -> str | None:
    """The order row and its shipping job commit together (SQLAlchemy Session)."""
    with Session(app.engine) as session:
        try:
            order_id = session.execute(text("INSERT INTO demo_orders (item) VALUES (:i) RETURNING id"),
                                       {"i": item}).scalar_one()
            result = ship_order.apply_async((order_id,), connection=session)
            if fail:
                raise RuntimeError("payment declined")
            session.commit()
            return result.id
        except RuntimeError:
            session.rollback()
            return None


def place_order_with_psycopg(item: str) -> str:
    """The same with a plain psycopg connection."""
    with psycopg.connect(app.database_url.replace("+psycopg", "")) as conn:  # one transaction
        order_id = conn.execute("INSERT INTO demo_orders (item) VALUES (%s) RETURNING id", (item,)).fetchone()[0]
        result = ship_order.apply_async((order_id,), connection=conn)
    return result.id  # the `with` block committed both


def main() -> None:
    app.migrate()
    create_orders_table()
    committed = place_order_with_sqlalchemy("teapot")
    rolled_back = place_order_with_sqlalchemy("kettle", fail=True)
    via_psycopg = place_order_with_psycopg("mug")
    print(f"committed order: job {committed}")
    print(f"rolled-back order: job {rolled_back} (none: nothing was enqueued)")
    print(f"psycopg order: job {via_psycopg}")
    if "--wait" in sys.argv:
        for job_id in (committed, via_psycopg):
            print(f"  {job_id}: shipped with tracking {app.AsyncResult(job_id).get(timeout=30)}")


if __name__ == "__main__":
    main()
