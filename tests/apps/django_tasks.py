"""django.tasks functions for tests/test_django_tasks.py (importable once the example project is
set up: tests/apps/django_project.py)."""

from __future__ import annotations

from typing import Any

from django.tasks import TaskContext, task


@task
def add(x: int, y: int) -> int:
    return x + y


@task(priority=-5)
def fail(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def attempt(context: TaskContext, n: int) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id, "n": n}


@task
async def double_later(x: int) -> int:
    return x * 2


@task(queue_name="emails", priority=10)
def email(to: str) -> str:
    return f"sent to {to}"
