"""The `proj` module the README's commands name (`sqlq -A proj ...`): its tasks, routes and schedules.

tests/test_readme.py puts tests/readme_proj on the path of README commands and runs a worker of this
app while README Python blocks run, so `add.delay(2, 3).get()` in the README has a worker to answer.
It mirrors what the README declares: keep it in step when the README adds a task it waits for.
Database URL and schema come from the environment (SQLQ_DATABASE_URL), like any user's app.
"""

from __future__ import annotations

from sqlq import App, Exchange, Queue, binding, crontab

app = App("proj")

media = Exchange("media", type="topic", alternate_queue="unrouted")
events = Exchange("events", type="fanout")
app.conf.task_queues = [
    Queue("video", media, routing_key="media.video.#"),
    Queue("audio", bindings=[binding(media, "media.audio.*"), binding(media, "*.podcast")]),
    Queue("audit", events),
    Queue("mail", events),
]
app.conf.beat_schedule = {
    "cleanup": {"task": "proj.tasks.cleanup", "schedule": crontab(minute="*/15")},
    "ping": {"task": "proj.tasks.ping", "schedule": 30.0, "args": [1],
             "options": {"queue": "low", "priority": 5, "expires": 25}},
}

# Every queue a README block sends to and then waits on.
QUEUES = ["default", "io", "video", "audio", "audit", "mail", "unrouted"]


@app.task
def add(x, y):
    return x + y


@app.task(bind=True, max_retries=5, autoretry_for=(ConnectionError,), retry_backoff=True,
          soft_time_limit=30, time_limit=60, queue="io")
def fetch(self, url):
    return url


@app.task
def transcode(video_id):
    return video_id


@app.task
def notify(event):
    return event


@app.task(bind=True)
def resize(self, paths):  # README "Workflows": progress with update_state
    for i, _path in enumerate(paths):
        self.update_state(state="PROGRESS", meta={"current": i + 1, "total": len(paths)})
    return len(paths)


@app.task
def tsum(numbers):  # README "Workflows": a chord's body
    return sum(numbers)


from proj import tasks  # noqa: E402,F401  (the proj.tasks.* names the README's commands use)
