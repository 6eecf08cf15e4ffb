"""One settings object for an app: defaults, ``SQLQ_*`` environment variables, config objects.

Settings are plain attributes so Celery users can write ``app.conf.task_serializer = 'json'`` or
``app.conf.update(...)``. Environment variables override what code says, because the same code is
deployed to machines that differ only in their environment.

A setting's variable is read through ``os.environ`` once, the first time the setting is read, and
kept: several settings are read on every ``delay()``, and a lookup in ``os.environ`` costs more
than the rest of reading a setting. ``Settings.reload_environment()`` (and ``App.close()``) makes
the next reads look again.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError, DatabaseURLError
from .names import validate_identifier, validate_queue

#: Every setting with its default. The README's configuration table is written from this dict.
DEFAULTS: dict[str, Any] = {
    "database_url": None,
    "schema": "sqlq",
    "default_queue": "default",
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "task_acks_late": True,
    "task_default_priority": 0,
    "task_routes": None,
    "task_queues": None,
    "task_default_exchange": None,
    "task_default_routing_key": None,
    "task_default_exchange_type": "direct",
    "task_annotations": None,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_track_started": True,  # sqlq knows a job is running from its row; False reports PENDING as Celery does
    "task_ignore_result": False,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_default_rate_limit": None,
    "worker_disable_rate_limits": False,
    "enable_utc": True,
    "imports": (),
    "result_expires": 86400,
    "worker_concurrency": None,  # None: the number of CPUs
    "worker_pool": "prefork",
    "worker_prefetch_multiplier": 4,
    "worker_max_tasks_per_child": None,
    "worker_poll_interval": 1.0,
    "worker_heartbeat_interval": 5.0,
    "worker_lost_timeout": 30.0,
    "worker_lost_max_attempts": 3,
    "worker_shutdown_grace": 30.0,
    "worker_maintenance_interval": 5.0,
    "database_wait_timeout": None,  # None: workers and beats wait for the database at start for ever
    "timezone": "UTC",
    "beat_schedule": {},
    "beat_catchup": "latest",
    "beat_backfill_limit": 100,
    "beat_interval": 1.0,
    "beat_schedule_owner": None,  # None: the app's name
}

_INT = {"task_default_priority", "result_expires", "worker_concurrency", "worker_prefetch_multiplier",
        "worker_max_tasks_per_child", "worker_lost_max_attempts", "beat_backfill_limit"}
_FLOAT = {"worker_poll_interval", "worker_heartbeat_interval", "worker_lost_timeout",
          "worker_shutdown_grace", "worker_maintenance_interval", "beat_interval", "database_wait_timeout",
          "task_time_limit", "task_soft_time_limit"}
_BOOL = {"task_acks_late", "task_always_eager", "task_eager_propagates", "task_track_started",
         "task_ignore_result", "worker_disable_rate_limits", "enable_utc"}
_LIST = {"accept_content"}
#: Settings that cannot come from a flat environment string.
_NOT_FROM_ENV = {"task_routes", "task_queues", "beat_schedule", "database_url", "task_annotations", "imports"}

#: The environment variable of each setting that may come from one.
_ENV_NAMES: dict[str, str] = {key: f"SQLQ_{key.upper()}" for key in DEFAULTS if key not in _NOT_FROM_ENV}
#: What ``Settings._environment`` holds for a setting whose variable is unset (or empty).
_UNSET = object()


def _coerce(key: str, raw: str) -> Any:
    try:
        if key in _INT:
            return int(raw)
        if key in _FLOAT:
            return float(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable SQLQ_{key.upper()}={raw!r} is not a number") from None
    if key in _BOOL:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if key in _LIST:
        return [p.strip() for p in raw.split(",") if p.strip()]
    return raw


class Settings:
    """Attribute- and mapping-style access to an app's settings, with validation on write."""

    def __init__(self, **overrides: Any):
        object.__setattr__(self, "_values", dict(DEFAULTS))
        #: Each setting's environment override once read: its value, or _UNSET.
        object.__setattr__(self, "_environment", {})
        self.update(overrides)

    def __getattr__(self, key: str) -> Any:
        # Known settings are properties (below); only unknown names get here.
        raise AttributeError(f"no sqlq setting named {key!r}")

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self._values else default

    def update(self, other: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Set several settings; unknown names are rejected so a typo is not silently ignored."""
        items = dict(other or {}, **kwargs)
        for key, value in items.items():
            if key not in DEFAULTS:
                raise ConfigurationError(
                    f"unknown sqlq setting {key!r}; known settings: {', '.join(sorted(DEFAULTS))}"
                )
            if key == "schema":
                validate_identifier(value, "schema")
            if key == "default_queue":
                validate_queue(value)
            self._values[key] = value

    def from_object(self, obj: Any) -> None:
        """Copy the lower-case attributes that are sqlq settings from a module, class or dotted path."""
        if isinstance(obj, str):
            module_name, _, attr = obj.partition(":")
            try:
                obj = importlib.import_module(module_name)
            except ImportError as exc:
                raise ConfigurationError(f"cannot import config module {module_name!r}: {exc}") from exc
            if attr:
                obj = getattr(obj, attr)
        source = obj if isinstance(obj, Mapping) else {k: getattr(obj, k) for k in dir(obj)}
        self.update({k: v for k, v in source.items() if k in DEFAULTS})

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._values}

    def reload_environment(self) -> None:
        """Forget the ``SQLQ_*`` variables read so far: each setting reads its own again when it is
        next read (a deployment's environment is set before the process starts; this is for a
        process that changes its own)."""
        self._environment.clear()

    def _read_environment(self, key: str) -> Any:
        """The override of setting ``key`` from its variable (or _UNSET), kept for the next reads.
        A value that cannot be coerced raises and is not kept, so every read says what is wrong."""
        raw = os.environ.get(_ENV_NAMES[key])
        value = _coerce(key, raw) if raw else _UNSET  # an empty variable is as good as unset
        self._environment[key] = value
        return value


def _setting(key: str) -> property:
    """A setting as a property: its environment variable if set, else the value code gave. A
    property rather than ``__getattr__``, because several settings are read on every ``delay()``
    and a failed normal lookup first costs more than the read."""

    unset = _UNSET

    def read(self: Settings) -> Any:
        return self._values[key]

    def read_or_environment(self: Settings) -> Any:
        try:
            value = self._environment[key]
        except KeyError:  # not read yet
            value = self._read_environment(key)
        return self._values[key] if value is unset else value  # the deployment's environment wins

    return property(read if key in _NOT_FROM_ENV else read_or_environment)


for _key in DEFAULTS:
    setattr(Settings, _key, _setting(_key))

# --- database URLs ----------------------------------------------------------------------------

_ACCEPTED_DRIVERS = {"postgres", "postgresql", "postgresql+psycopg"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


@lru_cache(maxsize=64)
def parse_database_url(url: str) -> str:
    """Check the URL spellings users paste (Heroku's ``postgres://`` too) and return the part after
    ``scheme://``, which libpq and SQLAlchemy read alike.

    Parsed here rather than with SQLAlchemy's ``make_url`` so that ``import sqlq`` (and so a worker's
    start-up) does not pay for importing SQLAlchemy's engine; libpq parses the rest itself."""
    if not isinstance(url, str) or not url.strip():
        raise DatabaseURLError("the database URL is empty; set SQLQ_DATABASE_URL=postgresql://user@host/dbname")
    expected = "Expected postgresql://user:password@host:port/dbname"
    match = _SCHEME.match(url.strip())
    if match is None:
        raise DatabaseURLError(f"cannot parse database URL {_redact(url)!r}: no scheme://. {expected}")
    scheme, rest = match.group(1).lower(), match.group(2)
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise DatabaseURLError(f"cannot parse database URL {_redact(url)!r}: {exc}. {expected}") from None
    if scheme not in _ACCEPTED_DRIVERS:
        raise DatabaseURLError(
            f"unsupported database URL scheme {scheme!r} in {_redact(url)!r}: sqlq needs PostgreSQL; "
            f"use postgresql://, postgres:// or postgresql+psycopg://"
        )
    if not parts.path.lstrip("/"):
        raise DatabaseURLError(
            f"the database URL {_redact(url)!r} names no database; add one, e.g. postgresql://host:5432/mydb"
        )
    return rest


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + parse_database_url(url)


def libpq_url(url: str) -> str:
    """The form psycopg.connect() accepts (no ``+psycopg`` suffix)."""
    return "postgresql://" + parse_database_url(url)


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def redact_url(url: str) -> str:
    """A URL safe to print in logs and error messages."""
    return _redact(url)


def resolve_database_url(cli_url: str | None = None, app_url: str | None = None,
                         environ: Mapping[str, str] | None = None) -> str | None:
    """Pick the URL by the documented precedence: CLI flag, SQLQ_DATABASE_URL, DATABASE_URL, the app."""
    environ = os.environ if environ is None else environ
    for candidate in (cli_url, environ.get("SQLQ_DATABASE_URL"), environ.get("DATABASE_URL"), app_url):
        if candidate:
            return candidate
    return None
