"""``App.autodiscover_tasks()`` without packages: the ``tasks`` modules of a Django project's
installed apps, as Celery's Django fixup finds them."""

from __future__ import annotations

import os
import sys

from ...errors import ConfigurationError


def require_django_project() -> None:
    """Raise unless this process runs a Django project (settings configured, or named by
    ``DJANGO_SETTINGS_MODULE`` to be loaded when first read)."""
    django_conf = sys.modules.get("django.conf")
    if os.environ.get("DJANGO_SETTINGS_MODULE") or (django_conf is not None and django_conf.settings.configured):
        return
    raise ConfigurationError(
        "autodiscover_tasks() without packages imports the tasks modules of a Django project's "
        "INSTALLED_APPS, and this process has no Django settings: set DJANGO_SETTINGS_MODULE first "
        "(os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')), or name the packages, "
        "autodiscover_tasks(['proj.orders', ...])")


def installed_apps() -> list[str]:
    """The names of the project's installed apps. Django is set up first when it is not yet (a
    worker, a beat: Celery's fixup does the same), since a tasks module usually imports models."""
    import django
    from django.apps import apps

    if not apps.apps_ready:
        django.setup()
    return [config.name for config in apps.get_app_configs()]
