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

import datetime as dt
import difflib
import importlib
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import celery_settings
from .errors import ConfigurationError, DatabaseURLError, SqlqCompatibilityWarning
from .log import LOG_FORMATS
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
    "task_store_eager_result": False,  # eager calls' outcomes in the results table too (AsyncResult(id) reads them)
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_default_rate_limit": None,
    "worker_disable_rate_limits": False,
    "worker_enable_remote_control": True,  # False: a worker answers no control command (sqlq.control)
    "enable_utc": True,
    "imports": (),
    "include": (),
    "result_expires": 86400,
    "worker_concurrency": None,  # None: the number of CPUs
    "worker_pool": "prefork",
    "worker_prefetch_multiplier": 4,
    "worker_max_tasks_per_child": None,
    "worker_max_memory_per_child": None,  # KiB of resident memory after which a prefork child is replaced
    "worker_poll_interval": 1.0,
    "worker_heartbeat_interval": 5.0,
    "worker_lost_timeout": 30.0,
    "worker_lost_max_attempts": 3,
    "worker_shutdown_grace": 30.0,
    "worker_maintenance_interval": 5.0,
    "worker_revoke_expires": 10800.0,  # seconds a revoked id is honoured (Celery's CELERY_WORKER_REVOKE_EXPIRES)
    "worker_dead_retention": 3600.0,  # seconds a dead worker stays listed (sqlq inspect workers)
    "worker_unknown_task_handbacks": 100,  # hand-backs of a job whose task a worker does not know
    "worker_send_task_events": False,  # task events (sqlq events); `sqlq worker -E` turns them on per worker
    "task_send_sent_event": False,  # a task-sent event per job, written in the enqueue's transaction
    "events_retention": 3600.0,  # seconds an event is kept before maintenance deletes it
    "log_format": "text",  # or "json": one JSON object per line (sqlq worker / beat --log-format)
    "database_wait_timeout": None,  # None: workers and beats wait for the database at start for ever
    # None: LISTEN and the workers' liveness sessions use database_url (set it when that is a pooler)
    "listen_database_url": None,
    "database_prepared_statements": True,  # False: none prepared (a transaction pooler before PgBouncer 1.21)
    "timezone": "UTC",
    "beat_schedule": {},
    "beat_catchup": "latest",
    "beat_backfill_limit": 100,
    "beat_interval": 1.0,
    "beat_schedule_owner": None,  # None: the app's name
}

_INT = {"task_default_priority", "result_expires", "worker_concurrency", "worker_prefetch_multiplier",
        "worker_max_tasks_per_child", "worker_max_memory_per_child", "worker_lost_max_attempts", "beat_backfill_limit",
        "worker_unknown_task_handbacks"}
_FLOAT = {"worker_poll_interval", "worker_heartbeat_interval", "worker_lost_timeout",
          "worker_shutdown_grace", "worker_maintenance_interval", "worker_dead_retention", "beat_interval",
          "database_wait_timeout", "worker_revoke_expires", "events_retention",
          "task_time_limit", "task_soft_time_limit"}
_BOOL = {"task_acks_late", "task_always_eager", "task_eager_propagates", "task_track_started",
         "task_ignore_result", "task_store_eager_result", "worker_disable_rate_limits",
         "worker_enable_remote_control", "enable_utc", "database_prepared_statements", "worker_send_task_events",
         "task_send_sent_event"}
_LIST = {"accept_content"}
#: Settings that cannot come from a flat environment string.
_NOT_FROM_ENV = {"task_routes", "task_queues", "beat_schedule", "database_url", "task_annotations", "imports",
                 "include"}

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
    if key == "listen_database_url":
        parse_database_url(raw)
    return raw


class Settings:
    """Attribute- and mapping-style access to an app's settings, with validation on write."""

    def __init__(self, **overrides: Any):
        object.__setattr__(self, "_values", dict(DEFAULTS))
        #: Each setting's environment override once read: its value, or _UNSET.
        object.__setattr__(self, "_environment", {})
        #: Celery settings without effect here that were set: name → value (readable back), and
        #: the names already warned about (each warns once per app).
        object.__setattr__(self, "_compat_values", {})
        object.__setattr__(self, "_warned", set())
        #: Which Celery URL setting (broker_url, result_backend) gave database_url, with its database.
        object.__setattr__(self, "_url_from", {})
        object.__setattr__(self, "_given", set())
        self.update(overrides)

    def __getattr__(self, key: str) -> Any:
        # Known settings are properties (below); only unknown names get here.
        compat = self.__dict__.get("_compat_values", {})  # (absent on an object not yet initialised)
        if key in compat:
            return compat[key]
        raise AttributeError(f"no sqlq setting named {key!r}")

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __contains__(self, key: object) -> bool:
        """sqlq's settings, Celery's names for them, and Celery settings given without effect."""
        return key in self._values or key in celery_settings.RENAMED or key in self._compat_values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default

    def update(self, other: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Set several settings; unknown names are rejected so a typo is not silently ignored.

        Celery's names are accepted too, as spelled in its configuration reference or in its old
        upper-case form (``CELERY_ALWAYS_EAGER``): one that sets a sqlq setting sets it, one
        without effect here warns once (``SqlqCompatibilityWarning``) saying why."""
        items = dict(other or {}, **kwargs)
        for key, value in items.items():
            if key not in DEFAULTS:
                translated = self._translate(key, value)
                if translated is None:
                    continue
                key, value = translated
            self._values[key] = self._checked(key, value)
            self._given.add(key)

    def was_set(self, key: str) -> bool:
        """Whether setting ``key`` was given (by code or its environment variable) rather than
        left at its default."""
        env = _ENV_NAMES.get(key)
        return key in self._given or bool(env and os.environ.get(env))

    def _checked(self, key: str, value: Any) -> Any:
        """``value`` for sqlq setting ``key`` as it is stored: validated, in sqlq's own form."""
        if key == "schema":
            validate_identifier(value, "schema")
        elif key == "default_queue":
            validate_queue(value)
        elif key == "accept_content":
            return self._accept_content(value)
        elif key == "result_expires":
            return _seconds(value)
        elif key in ("imports", "include"):
            return _module_names(key, value)
        elif key == "listen_database_url" and value is not None:
            parse_database_url(value)  # a clear error now rather than at the first LISTEN
        elif key == "log_format" and value not in LOG_FORMATS:
            raise ConfigurationError(f"log_format={value!r}: choose one of {', '.join(LOG_FORMATS)}")
        return value

    def _translate(self, key: str, value: Any) -> tuple[str, Any] | None:
        """A Celery setting as the sqlq setting it sets, or None when it sets none (warned)."""
        name = celery_settings.celery_name(key)
        if name is None:
            if key.isupper() and key.lower() in DEFAULTS:
                return key.lower(), value  # a sqlq name in a settings module's capitals
            close = difflib.get_close_matches(key, sorted({*DEFAULTS, *celery_settings.CELERY_NAMES}), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigurationError(
                f"unknown sqlq setting {key!r}{hint} (neither sqlq nor Celery has a setting of that name); "
                f"known settings: {', '.join(sorted(DEFAULTS))}"
            )
        if name in DEFAULTS:
            return name, value
        if name in ("broker_url", "result_backend"):
            return self._celery_url(name, value)
        target = celery_settings.RENAMED.get(name)
        if target is not None:
            return target, value
        self._compat_values[name] = value
        why = celery_settings.NO_MEANING.get(name)
        if why is not None:
            self._warn(name, f"Celery setting {name!r} has no effect in sqlq: {why}")
        else:
            self._warn(name, f"Celery setting {name!r} is ignored: {celery_settings.NOT_YET[name]}")
        return None

    def _celery_url(self, name: str, value: Any) -> tuple[str, Any] | None:
        """``broker_url``/``result_backend``: a PostgreSQL URL is the database URL; both must name
        the same database. Another broker is an error (sqlq needs PostgreSQL); another result
        backend warns once (results are rows in the broker's database anyway)."""
        url = celery_url(value, name)
        if url is None:
            if value is None:  # Celery's default: nothing set
                return None
            self._compat_values[name] = value
            self._warn(name, (
                f"result_backend {redact_url(str(value))!r} is not used: sqlq keeps results as rows in "
                f"its own PostgreSQL database (database_url); remove the setting, or set it to that "
                f"database's postgresql:// URL"))
            return None
        database = _database_of(url)
        for other, (other_url, other_database) in self._url_from.items():
            if other != name and other_database != database:
                raise ConfigurationError(
                    f"{name} {redact_url(url)!r} and {other} {redact_url(other_url)!r} name different "
                    f"databases; sqlq keeps jobs and results in one PostgreSQL database: give both the "
                    f"same URL (or set only broker_url)"
                )
        self._url_from[name] = (url, database)
        return "database_url", url

    def _accept_content(self, value: Any) -> list[str]:
        """sqlq's serializer names for ``accept_content``, which in Celery may also be content
        types (``'application/json'``); a serializer sqlq does not have (``'yaml'``) is dropped with a
        warning, since no sqlq producer can send it."""
        if isinstance(value, str):
            value = [value]
        names: list[str] = []
        for item in value:
            name = celery_settings.serializer_name(item)
            if name is None:
                self._warn(f"accept_content:{item}", (
                    f"accept_content lists {item!r}, which sqlq has no serializer for: it is dropped "
                    f"(sqlq's serializers: json, msgpack, pickle)"))
            elif name not in names:
                names.append(name)
        return names

    def _warn(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, SqlqCompatibilityWarning, stacklevel=_caller_stacklevel())

    def from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Copy the settings in a module, class, mapping or dotted path (``'proj.settings'``,
        ``'proj.settings:Prod'``).

        Without ``namespace``, public lower-case names that are sqlq's or Celery's settings are
        read, and so are upper-case ones that are Celery's old names (``CELERY_ALWAYS_EAGER``) or
        sqlq names in capitals; anything else the object holds (imports, helpers, constants) is
        not a setting and is left alone, except a lower-case name in a setting's namespace
        (``task_``, ``worker_``, ...) that is no setting: a typo, reported as an error. With
        ``namespace='CELERY'`` (Django's style) only names starting ``CELERY_`` are read, as
        ``CELERY_TASK_ALWAYS_EAGER`` → ``task_always_eager``, and each must be a setting."""
        if isinstance(obj, str):
            module_name, _, attr = obj.partition(":")
            try:
                obj = importlib.import_module(module_name)
            except ImportError as exc:
                raise ConfigurationError(f"cannot import config module {module_name!r}: {exc}") from exc
            if attr:
                obj = getattr(obj, attr)
        # with a namespace only its names are read: reading Django's settings whole warns about
        # each deprecated one (EMAIL_PORT, ...), though none is sqlq's
        prefix = namespace.rstrip("_").upper() + "_" if namespace else ""
        source = obj if isinstance(obj, Mapping) else {k: getattr(obj, k) for k in dir(obj)
                                                       if not k.startswith("_") and k.startswith(prefix)}
        self.update(settings_in(source, namespace))

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


def _alias(target: str) -> property:
    """Celery's name of a sqlq setting, readable and writable as the sqlq setting."""

    def read(self: Settings) -> Any:
        return getattr(self, target)

    return property(read)


for _key, _target in celery_settings.RENAMED.items():
    setattr(Settings, _key, _alias(_target))

#: Lower-case prefixes of settings' namespaces: such a name in a config object is meant as a setting.
_SETTING_PREFIXES = ("task_", "worker_", "beat_", "result_", "broker_", "database_")


def settings_in(source: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
    """The entries of a config object that are settings, under the names ``Settings.update`` takes
    (see ``Settings.from_object``)."""
    found: dict[str, Any] = {}
    if namespace:
        prefix = namespace.rstrip("_").upper() + "_"
        for key, value in source.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):].lower()
            if name not in DEFAULTS and celery_settings.celery_name(name) is None \
                    and celery_settings.celery_name(key) is not None:
                name = key  # an old name under the prefix it always had (CELERY_ALWAYS_EAGER)
            found[name] = value
        return found
    for key, value in source.items():
        if key.startswith("_"):
            continue
        if key in DEFAULTS or celery_settings.celery_name(key) is not None:
            found[key] = value
        elif key.isupper() and key.lower() in DEFAULTS:
            found[key.lower()] = value
        elif key.islower() and key.startswith(_SETTING_PREFIXES) and not callable(value) \
                and not isinstance(value, type(sys)):
            found[key] = value  # update() says it is unknown, with the closest names
    return found


def _seconds(value: Any) -> Any:
    """``result_expires`` in seconds: Celery allows a timedelta. Celery's None/0 ("never") has no
    sqlq equivalent, and 0 would delete every result at once, so it is refused."""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
        value = int(value) if value == int(value) else value
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value <= 0):
        raise ConfigurationError(
            f"result_expires={value!r}: sqlq deletes results older than result_expires seconds, and "
            f"has no 'never' (Celery's None or 0); give a number of seconds or a timedelta, e.g. "
            f"timedelta(days=3650) to keep them for ten years"
        )
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigurationError(f"result_expires must be seconds (a number) or a timedelta, got {value!r}")
    return value


def _module_names(setting: str, value: Any) -> tuple[str, ...]:
    """``imports``/``include`` as a tuple of module names (a single name is allowed)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        names = ()
    if not all(isinstance(n, str) and n for n in names) or not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationError(
            f"{setting} must be a list of module names, e.g. {setting}=['proj.tasks'], got {value!r}"
        )
    return names


_PACKAGE = str(Path(__file__).resolve().parent)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside sqlq (the line of
    the user's code that gave the setting)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    return level


def naive_timezone(conf: Settings) -> dt.tzinfo:
    """The zone a naive datetime (an ``eta``, an ``expires``) is taken to be in, as Celery reads it:
    UTC while ``enable_utc`` is true (the default); with ``enable_utc=False`` the ``timezone``
    setting, or the machine's local zone when ``timezone`` was left at its default."""
    if conf.enable_utc:
        return dt.UTC
    if not conf.was_set("timezone"):
        local = dt.datetime.now().astimezone().tzinfo
        return local if local is not None else dt.UTC
    from .periodic.timing import resolve_timezone

    return resolve_timezone(conf.timezone)

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
    """Pick the URL by the documented precedence: CLI flag, SQLQ_DATABASE_URL, DATABASE_URL, the app,
    then (in a Django project) Django's ``DATABASES['default']``."""
    environ = os.environ if environ is None else environ
    for candidate in (cli_url, environ.get("SQLQ_DATABASE_URL"), environ.get("DATABASE_URL"), app_url):
        if candidate:
            return candidate
    return django_database_url()


def django_database_url() -> str | None:
    """Django's ``DATABASES['default']`` as a URL when this process runs a configured Django project
    (``django.conf`` imported and its settings configured or named by ``DJANGO_SETTINGS_MODULE``), so
    that a Django project configures its database in one place; None otherwise. Django is never
    imported here: a process that did not import it is not a Django project."""
    django_conf = sys.modules.get("django.conf")
    if django_conf is None:
        return None
    settings = django_conf.settings
    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    from .contrib.django.database import default_database_url

    return default_database_url()


#: Scheme prefixes Celery users write for PostgreSQL: the SQLAlchemy result backend's ``db+`` and
#: SQLAlchemy driver names (sqlq connects with psycopg 3 whatever driver the URL names).
_CELERY_POSTGRES = re.compile(r"^(?:db\+)?(?:postgres|postgresql)(?:\+(?:psycopg|psycopg2|pg8000|asyncpg))?://",
                              re.IGNORECASE)


def celery_url(value: Any, setting: str) -> str | None:
    """The database URL in a Celery ``broker``/``broker_url``/``backend``/``result_backend``: a
    PostgreSQL URL in any spelling Celery users write (``postgresql://``, ``postgres://``,
    ``postgresql+psycopg://``, the SQLAlchemy backend's ``db+postgresql://``) as ``postgresql://...``.
    None for an unset value or a result backend that is not PostgreSQL (the caller warns); a broker
    that is not PostgreSQL is an error, since sqlq has no other."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    match = _CELERY_POSTGRES.match(text)
    if match is None:
        if setting in ("backend", "result_backend"):
            return None
        scheme = text.split("://", 1)[0] if "://" in text else text
        raise ConfigurationError(
            f"{setting}={redact_url(text)!r} is not PostgreSQL ({scheme!r}): sqlq uses PostgreSQL as its "
            f"broker and result backend, with nothing else to run; set {setting}='postgresql://user@host/dbname' "
            f"(or the environment variable SQLQ_DATABASE_URL)"
        )
    url = "postgresql://" + text[match.end():]
    parse_database_url(url)  # a clear error for a URL that cannot work
    return url


def _database_of(url: str) -> tuple[str, int, str]:
    """(host, port, database) of a PostgreSQL URL: what "the same database" compares."""
    parts = urlsplit(url)
    return (parts.hostname or "localhost").lower(), parts.port or 5432, parts.path.lstrip("/")
