"""The example Django project (examples/django_project) set up once in a test process, its own
tables in a schema of their own; sqlq's tables are in each test's schema (the ``schema`` fixture).

Django's settings are read once per process, so the project's schema is made once, at the first
use, and dropped when the process exits.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import uuid

import psycopg

from tests.apps.harness import ROOT

PROJECT = ROOT / "examples" / "django_project"


@functools.cache
def setup(database_url: str) -> str:
    """Set the project up (django.setup(), its migrations); returns the schema of its tables."""
    import django
    from django.core.management import call_command

    schema = f"dj_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    atexit.register(_drop, database_url, schema)
    os.environ["PROJ_DB_SCHEMA"] = schema
    os.environ["DJANGO_SETTINGS_MODULE"] = "proj.settings"
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    django.setup()
    call_command("migrate", verbosity=0)
    return schema


def _drop(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def environment(database_url: str, sqlq_schema: str, project_schema: str) -> dict[str, str]:
    """The environment of a subprocess running the project (manage.py) on these schemas."""
    env = dict(os.environ, PROJ_DB_SCHEMA=project_schema, SQLQ_SCHEMA=sqlq_schema,
               DJANGO_SETTINGS_MODULE="proj.settings",
               PYTHONPATH=os.pathsep.join([str(PROJECT), str(ROOT)]))
    env["SQLQ_DATABASE_URL"] = database_url
    return env
