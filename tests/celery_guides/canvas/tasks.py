"""The tasks of Celery's "Canvas: Designing Work-flows" guide, as the guide writes them, with the
import changed (``from celery import Celery`` → ``from sqlq import Celery``) and the broker URL a
PostgreSQL one; the test's SQLQ_DATABASE_URL / SQLQ_SCHEMA point it at the test's schema."""

from sqlq import Celery

app = Celery("tasks", broker="postgresql://localhost/proj")

#: What log_error wrote (the guide writes to a file: a list here, read by the test).
ERRORS: list[str] = []


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def tsum(numbers):
    return sum(numbers)


@app.task
def raising_task():
    raise ValueError("something something")


@app.task
def log_error(request, exc, traceback):
    ERRORS.append(f"--\n\n{request.id} {exc} {traceback}")


@app.task
def on_chord_error(request, exc, traceback):
    ERRORS.append(f"Task {request.id!r} raised error: {exc!r}")
