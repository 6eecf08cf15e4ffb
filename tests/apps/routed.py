"""An importable app with routes declared in config (the CLI's -A and `sqlq routes apply` need one).

Database URL and schema come from SQLQ_DATABASE_URL / SQLQ_SCHEMA, set by the test fixtures.
"""

from __future__ import annotations

from sqlq import App, Exchange, Queue, binding

app = App("tests.apps.routed")

media = Exchange("media", type="topic", alternate_queue="unrouted")
events = Exchange("events", type="fanout")

app.conf.task_queues = [
    Queue("video", media, routing_key="media.video.#"),
    Queue("audio", bindings=[binding(media, "media.audio.*"), binding(media, "*.podcast")]),
    Queue("audit", events),
    Queue("mail", events),
]


@app.task(name="tests.routed.echo")
def echo(value):
    return value


def route_by_size(name, args, kwargs, options, task=None, **kw):
    """A router function named by dotted path in task_routes (Celery's signature)."""
    if name == "tests.routed.echo" and args and args[0] == "big":
        return {"queue": "bulk", "priority": 5}
    return None
