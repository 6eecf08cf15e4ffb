"""`proj.tasks.*`: the task names the README's command lines and schedules use."""

from __future__ import annotations

from proj import app


@app.task
def add(x, y):
    return x + y


@app.task
def cleanup():
    return "cleaned"


@app.task
def report(kind="daily"):
    return kind


@app.task
def ping(n):
    return n


@app.task
def transcode(video_id):
    return video_id


@app.task
def send(to):
    return to


@app.task
def on_order(order_id):
    return order_id
