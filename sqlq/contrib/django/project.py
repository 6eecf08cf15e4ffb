"""The sqlq app of a Django project, for the parts of ``sqlq.contrib.django`` that are not handed
one (the management command, the admin, the ``django.tasks`` backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...app import App


def get_app(path: str | None = None) -> App:
    """The project's app: the one ``path`` names (``'proj.celery:app'``, as ``sqlq -A`` takes it),
    else the current app (the one ``proj/celery.py`` made, imported by ``proj/__init__.py`` in
    Celery's layout), else a new one configured from the ``SQLQ_*`` Django settings (its database:
    ``DATABASES['default']``) that imports the installed apps' ``tasks`` modules when finalized, so
    a project that uses sqlq only through ``django.tasks`` needs no app module of its own."""
    from django.conf import settings

    from ... import current
    from ...app import App
    from ...loading import load_app

    if path:
        return load_app(path)
    if current._current is not None:
        return current._current
    app = App("django", config_source=settings, namespace="SQLQ", set_as_current=False)
    app.autodiscover_tasks()  # (at finalize: a worker finds the installed apps' django.tasks functions)
    with current._lock:
        if current._current is None:
            current._current = app
        return current._current
