"""Celery's Tasks guide, "Names": :file:`tasks.py` (only the import and the broker URL changed)."""

from sqlq import Celery

app = Celery('tasks', broker='postgresql://localhost/proj')


@app.task
def add(x, y):
    return x + y
