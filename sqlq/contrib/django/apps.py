"""The Django app ``sqlq.contrib.django`` (label ``sqlq``)."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class SqlqConfig(AppConfig):
    """Adds the ``sqlq`` management command, the admin pages over sqlq's tables, and closes a
    worker thread's stale Django connections around each task, as Celery's Django fixup does."""

    name = "sqlq.contrib.django"
    label = "sqlq"
    verbose_name = "sqlq"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ... import signals

        signals.task_prerun.connect(_close_old_connections, dispatch_uid="sqlq.contrib.django.prerun")
        signals.task_postrun.connect(_close_old_connections, dispatch_uid="sqlq.contrib.django.postrun")


def _close_old_connections(task: Any = None, **_: Any) -> None:
    """A task's Django connections past their CONN_MAX_AGE, or broken, are closed before and after
    it runs (Django does this around each request), so a long-running worker does not keep using
    a connection the server dropped. Not for an eager run: it runs inside its caller, whose open
    transaction (``atomic()``) Django would take for a connection to close, as Celery's fixup
    knows."""
    if task is not None and task.request.is_eager:
        return
    from django.db import close_old_connections

    close_old_connections()
