"""The project's sqlq app, in the layout of Celery's "First steps with Django": only the import
differs (``from sqlq import Celery`` for ``from celery import Celery``)."""

import os

from sqlq import Celery

# Set the default Django settings module for the 'celery' program.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")

# Using a string here means the worker doesn't have to serialize the configuration object to
# child processes. namespace='CELERY' means all celery-related configuration keys should have a
# `CELERY_` prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")

# Load task modules from all registered Django apps.
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    print(f"Request: {self.request!r}")
