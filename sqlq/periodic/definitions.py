"""Periodic tasks as rows: what a schedule is, how ``beat_schedule`` reaches the table, and the
operations behind ``sqlq schedule``.

The ``schedules`` table is the single source of truth for every beat process; configuration is
only one way of writing to it. ``beat_schedule`` keeps Celery's shape::

    app.conf.beat_schedule = {
        'cleanup': {'task': 'proj.tasks.cleanup', 'schedule': crontab(minute='*/15')},
        'ping':    {'task': 'proj.tasks.ping', 'schedule': 30.0, 'args': [1],
                    'options': {'queue': 'low', 'expires': 25}, 'timezone': 'Europe/London'},
    }

and is synced when a beat starts: its entries are upserted with ``source='config'``; a config-owned
row whose entry was removed is deleted; rows added with ``sqlq schedule add`` (``source='manual'``)
are never touched by a sync. A definition that cannot work (bad cron string, unknown time zone) is
stored anyway with ``last_error`` set and no next tick, so ``sqlq schedule list`` shows what is
wrong while the other schedules keep running.

The time arithmetic lives in :mod:`sqlq.periodic.timing`; the loop that fires ticks in
:mod:`sqlq.periodic.beat`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from ..errors import InvalidNameError, ScheduleError
from ..names import validate_task_name
from ..store import ForeignSchedule, JobSpec, ScheduleRow
from .timing import (
    EPOCH,
    Schedule,
    crontab,
    every,
    from_stored_text,
    next_fire,
    parse_schedule,
    resolve_timezone,
    solar,
    stored_text,
)

if TYPE_CHECKING:
    import psycopg

    from ..app import App
    from ..result import AsyncResult, GroupResult

log = logging.getLogger("sqlq.beat")

__all__ = [
    "Definition",
    "add_periodic_task",
    "SyncReport",
    "add_schedule",
    "build_periodic_job",
    "check_registered",
    "describe",
    "first_fire",
    "get_schedule",
    "list_schedules",
    "pause_schedule",
    "remove_schedule",
    "resume_schedule",
    "run_now",
    "sync_config",
]

#: Keys of a ``beat_schedule`` entry (Celery's, plus ``timezone``).
ENTRY_KEYS = ("task", "schedule", "args", "kwargs", "options", "timezone")
#: Keys of an entry's ``options``: the ``apply_async`` options that make sense for every tick.
SEND_OPTIONS = ("queue", "priority", "expires", "exchange", "routing_key", "serializer", "headers", "countdown",
                "unique_key", "unique_for", "on_conflict")
#: Header that tells a task which schedule sent it (Celery beat's name for it).
SCHEDULE_HEADER = "periodic_task_name"
#: Header carrying the tick (ISO 8601, UTC) a job was sent for.
TICK_HEADER = "periodic_tick"

_MAX_NAME = 200


def _named(name: str, message: object) -> ScheduleError:
    return ScheduleError(f"schedule {name!r}: {message}")


# --- definitions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Definition:
    """One periodic task as stored: what to send, and the raw timing fields of its schedule.

    The timing is kept raw (a cron string, or interval seconds and an anchor) so that a definition
    which does not parse can still be stored and shown with its error; :meth:`compile` turns it
    into a :class:`~sqlq.periodic.timing.Schedule` and a time zone, or says what is wrong.
    """

    name: str
    task: str
    cron: str | None = None
    interval_seconds: float | None = None
    anchor: datetime | None = None
    timezone: str = "UTC"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "manual"
    owner: str | None = None  # the app whose beat_schedule declares it (config schedules only)

    @classmethod
    def from_entry(cls, name: str, entry: Mapping[str, Any], default_timezone: str,
                   source: str = "config", owner: str | None = None) -> Definition:
        """Read a Celery-shaped ``beat_schedule`` entry; raises ScheduleError naming the schedule
        when the entry cannot even be stored (no task, arguments that are not JSON, ...)."""
        _check_name(name)
        if not isinstance(entry, Mapping):
            raise _named(name, f"an entry must be a dict like {{'task': ..., 'schedule': ...}}, got "
                               f"{type(entry).__name__}")
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise _named(name, f"unknown key(s) {', '.join(map(repr, unknown))}; an entry takes "
                               f"{', '.join(ENTRY_KEYS)}")
        task = entry.get("task")
        if not isinstance(task, str) or not task:
            raise _named(name, f"'task' must be a task name such as 'proj.tasks.cleanup', got {task!r}")
        if "schedule" not in entry:
            raise _named(name, "'schedule' is missing: give a crontab(...), a cron string, a timedelta "
                               "or a number of seconds")
        cron, seconds, anchor = _timing(name, entry["schedule"])
        return cls(
            name=name, task=task, cron=cron, interval_seconds=seconds, anchor=anchor,
            timezone=_zone_name(name, entry.get("timezone") or default_timezone),
            args=_json_value(name, "args", list(_sequence(name, entry.get("args")))),
            kwargs=_json_value(name, "kwargs", _mapping(name, "kwargs", entry.get("kwargs"))),
            options=_json_value(name, "options", _mapping(name, "options", entry.get("options"))),
            source=source, owner=owner,
        )

    @classmethod
    def from_row(cls, row: ScheduleRow) -> Definition:
        return cls(name=row.name, task=row.task, cron=row.cron, interval_seconds=row.interval_seconds,
                   anchor=row.anchor, timezone=row.timezone, args=list(row.args or []),
                   kwargs=dict(row.kwargs or {}), options=dict(row.options or {}), source=row.source,
                   owner=row.owner)

    def compile(self) -> tuple[Schedule, tzinfo]:
        """The schedule and its time zone; ScheduleError (naming this schedule) if either is invalid."""
        try:
            validate_task_name(self.task)
            bad = sorted(set(self.options) - set(SEND_OPTIONS))
            if bad:
                raise ScheduleError(f"unknown option(s) {', '.join(map(repr, bad))}; options may be "
                                    f"{', '.join(SEND_OPTIONS)}")
            return _compile_timing(self.cron, self.interval_seconds, self.anchor, self.timezone)
        except (ScheduleError, InvalidNameError) as exc:
            raise _named(self.name, exc) from None

    def params(self, *, next_fire_at: datetime | None, last_error: str | None,
               enabled: bool = True) -> dict[str, Any]:
        """Statement parameters for SCHEDULE_UPSERT / SCHEDULE_INSERT."""
        return {
            "name": self.name, "task": self.task, "args": json.dumps(self.args),
            "kwargs": json.dumps(self.kwargs), "options": json.dumps(self.options), "cron": self.cron,
            "interval_seconds": self.interval_seconds, "anchor": self.anchor, "timezone": self.timezone,
            "enabled": enabled, "source": self.source, "next_fire_at": next_fire_at, "last_error": last_error,
            "owner": self.owner,
        }


@lru_cache(maxsize=1024)
def _compile_timing(cron: str | None, interval_seconds: float | None, anchor: datetime | None,
                    timezone: str) -> tuple[Schedule, tzinfo]:
    """Parsing a crontab costs milliseconds and beat compiles a schedule on every fire: cache it."""
    if cron is not None:
        schedule: Schedule = from_stored_text(cron)
    else:
        schedule = every(timedelta(seconds=interval_seconds or 0), anchor=anchor)
    return schedule, resolve_timezone(timezone)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME or not name.isprintable():
        raise ScheduleError(f"invalid schedule name {name!r}: use 1-{_MAX_NAME} printable characters, "
                            f"e.g. 'cleanup-every-15-minutes'")


def _timing(name: str, value: object) -> tuple[str | None, float | None, datetime | None]:
    """(cron, interval seconds, anchor). A cron string is kept raw so a typo can be stored and shown;
    a crontab or solar schedule is kept as :func:`~sqlq.periodic.timing.stored_text` writes it."""
    if isinstance(value, str):
        try:
            float(value.strip())
        except ValueError:
            return " ".join(value.split()) or value, None, None
    if isinstance(value, crontab | solar):
        return stored_text(value), None, None
    try:
        schedule = parse_schedule(value)
    except ScheduleError as exc:
        raise _named(name, exc) from None
    if isinstance(schedule, every):
        return None, schedule.seconds, (None if schedule.anchor == EPOCH else schedule.anchor)
    assert isinstance(schedule, crontab | solar)
    return stored_text(schedule), None, None


def _zone_name(name: str, value: object) -> str:
    if isinstance(value, str):
        return value.strip() or value
    key = getattr(value, "key", None)  # a ZoneInfo
    if isinstance(value, tzinfo) and isinstance(key, str):
        return key
    raise _named(name, f"'timezone' must be an IANA name such as 'Europe/London', got {value!r}")


def _sequence(name: str, value: object) -> list[Any] | tuple[Any, ...]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _named(name, f"'args' must be a list or tuple, got {type(value).__name__}")
    return value


def _mapping(name: str, key: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _named(name, f"{key!r} must be a dict with string keys, got {value!r}")
    return dict(value)


def _json_value(name: str, key: str, value: Any) -> Any:
    """Schedules are stored as JSON, whatever serializer the jobs use."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise _named(name, f"{key!r} must be JSON-serializable to be stored ({exc})") from None


def describe(row: ScheduleRow | Definition) -> str:
    """The schedule as a person reads it: ``cron '*/15 * * * *'``, ``every 30s``, ``solar sunrise at
    51.5, -0.12``, or a Celery-style crontab whose day fields must both match."""
    if row.cron is not None:
        try:
            schedule = from_stored_text(row.cron)
        except ScheduleError:
            return f"cron {row.cron!r}"  # shown as written; last_error says what is wrong
        if isinstance(schedule, solar):
            return f"solar {schedule.event} at {schedule.lat:g}, {schedule.lon:g}"
        if schedule.days_and:
            return f"cron {schedule.expression!r} (day of month and day of week)"
        return f"cron {row.cron!r}"
    seconds = row.interval_seconds or 0
    text = f"every {seconds:g}s"
    return text if row.anchor is None else f"{text} from {row.anchor.isoformat()}"


# --- app.add_periodic_task (Celery's periodic-tasks guide) ----------------------------------------

def add_periodic_task(app: App, schedule: Schedule | timedelta | float, sig: Any, name: str | None = None, *,
                      args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                      **options: Any) -> str:
    """Put a periodic task in ``app.conf.beat_schedule``, as Celery's ``app.add_periodic_task``;
    returns its name (the key of the entry).

    ``sig`` is a signature (``task.s(...)``, ``task.si(...)``: a mapping with ``task``, ``args``,
    ``kwargs``, ``options``), a task, or a task name. ``args`` are prepended to the signature's
    and ``kwargs`` merged over its, unless it is immutable; ``options`` (``queue``, ``priority``,
    ``expires``, ...) go over its options. Without ``name`` the entry is named as Celery names it,
    by the call it makes: ``'proj.tasks.add(2, 2)'``. The entry is checked now (an unknown option, a
    bad schedule or arguments that are not JSON raise ScheduleError here), and beat stores it when
    it starts, like any ``beat_schedule`` entry.
    """
    task, sig_args, sig_kwargs, sig_options = _signature_parts(sig)
    extra_args = list(args or ())
    extra_kwargs = dict(kwargs or {})
    if isinstance(sig, Mapping) and sig.get("immutable"):
        call_args, call_kwargs = sig_args, sig_kwargs
    else:
        call_args, call_kwargs = extra_args + sig_args, {**sig_kwargs, **extra_kwargs}
    merged = {**sig_options, **options}
    key = name if name is not None else _call_repr(task, call_args, call_kwargs)
    entry: dict[str, Any] = {"task": task, "schedule": schedule, "args": call_args, "kwargs": call_kwargs,
                             "options": merged}
    definition = Definition.from_entry(key, entry, app.conf.timezone)
    definition.compile()
    entries = dict(app.conf.beat_schedule or {})  # a copy: the default is shared by every app
    if name is None and key in entries:
        log.warning("periodic task %r replaces an earlier unnamed one with the same call; pass name= to "
                    "add_periodic_task to keep both", key)
    entries[key] = entry
    app.conf.beat_schedule = entries
    return key


def _signature_parts(sig: Any) -> tuple[str, list[Any], dict[str, Any], dict[str, Any]]:
    """(task name, args, kwargs, options) of a signature mapping, a task or a task name."""
    if isinstance(sig, Mapping):
        task = sig.get("task")
        if not isinstance(task, str) or not task:
            raise ScheduleError(f"add_periodic_task: the signature {sig!r} names no task ('task' key); pass "
                                f"task.s(...) or the task itself")
        args, kwargs, options = sig.get("args") or (), sig.get("kwargs") or {}, sig.get("options") or {}
        if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping) or not isinstance(options, Mapping):
            raise ScheduleError(f"add_periodic_task: the signature of {task!r} needs a list of args and dicts of "
                                f"kwargs and options, got {sig!r}")
        return task, list(args), dict(kwargs), dict(options)
    if isinstance(sig, str):
        return sig, [], {}, {}
    task = getattr(sig, "name", None)
    if isinstance(task, str) and task:
        return task, [], {}, {}
    raise ScheduleError(f"add_periodic_task: expected a signature (task.s(...)), a task or a task name, got "
                        f"{type(sig).__name__} {sig!r}")


def _call_repr(task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """Celery's default entry name, the call as its signature's repr shows it: ``'proj.add(2, y=3)'``."""
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{task}({', '.join(shown)})"


# --- checks shared by beat and the CLI -------------------------------------------------------------

def check_registered(app: App, definition: Definition) -> None:
    """An app that knows its tasks must know this one; an app with no tasks sends by name.

    Beat can send a task whose code it does not import (as Celery beat does), so a missing task is
    only an error when the app has a populated registry, where it is almost certainly a typo.
    """
    if app.tasks and definition.task not in app.tasks:
        raise _named(definition.name, f"task {definition.task!r} is not registered in app {app.main or app!r}; "
                                      f"import the module that defines it (sqlq -A) or fix the task name")


def first_fire(app: App, definition: Definition, now: datetime) -> tuple[datetime | None, str | None]:
    """(next_fire_at, last_error) for a definition written at ``now``: the first tick strictly after
    ``now`` (one that passed before the schedule existed is never sent), or no tick and the error."""
    try:
        schedule, zone = definition.compile()
        tick = next_fire(schedule, now, zone)
    except ScheduleError as exc:
        return None, str(exc)
    try:
        check_registered(app, definition)
    except ScheduleError as exc:
        return tick, str(exc)
    return tick, None


def build_periodic_job(app: App, definition: Definition, tick: datetime | None) -> JobSpec:
    """Encode one run through the app's normal path, so routing and serialization stay in one place.

    A registered task contributes its own defaults (queue, priority, expires), as ``apply_async``
    would; an unregistered one is sent by name.
    """
    options = dict(definition.options)
    headers = dict(options.pop("headers", None) or {})
    headers[SCHEDULE_HEADER] = definition.name
    if tick is not None:
        headers[TICK_HEADER] = tick.isoformat()
    task = app.tasks.get(definition.task)
    if task is not None:
        return task.build_job(definition.args, definition.kwargs, headers=headers, **options)
    return app.build_job(definition.task, definition.args, definition.kwargs, headers=headers, **options)


# --- config sync --------------------------------------------------------------------------------

@dataclass
class SyncReport:
    """What a sync did: schedules written, config-owned schedules removed, entries in error."""

    synced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


#: The owner of an unnamed app's config schedules (``App()`` without a name or beat_schedule_owner).
DEFAULT_OWNER = "default"


def schedule_owner(app: App) -> str:
    """Who the config schedules of this app belong to: ``beat_schedule_owner``, else the app's name
    (``App('proj')``), else ``DEFAULT_OWNER``."""
    return str(app.conf.beat_schedule_owner or app.main or DEFAULT_OWNER)


def sync_config(app: App, conn: psycopg.Connection, now: datetime | None = None) -> SyncReport:
    """Write ``app.conf.beat_schedule`` into the table, in one transaction, one beat at a time.

    Config schedules belong to the app that declared them (:func:`schedule_owner`): a sync removes
    only its own owner's stale rows, so two apps' beats on one schema never delete each other's
    schedules; it says at WARNING which others it leaves alone, and which it takes over because its
    own config names them too. An entry that cannot be stored at all (no task, non-JSON arguments)
    is logged and its existing row, if any, is left as it was rather than deleted.
    """
    entries = app.conf.beat_schedule or {}
    if not isinstance(entries, Mapping):
        raise ScheduleError(f"beat_schedule must be a dict of name -> entry, got {type(entries).__name__}")
    owner = schedule_owner(app)
    store = app.store
    report = SyncReport()
    names = [str(n) for n in entries]
    with conn.transaction():
        store.xact_lock(conn, store.lock_key("beat-sync"))
        foreign = store.foreign_config_schedules(conn, owner, names)
        now = now or store.schedule_clock(conn)
        for name, entry in entries.items():
            try:
                definition = Definition.from_entry(name, entry, app.conf.timezone, source="config", owner=owner)
            except ScheduleError as exc:
                report.errors[str(name)] = str(exc)
                log.error("%s; the entry is skipped", exc)
                continue
            next_fire_at, error = first_fire(app, definition, now)
            if error is not None:
                report.errors[name] = error
                log.error("%s", error)
            store.upsert_schedule(conn, definition.params(next_fire_at=next_fire_at, last_error=error))
            report.synced.append(name)
        report.removed = store.delete_stale_config_schedules(conn, owner, names)
    _report_foreign(owner, foreign, set(report.synced))
    if report.removed:
        log.info("removed schedule(s) of %s no longer in beat_schedule: %s", owner, ", ".join(report.removed))
    return report


def _report_foreign(owner: str, foreign: Sequence[ForeignSchedule], synced: set[str]) -> None:
    taken = [f for f in foreign if f.declared_here and f.name in synced]
    for f in taken:
        log.warning("schedule %r was declared by %s and is now %s's (both beat_schedules name it; the "
                    "last beat to start wins; give one of them another name)", f.name,
                    repr(f.owner) if f.owner else "an older sqlq", owner)
    left = [f for f in foreign if not f.declared_here]
    for other in sorted({f.owner or "" for f in left}):
        mine = ", ".join(f.name for f in left if (f.owner or "") == other)
        if other:
            log.warning("left schedule(s) of app %r alone: %s (not in %s's beat_schedule; their own "
                        "app's beat manages them)", other, mine, owner)
        else:
            log.warning("left schedule(s) without an owner alone: %s (written by an older sqlq; the next "
                        "beat whose beat_schedule names one takes it over; remove the others with "
                        "`sqlq schedule remove NAME`)", mine)


# --- operations behind `sqlq schedule` ------------------------------------------------------------

def _missing(name: str) -> ScheduleError:
    return ScheduleError(f"there is no schedule named {name!r}; `sqlq schedule list` shows the schedules")


def list_schedules(app: App) -> list[ScheduleRow]:
    with app.connection() as conn:
        return app.store.list_schedules(conn)


def get_schedule(app: App, name: str) -> ScheduleRow:
    with app.connection() as conn:
        row = app.store.get_schedule(conn, name)
    if row is None:
        raise _missing(name)
    return row


def add_schedule(app: App, name: str, task: str, schedule: Schedule | str | timedelta | float, *,
                 args: list[Any] | tuple[Any, ...] | None = None, kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                 timezone: str | None = None, enabled: bool = True, replace: bool = False,
                 now: datetime | None = None) -> ScheduleRow:
    """Add a schedule by hand (kept across config syncs). Raises ScheduleError if it cannot work.

    ``replace=True`` overwrites a hand-added schedule of the same name, keeping its place in time if
    the timing is unchanged and a paused one paused; a schedule defined in ``beat_schedule`` must be
    changed there.
    """
    entry = {"task": task, "schedule": schedule, "args": args, "kwargs": kwargs, "options": options,
             "timezone": timezone}
    definition = Definition.from_entry(name, entry, app.conf.timezone, source="manual")
    definition.compile()
    check_registered(app, definition)
    store = app.store
    with app.connection() as conn, conn.transaction():
        now = now or store.schedule_clock(conn)
        next_fire_at, error = first_fire(app, definition, now)
        params = definition.params(next_fire_at=next_fire_at, last_error=error, enabled=enabled)
        if replace:
            existing = store.get_schedule(conn, name, lock=True)
            if existing is not None and existing.source == "config":
                raise _named(name, "is defined in beat_schedule; change it there (pause, resume and "
                                   "run-now work on it)")
            store.upsert_schedule(conn, params)  # keeps a paused schedule paused ...
            if not enabled:
                store.pause_schedule(conn, name)  # ... and pauses one when asked
        elif not store.insert_schedule(conn, params):
            raise _named(name, "already exists; remove it first or pass replace=True (--replace)")
        return cast("ScheduleRow", store.get_schedule(conn, name))  # (just written, in this transaction)


def remove_schedule(app: App, name: str) -> ScheduleRow:
    """Delete a schedule and its tick history; returns the row that was removed.

    A schedule from ``beat_schedule`` comes back when a beat with that config next starts.
    """
    store = app.store
    with app.connection() as conn, conn.transaction():
        row = store.get_schedule(conn, name, lock=True)
        if row is None:
            raise _missing(name)
        store.delete_schedule(conn, name)
    return row


def pause_schedule(app: App, name: str) -> bool:
    """Stop sending a schedule's ticks (until resumed); False if it was already paused."""
    with app.connection() as conn:
        if app.store.pause_schedule(conn, name):
            return True
        if app.store.get_schedule(conn, name) is None:
            raise _missing(name)
    return False


def resume_schedule(app: App, name: str, now: datetime | None = None) -> bool:
    """Send ticks again, from the next one after now (none of the ticks that fell while paused);
    False if it was not paused."""
    store = app.store
    with app.connection() as conn, conn.transaction():
        row = store.get_schedule(conn, name, lock=True)
        if row is None:
            raise _missing(name)
        if row.enabled:
            return False
        now = now or store.schedule_clock(conn)
        next_fire_at, error = first_fire(app, Definition.from_row(row), now)
        return store.resume_schedule(conn, name, next_fire_at, error)


def run_now(app: App, name: str) -> AsyncResult | GroupResult:
    """Send one run of a schedule's task now, in addition to its ticks (the schedule does not move)."""
    store = app.store
    with app.connection() as conn, conn.transaction():
        row = store.get_schedule(conn, name, lock=True)
        if row is None:
            raise _missing(name)
        definition = Definition.from_row(row)
        definition.compile()
        check_registered(app, definition)
        spec = build_periodic_job(app, definition, tick=None)
        return app.enqueue([spec], connection=conn)[0]
