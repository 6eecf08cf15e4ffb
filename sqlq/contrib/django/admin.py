"""Read-only admin pages over sqlq's tables, with actions that go through sqlq itself: revoke and
run now (waiting jobs), retry (finished jobs), run now, pause and resume (schedules). Nothing can
be added, edited or deleted here: a job's row is sqlq's to change."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ...enqueue import new_job_id
from ...errors import SqlqError
from ...periodic import definitions
from .models import Job, Result, Schedule, Worker
from .project import get_app


class ReadOnlyAdmin(admin.ModelAdmin):
    """Every field shown, none editable; no add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _ids(queryset: QuerySet[Any]) -> list[str]:
    return [str(pk) for pk in queryset.values_list("pk", flat=True)]


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("id", "task", "queue", "state", "priority", "run_at", "attempt", "retries", "enqueued_at")
    list_filter = ("state", "queue", "task")
    search_fields = ("id", "task")
    actions = ("revoke", "run_now")

    @admin.action(description="Revoke the selected waiting jobs")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        app = get_app()
        with app.connection() as conn:
            revoked = app.store.revoke(conn, _ids(queryset), expires=float(app.conf.worker_revoke_expires))
        self.message_user(request, f"{revoked} job(s) revoked (a running job belongs to its worker and is left alone)")

    @admin.action(description="Run the selected scheduled jobs now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        app = get_app()
        with app.connection() as conn:
            moved = app.store.run_now(conn, _ids(queryset))
        self.message_user(request, f"{moved} scheduled job(s) made due now")


@admin.register(Result)
class ResultAdmin(ReadOnlyAdmin):
    list_display = ("id", "task", "state", "exc_type", "finished_at", "attempts", "retries")
    list_filter = ("state", "task", "queue")
    search_fields = ("id", "task", "exc_type", "exc_message")
    actions = ("retry",)

    @admin.action(description="Retry the selected jobs (a new job with the same arguments)")
    def retry(self, request: HttpRequest, queryset: QuerySet[Result]) -> None:
        app = get_app()
        with app.connection() as conn:
            sent = sum(app.store.retry_result(conn, job_id, new_job_id()) for job_id in _ids(queryset))
        self.message_user(request, f"{sent} job(s) enqueued again")


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = ("hostname", "pid", "pool", "concurrency", "queues", "started_at", "heartbeat_at")


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    list_display = ("name", "task", "cron", "interval_seconds", "enabled", "next_fire_at", "last_fire_at",
                    "total_run_count", "last_error")
    list_filter = ("enabled", "source")
    search_fields = ("name", "task")
    actions = ("run_now", "pause", "resume")

    @admin.action(description="Run the selected schedules' tasks now (their ticks do not move)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, definitions.run_now, "sent")

    @admin.action(description="Pause the selected schedules")
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, definitions.pause_schedule, "paused")

    @admin.action(description="Resume the selected schedules")
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, definitions.resume_schedule, "resumed")

    def _each(self, request: HttpRequest, queryset: QuerySet[Schedule], operation: Any, done: str) -> None:
        app = get_app()
        count = 0
        for name in queryset.values_list("name", flat=True):
            try:
                operation(app, name)
                count += 1
            except SqlqError as exc:  # (an unregistered task, a schedule removed meanwhile): said, not hidden
                self.message_user(request, f"{name}: {exc}", level=messages.ERROR)
        self.message_user(request, f"{count} schedule(s) {done}")
