"""The events stream: Celery's task and worker events, as rows of the ``events`` table.

Celery workers started with ``-E`` publish events to a broker exchange and monitors (``celery
events``, Flower) consume them from queues of their own. Here events are rows: a worker queues
them in memory (a claim's ``task-received`` events, a recorded batch's ``task-started``/
``task-succeeded``/``task-failed``/...: ``sqlq.events.worker``) and its finisher writes what was
queued at most every 0.1 s as one row, a JSON array, announced by one NOTIFY carrying the row's id;
a reader tails the table past the last id it saw, woken by that NOTIFY, and splits batches back
into events (``expand``). So a monitor started late can read what happened before it (``since=``),
two monitors never take events from each other, and nothing has to be declared; events older
than ``events_retention`` are deleted by the workers' maintenance.

``app.events`` is ``Events``: ``receiver(handlers=...)`` (and Celery's ``Receiver(connection,
handlers=...)``), whose ``capture()`` calls each handler with an event dict in Celery's shape
(``type``, ``uuid``, ``hostname``, ``timestamp``, ``name``, ``args``, ``runtime``, ``result``,
``exception``, ``traceback``, ...), and ``State``, the monitor's picture of workers and tasks.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from ..db import connect
from ..errors import ConfigurationError
from ..outage import Backoff, OutageLog, is_outage
from ..store import EventRow

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("sqlq.events")

#: Celery's task event types, in the order a job goes through them.
TASK_EVENTS = ("task-sent", "task-received", "task-started", "task-succeeded", "task-failed", "task-retried",
               "task-revoked", "task-rejected")
#: Celery's worker event types.
WORKER_EVENTS = ("worker-online", "worker-heartbeat", "worker-offline")
EVENT_TYPES = TASK_EVENTS + WORKER_EVENTS

#: The state a task event puts its task in (Celery's ``events.state``).
TASK_STATES = {"task-sent": "PENDING", "task-received": "RECEIVED", "task-started": "STARTED",
               "task-succeeded": "SUCCESS", "task-failed": "FAILURE", "task-retried": "RETRY",
               "task-revoked": "REVOKED", "task-rejected": "REJECTED"}

#: Rows read per statement by a tail (a row may hold a batch of events).
READ_ROWS = 100

Handler = Callable[[dict[str, Any]], Any]


def expand(row: EventRow) -> list[dict[str, Any]]:
    """An events row as Celery's event dicts: its one event, or its batch's, in order. Each has
    its fields, then ``type``, ``uuid`` (task events), ``name``, ``hostname``, ``timestamp``
    (seconds since the epoch) and ``clock`` (the row's id: the stream's order, Celery's logical
    clock; the events of one batch share it)."""
    if row.batch is None:
        event: dict[str, Any] = dict(row.fields)
        event["type"] = row.type
        if row.uuid is not None:
            event["uuid"] = row.uuid
        if row.name is not None:
            event["name"] = row.name
        event["hostname"] = row.hostname
        event["timestamp"] = row.timestamp
        event["clock"] = row.id
        return [event]
    events: list[dict[str, Any]] = []
    hostname, clock = row.hostname, row.id
    for kind, uuid, name, at, fields in row.batch:
        if kind.startswith("*"):  # a columnar element: many jobs' events (sqlq.events.worker)
            events += _columns(kind[1:], at, fields, hostname, clock)
            continue
        event = dict(fields or {})
        started = event.pop("started", None)
        if started is not None:  # a worker's outcome carries its task-started event (sqlq.events.worker)
            events.append({"pid": event.pop("pid", None), "type": "task-started", "uuid": uuid, "name": name,
                           "hostname": hostname, "timestamp": started, "clock": clock})
        event["type"] = kind
        if uuid is not None:
            event["uuid"] = uuid
        if name is not None:
            event["name"] = name
        event["hostname"] = hostname
        event["timestamp"] = at
        event["clock"] = clock
        events.append(event)
    return events


def _columns(kind: str, at: float | None, fields: dict[str, Any], hostname: str | None,
             clock: int) -> list[dict[str, Any]]:
    """A columnar element's events: ``fields`` holds a list per field, one item per job, and the
    scalars every event shares; ``started`` (a list) gives each job's task-started before it."""
    lists = {k: v for k, v in fields.items() if isinstance(v, list)}
    shared = {k: v for k, v in fields.items() if not isinstance(v, list)}
    started = lists.pop("started", None)
    names = list(lists)
    events: list[dict[str, Any]] = []
    for i, values in enumerate(zip(*lists.values(), strict=True)):
        event = dict(zip(names, values, strict=True))
        timestamp = at
        if started is not None:
            events.append({**shared, "type": "task-started", "uuid": event["uuid"], "name": event["name"],
                           "hostname": hostname, "timestamp": started[i], "clock": clock})
            timestamp = started[i] + (event.get("runtime") or 0.0)
        event["type"] = kind
        event["hostname"] = hostname
        event["timestamp"] = timestamp
        event["clock"] = clock
        events.append(event)
    return events


def parse_since(value: float | str | dt.datetime | dt.timedelta | None) -> float | None:
    """``since=`` as seconds since the epoch: a datetime (naive: UTC), a timedelta or a number of
    seconds *ago*, an ISO 8601 string, or a number with a unit (``90s``, ``10m``, ``2h``, ``1d``)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, dt.timedelta):
        return time.time() - value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return time.time() - float(value)
    if isinstance(value, str):
        text = value.strip()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        try:
            if text and text[-1] in units:
                return time.time() - float(text[:-1]) * units[text[-1]]
            return time.time() - float(text)
        except ValueError:
            pass
        try:
            return parse_since(dt.datetime.fromisoformat(text))
        except ValueError:
            pass
    raise ConfigurationError(
        f"since={value!r} is not a time: give seconds ago (a number, or 90s, 10m, 2h, 1d), a timedelta, "
        f"a datetime or an ISO 8601 time such as 2026-12-04T03:10:00")


def _check_types(types: Sequence[str] | None) -> list[str] | None:
    if not types:
        return None
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise ConfigurationError(f"unknown event type(s) {', '.join(unknown)}; the types are: "
                                 f"{', '.join(EVENT_TYPES)}")
    return list(types)


class Receiver:
    """Celery's ``EventReceiver``: calls ``handlers[event['type']]`` (or ``handlers['*']``) for
    each event, in the stream's order, from the moment ``capture`` starts (or from ``since``).

    On its own connection (``connection=None``) it rides out database outages: it reconnects
    with backoff and goes on after the last event it handled, so none is skipped or repeated. On
    a connection handed in (Celery's ``Receiver(conn, ...)`` with ``app.connection()``), an
    outage ends ``capture`` with the connection's error, since that connection is the caller's."""

    def __init__(self, app: App, connection: psycopg.Connection | None = None,
                 handlers: Mapping[str, Handler] | None = None, *, since: Any = None,
                 types: Sequence[str] | None = None, names: Sequence[str] | None = None,
                 outage: OutageLog | None = None):
        self.app = app
        self.connection = connection
        self.handlers = dict(handlers or {})
        unknown = sorted(set(self.handlers) - set(EVENT_TYPES) - {"*"})
        if unknown:
            raise ConfigurationError(f"handlers for unknown event type(s) {', '.join(unknown)}; the types are: "
                                     f"{', '.join(EVENT_TYPES)}, or '*' for every event")
        self.since = parse_since(since)
        self.types = _check_types(types)
        self.names = list(names) if names else None
        self.outage = outage or OutageLog(log, "events receiver")
        self.last_id: int | None = None  # the id of the last row read
        self._pending: collections.deque[dict[str, Any]] = collections.deque()  # read, not handed out yet
        self.should_stop = False  # Celery's: a handler sets it to end capture()

    def process(self, event: dict[str, Any]) -> None:
        handler = self.handlers.get(event["type"]) or self.handlers.get("*")
        if handler is not None:
            handler(event)

    def capture(self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True) -> int:
        """Handle events until ``limit`` of them were handled, ``timeout`` seconds passed without
        one, ``should_stop`` is set, or Ctrl-C; returns how many were handled. ``wakeup`` (Celery's:
        ask the workers for a heartbeat at once): here the workers' state is read from their rows
        at any time, so it only decides whether capture waits on NOTIFY (True) or polls each
        second (False)."""
        count = 0
        for event in self.itercapture(limit=limit, timeout=timeout, wakeup=wakeup):
            self.process(event)
            count += 1
        return count

    def itercapture(self, limit: int | None = None, timeout: float | None = None, wakeup: bool = True,
                    on_idle: Callable[[], Any] | None = None) -> Iterator[dict[str, Any]]:
        """The events ``capture`` would handle, as an iterator (the CLI's loop); ``on_idle`` is
        called after each wait for events (at least once a second while none come)."""
        if limit is not None and limit <= 0:
            return
        count = 0
        idle_since = time.monotonic()
        backoff = Backoff()
        while not self.should_stop:
            try:
                with self._session(wakeup) as conn:
                    if backoff.failing:
                        backoff.reset()
                        self.outage.recovered()
                    if self.last_id is None:
                        self.last_id = self.app.store.events_start(conn, self.since)
                    while not self.should_stop:
                        if not self._pending:
                            for row in self.app.store.events_after(conn, self.last_id, limit=READ_ROWS,
                                                                   since=self.since):
                                self._pending.extend(e for e in expand(row) if self._wanted(e))
                                self.last_id = row.id  # (its events wait in _pending: none is lost)
                        if self._pending:
                            idle_since = time.monotonic()
                            while self._pending:
                                count += 1
                                yield self._pending.popleft()
                                if (limit is not None and count >= limit) or self.should_stop:
                                    return
                            continue
                        wait = 1.0
                        if timeout is not None:
                            wait = min(wait, timeout - (time.monotonic() - idle_since))
                            if wait <= 0:
                                return
                        _wait(conn, wait, wakeup)
                        if on_idle is not None:
                            on_idle()
            except Exception as exc:
                if self.connection is not None or not is_outage(exc):
                    raise
                self.outage.failed(exc, "reading events")
                pause = time.monotonic() + backoff.next()
                while time.monotonic() < pause:  # (the table keeps its clock going meanwhile)
                    time.sleep(min(max(pause - time.monotonic(), 0.0), 1.0))
                    if on_idle is not None:
                        on_idle()

    def _wanted(self, event: dict[str, Any]) -> bool:
        """The filters, applied to each event (a batch row holds events of several types and tasks,
        and of times a little before the row's)."""
        return ((self.types is None or event["type"] in self.types)
                and (self.names is None or event.get("name") in self.names)
                and (self.since is None or float(event["timestamp"]) >= self.since))

    @contextlib.contextmanager
    def _session(self, wakeup: bool) -> Iterator[psycopg.Connection]:
        """The connection to read on: the caller's, or one of the receiver's own (closed after),
        listening on the events channel when ``wakeup``."""
        store = self.app.store
        conn = self.connection
        own = conn is None
        if conn is None:
            conn = connect(self.app.database_url)
        try:
            if wakeup:
                conn.execute(store.listen_events)
            yield conn
        finally:
            if own:
                conn.close()
            elif wakeup and not conn.closed and not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("UNLISTEN *")


def _wait(conn: psycopg.Connection, seconds: float, wakeup: bool) -> None:
    """Sleep until the events channel says a batch arrived, or ``seconds`` pass (the backstop)."""
    if not wakeup:
        time.sleep(max(seconds, 0.0))
        return
    for _ in conn.notifies(timeout=max(seconds, 0.0), stop_after=1):
        pass


class State:
    """A monitor's picture from the events it was given (Celery's ``events.State``, the parts a
    monitor uses): ``workers`` (hostname → the worker's last event fields, ``alive``,
    ``last_heartbeat``), ``tasks`` (uuid → the task's last known fields and ``state``, the most
    recent ``max_tasks``) and ``counts`` (task state → tasks in it)."""

    def __init__(self, max_tasks: int = 10000, heartbeat_expires: float = 3 * 5.0):
        self.max_tasks = max_tasks
        self.heartbeat_expires = heartbeat_expires
        self.workers: dict[str, dict[str, Any]] = {}
        self.tasks: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.counts: collections.Counter[str] = collections.Counter()
        self.event_count = 0

    def event(self, event: Mapping[str, Any]) -> None:
        self.event_count += 1
        kind = event["type"]
        if kind.startswith("worker-"):
            worker = self.workers.setdefault(event.get("hostname") or "?", {})
            worker.update(event)
            worker["alive"] = kind != "worker-offline"
            worker["last_heartbeat"] = event["timestamp"]
            if "freq" in event:
                self.heartbeat_expires = max(3 * float(event["freq"]), 1.0)
            return
        uuid = event.get("uuid")
        state = TASK_STATES.get(kind)
        if uuid is None or state is None:
            return
        task = self.tasks.get(uuid)
        if task is None:
            task = self.tasks[uuid] = {}
            if len(self.tasks) > self.max_tasks:
                _, oldest = self.tasks.popitem(last=False)
                self.counts[oldest["state"]] -= 1
        else:
            self.tasks.move_to_end(uuid)
            self.counts[task["state"]] -= 1
        task.update(event)
        task["state"] = state
        self.counts[state] += 1

    def alive_workers(self, now: float | None = None) -> list[dict[str, Any]]:
        """Workers whose last event was not worker-offline and is recent (three heartbeats)."""
        now = time.time() if now is None else now
        return [w for w in self.workers.values()
                if w.get("alive") and now - float(w.get("last_heartbeat", 0)) < self.heartbeat_expires]


class Events:
    """``app.events``: Celery's ``app.events`` as far as a consumer uses it."""

    def __init__(self, app: App):
        self.app = app
        self.State = State

    def receiver(self, handlers: Mapping[str, Handler] | None = None, **options: Any) -> Receiver:
        """A receiver on its own connection (reconnects through outages); ``options``: ``since``,
        ``types``, ``names`` (see ``Receiver``)."""
        return Receiver(self.app, None, handlers, **options)

    def Receiver(self, connection: psycopg.Connection | None = None,  # noqa: N802 - Celery's name
                 handlers: Mapping[str, Handler] | None = None, **options: Any) -> Receiver:
        """Celery's spelling, ``app.events.Receiver(conn, handlers={...})`` with ``conn`` from
        ``app.connection()``: the receiver reads on that connection."""
        return Receiver(self.app, connection, handlers, **options)
