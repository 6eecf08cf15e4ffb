"""Routed enqueue: ``delay()`` through a topic exchange, one statement per call, in jobs/s.

``task_routes`` sends the task to a topic exchange with six bindings (``*`` and ``#`` patterns); the
match runs in SQL inside the INSERT, so each ``delay()`` stays one round trip. Compare with the plain
``delay()`` rate (``python -m benchmarks.bench_routed`` prints both).

    python -m benchmarks.bench_routed --n 5000

Uses ``benchmarks.bench_tasks`` (``SQLQ_DATABASE_URL`` / ``SQLQ_SCHEMA``); ``main()`` migrates the
schema first. ``bench_routed_enqueue(app, n)`` is what ``benchmarks/bench_sqlq.py`` calls.
"""

from __future__ import annotations

import argparse
import time

from sqlq import App, Exchange, Queue
from sqlq.routing import apply_routes

TASK = "benchmarks.bench_tasks.noop"
EXCHANGE = "bench.media"
# Six bindings, every one evaluated per call; the key used, 'text.plain.note', matches only 'text.#',
# so each call writes one job, like the plain delay() it is compared with.
QUEUES = [
    Queue("bench_video", Exchange(EXCHANGE, type="topic"), routing_key="media.video.*"),
    Queue("bench_all", EXCHANGE, routing_key="media.#"),
    Queue("bench_audio", EXCHANGE, routing_key="media.audio.*"),
    Queue("bench_hd", EXCHANGE, routing_key="*.*.hd"),
    Queue("bench_text", EXCHANGE, routing_key="text.#"),
    Queue("bench_none", EXCHANGE, routing_key="never.matched"),
]


def _task(app: App):
    task = app.tasks.get(TASK)
    if task is None:
        raise SystemExit(f"{TASK} is not registered in {app!r}; use benchmarks.bench_tasks.app")
    return task


def bench_routed_enqueue(app: App, n: int) -> float:
    """Jobs/s for n ``delay()`` calls routed by ``task_routes`` through a topic exchange with six
    bindings (each call one statement, writing one job)."""
    task = _task(app)
    apply_routes(app, QUEUES)
    saved = app.conf.task_routes
    app.conf.task_routes = {TASK: {"exchange": EXCHANGE, "routing_key": "text.plain.note"}}
    try:
        for i in range(50):  # warm-up: connections, prepared statements
            task.delay(i)
        start = time.perf_counter()
        for i in range(n):
            task.delay(i)
        elapsed = time.perf_counter() - start
    finally:
        app.conf.task_routes = saved
    return n / elapsed


def bench_plain_enqueue(app: App, n: int) -> float:
    """The same loop without routing (``delay()`` straight to the default queue), for comparison."""
    task = _task(app)
    for i in range(50):
        task.delay(i)
    start = time.perf_counter()
    for i in range(n):
        task.delay(i)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="calls to time (default 5000)")
    args = parser.parse_args(argv)
    from benchmarks.bench_tasks import app

    app.migrate()
    try:
        routed = bench_routed_enqueue(app, args.n)
        plain = bench_plain_enqueue(app, args.n)
    finally:
        app.close()
    print(f"routed delay() through a topic exchange: {routed:,.0f} jobs/s")
    print(f"plain delay():                           {plain:,.0f} jobs/s ({routed / plain:.0%} of it routed)")


if __name__ == "__main__":
    main()
