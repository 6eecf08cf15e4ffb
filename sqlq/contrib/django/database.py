"""Django's database as sqlq's: ``DATABASES['default']`` as the database URL, and a Django
connection (``django.db.connection``) as ``connection=`` of a send, so that a job written inside
``transaction.atomic()`` commits and rolls back with the block's own writes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import psycopg

from ...errors import ConfigurationError

#: The Django database engines that are PostgreSQL.
POSTGRES_ENGINES = frozenset({"django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis"})
#: OPTIONS Django reads itself; the rest it hands to psycopg.connect as libpq parameters.
_DJANGO_OPTIONS = frozenset({"isolation_level", "server_side_binding", "assume_role", "pool", "cursor_factory",
                             "context"})


def default_database_url() -> str:
    """``DATABASES['default']`` as a ``postgresql://`` URL (its libpq OPTIONS as query parameters).
    A default database that is not PostgreSQL is an error: sqlq's jobs live in PostgreSQL."""
    from django.conf import settings

    database = settings.DATABASES.get("default")
    if not database:
        raise ConfigurationError("Django's DATABASES has no 'default' database for sqlq; set "
                                 "SQLQ_DATABASE_URL (or the app's database_url) to a PostgreSQL database")
    return database_url(database)


def database_url(database: dict[str, Any]) -> str:
    """One entry of Django's ``DATABASES`` as a ``postgresql://`` URL."""
    engine = database.get("ENGINE", "")
    if engine not in POSTGRES_ENGINES:
        raise ConfigurationError(
            f"Django's DATABASES['default'] uses {engine!r}, and sqlq needs PostgreSQL "
            f"(django.db.backends.postgresql): set SQLQ_DATABASE_URL (or the app's database_url) to a "
            f"PostgreSQL database for sqlq's jobs")
    name = database.get("NAME") or ""
    options = {k: v for k, v in (database.get("OPTIONS") or {}).items() if k not in _DJANGO_OPTIONS}
    if not name and "service" not in options:
        raise ConfigurationError("Django's DATABASES['default'] names no database (NAME); sqlq needs one")
    user, password = database.get("USER") or "", database.get("PASSWORD") or ""
    host, port = str(database.get("HOST") or ""), str(database.get("PORT") or "")
    query = dict(options)
    if host.startswith("/"):  # a Unix socket directory: libpq's host parameter, not a URL host
        query["host"], host = host, ""
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + ("@" if user else "")
    netloc = auth + host + (":" + port if port and host else "")
    if port and not host:
        query["port"] = port
    suffix = "?" + urlencode({k: str(v) for k, v in query.items()}, quote_via=quote) if query else ""
    return f"postgresql://{netloc}/{quote(name, safe='')}{suffix}"


def psycopg_connection(connection: Any) -> psycopg.Connection:
    """The psycopg 3 connection under a Django database connection (connected now if it was not):
    a send on it is part of the connection's transaction, the ``atomic()`` block's when one is open,
    else committed at once as Django's autocommit does."""
    vendor = getattr(connection, "vendor", None)
    alias = getattr(connection, "alias", "?")
    if vendor != "postgresql":
        raise ConfigurationError(
            f"connection= is Django's database {alias!r}, which is {vendor or 'not a database connection'}; "
            f"sqlq writes jobs to PostgreSQL: pass the connection of a PostgreSQL database "
            f"(django.db.connections['...']), or none (sqlq's own)")
    connection.ensure_connection()
    raw = connection.connection
    if not isinstance(raw, psycopg.Connection):
        raise ConfigurationError(
            f"Django's database {alias!r} connects with {type(raw).__module__} (psycopg2?), and sqlq writes on "
            f"psycopg 3 connections: install psycopg (Django uses it when it is installed)")
    return raw
