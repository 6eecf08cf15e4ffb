"""sqlq's tables as Django models, for the admin and for ORM reads: ``managed = False``, so Django's
migrations never create or change them (sqlq's own migrations own the schema: ``manage.py sqlq
migrate``). The schema is the project's app's (``conf.schema``), read when the models are loaded.
Only the columns worth showing are mapped; writes go through sqlq (the admin's actions)."""

from __future__ import annotations

from typing import Any

from django.db import models

from .project import get_app


def table(name: str) -> str:
    """sqlq's table ``name`` in the app's schema, as Django quotes it (``"schema"."name"``); this
    app's migration names its models' tables with it too, so a schema of another name leaves
    ``makemigrations`` nothing to do."""
    return f'{get_app().conf.schema}"."{name}'


class TextArrayField(models.Field):
    """A ``text[]`` column read as a list of strings (psycopg's own reading), without requiring
    ``django.contrib.postgres`` in ``INSTALLED_APPS`` for ArrayField."""

    def db_type(self, connection: Any) -> str:
        return "text[]"


class Job(models.Model):
    """A job waiting (available, scheduled) or running: a row of ``jobs``."""

    id = models.UUIDField(primary_key=True)
    seq = models.BigIntegerField()
    task = models.TextField()
    queue = models.TextField()
    priority = models.SmallIntegerField()
    state = models.TextField()
    args = models.JSONField(null=True)
    kwargs = models.JSONField(null=True)
    headers = models.JSONField()
    run_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True)
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    attempt = models.IntegerField()
    retries = models.IntegerField()
    worker_id = models.UUIDField(null=True)
    group_id = models.UUIDField(null=True)
    last_error = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = table("jobs")
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.task}[{self.id}] {self.state}"


class Result(models.Model):
    """A finished job (SUCCESS, FAILURE with its traceback, REVOKED, EXPIRED): a row of ``results``."""

    id = models.UUIDField(primary_key=True)
    task = models.TextField()
    queue = models.TextField()
    priority = models.SmallIntegerField()
    state = models.TextField()
    args = models.JSONField(null=True)
    kwargs = models.JSONField(null=True)
    result = models.JSONField(null=True)
    exc_type = models.TextField(null=True)
    exc_message = models.TextField(null=True)
    traceback = models.TextField(null=True)
    enqueued_at = models.DateTimeField(null=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField()
    attempts = models.IntegerField()
    retries = models.IntegerField()
    worker_id = models.UUIDField(null=True)
    group_id = models.UUIDField(null=True)

    class Meta:
        managed = False
        db_table = table("results")
        ordering = ["-finished_at"]

    def __str__(self) -> str:
        return f"{self.task}[{self.id}] {self.state}"


class Worker(models.Model):
    """A running worker's heartbeat row: a row of ``workers``."""

    id = models.UUIDField(primary_key=True)
    hostname = models.TextField()
    pid = models.IntegerField()
    queues = TextArrayField()
    concurrency = models.IntegerField()
    pool = models.TextField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    lock_lost_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = table("workers")
        ordering = ["hostname", "pid"]

    def __str__(self) -> str:
        return f"{self.hostname} (pid {self.pid})"


class Schedule(models.Model):
    """A periodic task (``beat_schedule`` or ``sqlq schedule add``): a row of ``schedules``."""

    name = models.TextField(primary_key=True)
    task = models.TextField()
    args = models.JSONField()
    kwargs = models.JSONField()
    options = models.JSONField()
    cron = models.TextField(null=True)
    interval_seconds = models.FloatField(null=True)
    timezone = models.TextField()
    enabled = models.BooleanField()
    source = models.TextField()
    next_fire_at = models.DateTimeField(null=True)
    last_fire_at = models.DateTimeField(null=True)
    total_run_count = models.BigIntegerField()
    last_error = models.TextField(null=True)
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = table("schedules")
        ordering = ["name"]

    def __str__(self) -> str:
        return str(self.name)
