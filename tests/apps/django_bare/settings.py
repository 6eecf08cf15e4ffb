import os
from urllib.parse import urlsplit

SECRET_KEY = "bare-project"
USE_TZ = True
INSTALLED_APPS = ["sqlq.contrib.django", "tests.apps.django_bare"]
_url = urlsplit(os.environ.get("BARE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": _url.path.lstrip("/"),
                         "USER": _url.username or "", "PASSWORD": _url.password or "",
                         "HOST": _url.hostname or "", "PORT": _url.port or ""}}
TASKS = {"default": {"BACKEND": "sqlq.contrib.django.tasks.SqlqBackend"}}
