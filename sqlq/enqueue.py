"""How a call becomes job rows, and how the rows get written: what ``App.build_job``,
``App.enqueue``, ``App.aenqueue`` and ``App.enqueue_calls`` are (App binds these functions as its
methods).

A call is validated and encoded before anything is written (``build_job``), so a bad argument
inserts nothing. The rows then go through the store on one of four kinds of connection: sqlq's own
pooled one (committed at once, the libpq fast path for one job), the caller's psycopg connection
or SQLAlchemy Connection/Session (inside the caller's transaction), and their async forms.

On sqlq's own connection a write whose connection broke under it is made once more, on a new
connection, guarded so that the jobs the first attempt committed are not written twice
(``Store.rewrite``); on the caller's connection nothing is retried, and the error says the caller's
transaction is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import psycopg

from . import serialization, signals, unique
from .concurrency_limits import compute_key
from .config import naive_timezone
from .db import broke, broke_in_transaction, raise_clear_error, write_lost
from .errors import ConfigurationError, DatabaseUnavailableError, DuplicateJobError, SerializationError
from .result import AsyncResult, GroupResult
from .routing import resolution
from .store import JobSpec, PublishRow, Store, UniqueWrite
from .store.unique import drive
from .task import (
    BROKER_OPTIONS,
    CALL_HEADER,
    RETRY_POLICY_KEYS,
    _current_request,
    task_uuid,
    unknown_options_message,
)

if TYPE_CHECKING:
    from .app import App
    from .task import Task

_PRIORITY_RANGE = range(-32768, 32768)
#: From this many calls on, a bulk enqueue streams its rows with COPY (enqueue_calls).
_STREAM_MIN = 64
#: Ids for a streamed bulk enqueue are made this many at a time, as the rows go.
_ID_CHUNK = 512


def build_job(app: App, task_name: str, args: Sequence[Any] | None, kwargs: dict[str, Any] | None, *,
              countdown: float | None = None, eta: dt.datetime | None = None,
              expires: float | dt.datetime | None = None, queue: str | None = None,
              priority: int | None = None, task_id: str | None = None, headers: dict[str, Any] | None = None,
              serializer: str | None = None, acks_late: bool | None = None,
              reject_on_worker_lost: bool | None = None,
              exchange: str | None = None, routing_key: str | None = None,
              unique_key: str | None = None, unique_for: float | None = None, on_conflict: str | None = None,
              task: Task | None = None, **call_options: Any) -> JobSpec:
    """Validate and encode one call. Nothing is written, so a bad argument inserts nothing.

    ``call_options`` are the rest of ``APPLY_OPTIONS`` (``_call_options``): those a worker needs (time
    limits, ignore_result, shadow) travel in the job's headers under the reserved key
    ``CALL_HEADER``, with a task id that is not a UUID and the parent and root task ids of a job
    sent from a running task. (Kept out of the signature so that a call without them pays one
    truth test.)

    ``unique_key``/``unique_for``/``on_conflict`` (defaults: the task's ``unique_on``, ``unique_for``,
    ``on_conflict``) make a keyed job, written by the store's unique path (store/unique.py)."""
    _check_call(args, kwargs)
    ctype, args_json, kwargs_json, payload = serialization.encode_call(
        args or (), kwargs or {}, serializer or app.conf.task_serializer
    )
    dest = resolution.resolve(app.conf, task_name, args, kwargs, task=task, queue=queue, exchange=exchange,
                          routing_key=routing_key, priority=priority)
    priority = app.conf.task_default_priority if dest.priority is None else dest.priority
    if not isinstance(priority, int) or priority not in _PRIORITY_RANGE:
        raise ConfigurationError(f"priority must be an integer from -32768 to 32767, got {priority!r}")
    if countdown is not None and eta is not None:
        raise ConfigurationError("pass either countdown= or eta=, not both")
    expires_at = expires_in = None
    if isinstance(expires, dt.datetime):
        expires_at = expires if expires.tzinfo else expires.replace(tzinfo=naive_timezone(app.conf))
    elif expires is not None:
        expires_in = float(expires)
    if eta is not None and eta.tzinfo is None:
        eta = eta.replace(tzinfo=naive_timezone(app.conf))  # UTC unless enable_utc=False
    if task_id:
        job_id, call = _job_id(task_id)
    else:
        job_id, call = new_job_id(), None
    if call_options:
        call = _call_options(task_name, call, **call_options)
    parent = _current_request.get()
    root_row = parent_row = None
    if parent is not None and parent.id is not None:  # sent from a running task: Celery's parent/root ids
        call = dict(call or {}, parent_id=parent.id, root_id=parent.root_id or parent.id)
        parent_row, root_row = task_uuid(parent.id), task_uuid(parent.root_id or parent.id)
    if call is not None:
        if headers and CALL_HEADER in headers:
            raise ConfigurationError(f"the header {CALL_HEADER!r} is reserved for sqlq's per-call options; "
                                     f"name your header differently")
        headers = dict(headers or {}, **{CALL_HEADER: call})
    try:
        headers_json = serialization.json_dumps(headers) if headers else "{}"  # (NaN, NUL: refused)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"headers must be JSON-serializable: {exc}") from None
    rerun_lost = app.conf.task_acks_late if acks_late is None else bool(acks_late)
    if reject_on_worker_lost is False:
        rerun_lost = False  # Celery: with acks_late, a lost worker's job is FAILURE WorkerLostError
    key_fn = _key_function(app, task_name, task)
    if unique_key is not None or unique_for is not None or on_conflict is not None \
            or (task is not None and task.unique_on is not None):
        unique_key, unique_for, on_conflict = _unique_options(task_name, args, kwargs, task, unique_key,
                                                              unique_for, on_conflict)
        if unique_key is not None and dest.exchange is not None:
            raise ConfigurationError(
                f"{task_name}: unique_key cannot be used with an exchange (a routed publish may write a job to "
                f"several queues); send it to a queue (queue=...) instead")
    return JobSpec(
        id=job_id, concurrency_key=None if key_fn is None else compute_key(key_fn, task_name, args, kwargs),
        task=task_name, queue=dest.queue or "", priority=priority, content_type=ctype, args=args_json,
        kwargs=kwargs_json, payload=payload, headers=headers_json, eta=eta,
        countdown=float(countdown) if countdown is not None else None,
        expires_at=expires_at, expires_in=expires_in,
        acks_late=rerun_lost,
        exchange=dest.exchange, routing_key=dest.routing_key, root_id=root_row, parent_id=parent_row,
        unique_key=unique_key, unique_for=None if unique_for is None else float(unique_for),
        on_conflict=on_conflict or "skip",
    )


def _unique_options(task_name: str, args: Sequence[Any] | None, kwargs: dict[str, Any] | None, task: Task | None,
                    unique_key: str | None, unique_for: float | None,
                    on_conflict: str | None) -> tuple[str | None, float | None, str]:
    """The call's unique options, the task's filling in those the call leaves out: its key derived
    from the call by ``unique_on`` unless ``unique_key=`` is given. A task's ``unique_for`` and
    ``on_conflict`` apply to its keyed calls; a call that passes them itself must have a key."""
    if (unique_for is not None or on_conflict is not None) and unique_key is None \
            and (task is None or task.unique_on is None):
        raise ConfigurationError(
            f"{task_name}: unique_for= and on_conflict= need a unique key: pass unique_key=... or give the "
            f"task unique_on=...")
    if task is not None:
        on_conflict = on_conflict or task.on_conflict
        unique_for = task.unique_for if unique_for is None else unique_for
    on_conflict = on_conflict or "skip"
    unique.check_options(unique_key, unique_for, on_conflict)
    if unique_key is None and task is not None and task.unique_on is not None:
        unique_key = unique.derive_key(task_name, task.unique_on, args, kwargs, task.run)
    if unique_key is None:
        return None, None, "skip"
    return unique_key, unique_for, on_conflict


def _job_id(task_id: str) -> tuple[str, dict[str, Any] | None]:
    """The row id for a caller's ``task_id``, and the call header that carries the id itself when
    the row's UUID spells it differently (any string is a task id, as in Celery; ``task_uuid``)."""
    if isinstance(task_id, uuid.UUID):
        return str(task_id), None
    if not isinstance(task_id, str):
        raise ConfigurationError(f"task_id must be a string, got {type(task_id).__name__} {task_id!r}")
    job_id = task_uuid(task_id)
    return job_id, (None if job_id == task_id else {"id": task_id})


def _call_options(task_name: str, call: dict[str, Any] | None, *, time_limit: float | None = None,
                  soft_time_limit: float | None = None, ignore_result: bool | None = None,
                  shadow: str | None = None, retry: bool | None = None, retry_policy: dict[str, Any] | None = None,
                  add_to_parent: bool = True, argsrepr: str | None = None, kwargsrepr: str | None = None,
                  **broker_options: Any) -> dict[str, Any] | None:
    """The per-call options a worker reads (into ``call``), each checked here so that a bad one
    raises at the call, not in the worker.

    ``broker_options`` are ``BROKER_OPTIONS``, accepted and without effect (there is no broker);
    ``retry``/``retry_policy`` are checked: sqlq's own connection retries a broken write once,
    whatever they say; ``add_to_parent`` is the sender's (``Task.apply_async``) to act on."""
    for option in ("link", "link_error"):
        if option in broker_options:
            raise ConfigurationError(
                f"{option} is run by the database after the job's outcome, which a job built alone (build_job, "
                f"apply_many, delay_many) does not carry: send with {task_name}.apply_async({option}=...) or "
                f"sig.{'link' if option == 'link' else 'on_error'}(...)")
    if broker_options and not BROKER_OPTIONS.issuperset(broker_options):
        raise ConfigurationError(unknown_options_message(f"{task_name}.apply_async",
                                                         set(broker_options) - BROKER_OPTIONS))
    if not isinstance(add_to_parent, bool):
        raise ConfigurationError(f"add_to_parent must be True or False, got {add_to_parent!r}")
    call = dict(call or {})
    for key, limit in (("time_limit", time_limit), ("soft_time_limit", soft_time_limit)):
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 < limit < float("inf"):
            raise ConfigurationError(f"{key} must be a positive number of seconds, got {limit!r}")
        call[key] = float(limit)
    if ignore_result is not None:
        if not isinstance(ignore_result, bool):
            raise ConfigurationError(f"ignore_result must be True or False, got {ignore_result!r}")
        call["ignore_result"] = ignore_result
    for key, shown in (("argsrepr", argsrepr), ("kwargsrepr", kwargsrepr)):
        if shown is not None:
            if not isinstance(shown, str):
                raise ConfigurationError(f"{key} must be a string (what is shown instead of the arguments), "
                                         f"got {type(shown).__name__}")
            call[key] = shown
    if shadow is not None:
        if not isinstance(shadow, str) or not shadow:
            raise ConfigurationError(f"shadow must be a non-empty string (the name logs show), got {shadow!r}")
        call["shadow"] = shadow
    if retry is not None and not isinstance(retry, bool):
        raise ConfigurationError(f"retry must be True or False, got {retry!r}")
    if retry_policy is not None:
        if not isinstance(retry_policy, dict):
            raise ConfigurationError(f"retry_policy must be a dict, got {type(retry_policy).__name__}")
        unknown = set(retry_policy) - RETRY_POLICY_KEYS
        if unknown:
            raise ConfigurationError(
                f"unknown retry_policy key(s) {', '.join(sorted(unknown))}; Celery's keys are "
                f"{', '.join(sorted(RETRY_POLICY_KEYS))}")
    return call or None


def build_jobs(app: App, task_name: str, calls: Iterable[tuple[Sequence[Any] | None, dict[str, Any] | None]], *,
               task: Task | None = None, **options: Any) -> list[JobSpec]:
    """``build_job`` for many calls with the same options.

    Options and routing are resolved once, from the first call, unless a router function could
    route each call differently; then only the arguments are encoded per call, which is what
    makes bulk enqueue fast."""
    calls = list(calls)
    if not calls:
        return []
    if "task_id" in options or not resolution.routes_by_name_only(app.conf.task_routes) or _keyed(task, options):
        return [app.build_job(task_name, a, k, task=task, **options) for a, k in calls]
    first = app.build_job(task_name, *calls[0], task=task, **options)
    serializer = options.get("serializer") or app.conf.task_serializer
    key_fn = _key_function(app, task_name, task)
    specs = [first]
    for args, kwargs in calls[1:]:
        _check_call(args, kwargs)
        ctype, args_json, kwargs_json, payload = serialization.encode_call(args or (), kwargs or {}, serializer)
        specs.append(JobSpec(
            id=new_job_id(), task=task_name, queue=first.queue, priority=first.priority, content_type=ctype,
            args=args_json, kwargs=kwargs_json, payload=payload, headers=first.headers, eta=first.eta,
            countdown=first.countdown, expires_at=first.expires_at, expires_in=first.expires_in,
            acks_late=first.acks_late, exchange=first.exchange, routing_key=first.routing_key,
            root_id=first.root_id, parent_id=first.parent_id,
            concurrency_key=None if key_fn is None else compute_key(key_fn, task_name, args, kwargs)))
    return specs


def _key_function(app: App, task_name: str, task: Task | None) -> Any:
    """The ``concurrency_key`` of the task a call is for (its definition in this app when sent by
    name), or None: the job is counted under its task alone."""
    definition = task if task is not None else app.tasks.get(task_name)
    return getattr(definition, "concurrency_key", None)


def enqueue_calls(app: App, task_name: str, calls: Iterable[tuple[Sequence[Any] | None, dict[str, Any] | None]], *,
                  task: Task | None = None, connection: Any = None, group_id: str | None = None,
                  **options: Any) -> list[AsyncResult | GroupResult]:
    """``build_jobs`` and ``enqueue`` in one: bulk enqueue of many calls with the same options
    (``group_id``: the members of one group, ``sqlq.group``'s).

    When the jobs are due now, JSON-encoded, not routed, and written on sqlq's own connection,
    each call is encoded while the rows stream to PostgreSQL in one COPY, so the encoding
    overlaps the server's work instead of preceding it; a call that cannot be encoded aborts
    the COPY, so nothing is written, as on the other path."""
    calls = calls if isinstance(calls, list) else list(calls)
    if len(calls) >= _STREAM_MIN and connection is None and "task_id" not in options \
            and _key_function(app, task_name, task) is None \
            and resolution.routes_by_name_only(app.conf.task_routes) and not _keyed(task, options) \
            and not (signals.before_task_publish.has_receivers or signals.after_task_publish.has_receivers) \
            and not app.conf.task_send_sent_event:  # (task-sent events are written from the rows: enqueue's)
        first = app.build_job(task_name, *calls[0], task=task, **options)
        first.group_id = group_id
        if first.due_now() and first.content_type == serialization.JSON:
            results: list[AsyncResult | GroupResult] = []
            conn = None
            try:
                with app._connections.connection() as conn:
                    app.store.copy_jobs(conn, _json_rows(app, first, calls, results), [first.queue],
                                         lean=first.copies_lean())
                return results
            except psycopg.OperationalError as exc:
                if conn is None or not broke(conn, exc):
                    raise
                lost = exc
            # The COPY's connection broke: write the batch again, with the ids its rows had so far
            specs = _grouped(app.build_jobs(task_name, calls, task=task, **options), group_id)
            for spec, sent in zip(specs, results, strict=False):
                spec.id = cast(AsyncResult, sent).id  # (the COPY made AsyncResults only)
            _rewrite(app, specs, lost)
            return [AsyncResult(s.id, app, s.task) for s in specs]
    return app.enqueue(_grouped(app.build_jobs(task_name, calls, task=task, **options), group_id),
                       connection=connection)


def _keyed(task: Task | None, options: dict[str, Any]) -> bool:
    """Whether calls with these options get a unique key (each call its own, by the task's
    ``unique_on``), so that they are built one by one and written by the unique path."""
    return options.get("unique_key") is not None or (task is not None and task.unique_on is not None)


def _grouped(specs: list[JobSpec], group_id: str | None) -> list[JobSpec]:
    """``specs`` as members of the group ``group_id`` (unchanged when None)."""
    if group_id is not None:
        for spec in specs:
            spec.group_id = group_id
    return specs


def _json_rows(app: App, first: JobSpec, calls: list[tuple[Sequence[Any] | None, dict[str, Any] | None]],
               results: list[AsyncResult | GroupResult]) -> Iterator[tuple[Any, ...]]:
    """COPY_JOBS rows for ``calls``, encoded one by one (ids too, a chunk at a time), each
    call's ``AsyncResult`` appended to ``results``; ``first`` gives the shared columns."""
    encode = serialization.encode_json_call
    name, queue, priority, ctype = first.task, first.queue, first.priority, first.content_type
    headers, acks_late, keep, lean = first.headers, first.acks_late, results.append, first.copies_lean()
    root_id, parent_id, group_id = first.root_id, first.parent_id, first.group_id
    for start in range(0, len(calls), _ID_CHUNK):
        chunk = calls[start:start + _ID_CHUNK]
        ids = new_job_ids(len(chunk))
        if start == 0:
            ids[0] = first.id
        for job_id, (args, kwargs) in zip(ids, chunk, strict=True):
            _check_call(args, kwargs)
            args_json, kwargs_json = encode(args, kwargs)
            keep(AsyncResult(job_id, app, name))
            if lean:  # COPY_JOBS_LEAN's columns
                yield (job_id, name, queue, "available", args_json, kwargs_json)
            else:
                yield (job_id, name, queue, priority, "available", args_json, kwargs_json, None, ctype,
                       headers, acks_late, group_id, root_id, parent_id, None)  # (no key: _key_function)


def enqueue(app: App, specs: Sequence[JobSpec], connection: Any = None) -> list[AsyncResult | GroupResult]:
    """Write jobs: on a pooled connection (committed at once), or in the caller's transaction.

    Jobs routed through an exchange (``spec.exchange``) return an ``AsyncResult`` when they reach
    one queue and a ``GroupResult`` when they reach several (sqlq/routing/published.py).

    On a pooled connection, a connection that breaks under the write (a server restart, a
    terminated backend, a network cut) costs the caller nothing: the write is made once more
    on a new connection, guarded so that jobs the first attempt committed are not written
    twice (``Store.rewrite``); if that fails too, a ``DatabaseUnavailableError`` names the
    jobs. On the caller's connection nothing is retried: a broken connection raises a
    ``DatabaseUnavailableError`` saying the caller's transaction is gone.
    """
    store = app.store
    if any(s.unique_key is not None for s in specs):
        return _enqueue_keyed(app, specs, connection)
    if signals.before_task_publish.has_receivers:
        signals.send_before_publish(specs)
    sent = app.conf.task_send_sent_event
    if connection is None:
        conn = None
        try:
            with app._connections.connection() as conn:
                if sent:  # the jobs and their task-sent events in one transaction
                    with conn.transaction():
                        rows = _write(store, conn, specs)
                        store.events_sent(conn, sent_hostname(), [s.id for s in specs])
                else:
                    rows = _write(store, conn, specs, own=True)
        except psycopg.OperationalError as exc:
            if conn is None or not broke(conn, exc):
                raise
            rows = _rewrite(app, specs, exc)
    else:
        rows = _write_on(app, connection, store, specs, sent=sent)
    if signals.after_task_publish.has_receivers:
        signals.send_after_publish(specs)
    if rows is not None:
        from .routing import published  # (only routed jobs need it)

        return published.results(app, specs, rows)
    return [AsyncResult(s.id, app, s.task) for s in specs]


async def aenqueue(app: App, specs: Sequence[JobSpec], connection: Any = None) -> list[AsyncResult | GroupResult]:
    """``enqueue`` for the async API, with the same retry on a pooled connection that broke."""
    store = app.store
    if any(s.unique_key is not None for s in specs):
        return await _aenqueue_keyed(app, specs, connection)
    if signals.before_task_publish.has_receivers:
        signals.send_before_publish(specs)
    sent = app.conf.task_send_sent_event
    if connection is None:
        conn = None
        try:
            async with app._connections.async_pool().connection() as conn:
                if sent:  # the jobs and their task-sent events in one transaction
                    async with conn.transaction():
                        rows = await _awrite(app, store, conn, specs)
                        await store.aevents_sent(conn, sent_hostname(), [s.id for s in specs])
                else:
                    rows = await _awrite(app, store, conn, specs)
        except psycopg.OperationalError as exc:
            if conn is None or not broke(conn, exc):
                raise
            rows = await _arewrite(app, specs, exc)
    elif isinstance(connection, psycopg.AsyncConnection):
        in_transaction = _in_transaction(connection)
        try:
            rows = await _awrite(app, store, connection, specs)
            if sent:
                await store.aevents_sent(connection, sent_hostname(), [s.id for s in specs])
        except psycopg.OperationalError as exc:
            if broke(connection, exc):
                raise broke_in_transaction([s.id for s in specs], exc, in_transaction) from exc
            raise
    else:
        statement, params = store.write_statement(specs)
        conn = await _async_sqlalchemy_connection(connection)
        driver = (await conn.get_raw_connection()).driver_connection
        try:
            if isinstance(driver, psycopg.AsyncConnection) and store.routed(specs):
                await store.aprepare_routed(driver, specs)  # typed exchanges, broadcast prune
            result = await conn.exec_driver_sql(statement, params)
            rows = [PublishRow(*row) for row in result.fetchall()] if store.routed(specs) else None
            if sent:
                await conn.exec_driver_sql(*store.events_sent_statement(sent_hostname(), [s.id for s in specs]))
        except Exception as exc:
            orig = getattr(exc, "orig", exc)
            if isinstance(driver, psycopg.AsyncConnection) and broke(driver, orig):
                raise broke_in_transaction([s.id for s in specs], orig, True) from exc
            raise_clear_error(orig, app.conf.schema)
            raise
    if signals.after_task_publish.has_receivers:
        signals.send_after_publish(specs)
    if rows is not None:
        from .routing import published  # (only routed jobs need it)

        return published.results(app, specs, rows)
    return [AsyncResult(s.id, app, s.task) for s in specs]


def _enqueue_keyed(app: App, specs: Sequence[JobSpec], connection: Any) -> list[AsyncResult | GroupResult]:
    """``enqueue`` of a batch with keyed jobs: those go through the store's unique path (INSERT … ON
    CONFLICT on the key), the others as usual, all in one transaction; each result is the job that
    holds the call's key (its own, or the one that held it: same id). On sqlq's own connection a
    broken connection makes the whole batch run once more on a new one: a keyed job the first
    attempt committed then holds its own key, so the retry finds it and writes nothing twice."""
    store = app.store
    _check_keyed_batch(store, specs)
    if signals.before_task_publish.has_receivers:
        signals.send_before_publish(specs)
    if connection is None:
        conn = None
        try:
            with app._connections.connection() as conn, conn.transaction():
                writes = _write_keyed(store, conn, specs, own=True)
        except psycopg.OperationalError as exc:
            if conn is None or not broke(conn, exc):
                raise
            app._connections.discard_idle()
            try:
                with app._connections.connection() as conn, conn.transaction():
                    writes = _write_keyed(store, conn, specs, own=True)
            except (psycopg.OperationalError, DatabaseUnavailableError) as again:
                raise write_lost([s.id for s in specs], exc, again) from again
    else:
        writes = _write_keyed_on(app, connection, store, specs)
    if signals.after_task_publish.has_receivers:
        signals.send_after_publish(specs)
    return [AsyncResult(w.id if w is not None else s.id, app, s.task) for s, w in zip(specs, writes, strict=True)]


async def _aenqueue_keyed(app: App, specs: Sequence[JobSpec], connection: Any) -> list[AsyncResult | GroupResult]:
    """``_enqueue_keyed`` for the async API (a psycopg AsyncConnection of the caller's, or sqlq's own)."""
    store = app.store
    if connection is not None and not isinstance(connection, psycopg.AsyncConnection):
        raise ConfigurationError(
            "a job with a unique key is written by the async API on sqlq's own connection or a psycopg "
            "AsyncConnection; for a SQLAlchemy AsyncConnection/AsyncSession, send it with the sync API on "
            "the session's sync connection, or without a key")
    _check_keyed_batch(store, specs)
    if signals.before_task_publish.has_receivers:
        signals.send_before_publish(specs)
    keyed = [s for s in specs if s.unique_key is not None]
    plain = [s for s in specs if s.unique_key is None]
    if connection is None:
        async with app._connections.async_pool().connection() as conn, conn.transaction():
            if plain:
                await _awrite(app, store, conn, plain)
            done = await store.aenqueue_unique(conn, keyed)
    else:
        try:
            async with connection.transaction() if connection.autocommit else _anull():
                if plain:
                    await _awrite(app, store, connection, plain)
                done = await store.aenqueue_unique(connection, keyed)
        except psycopg.OperationalError as exc:
            if broke(connection, exc):
                raise broke_in_transaction([s.id for s in specs], exc, _in_transaction(connection)) from exc
            raise
    writes = _conflicts(specs, done)
    if signals.after_task_publish.has_receivers:
        signals.send_after_publish(specs)
    return [AsyncResult(w.id if w is not None else s.id, app, s.task) for s, w in zip(specs, writes, strict=True)]


@contextlib.asynccontextmanager
async def _anull() -> AsyncIterator[None]:
    """An async context that does nothing (the caller's transaction is already open)."""
    yield None


def _check_keyed_batch(store: Store, specs: Sequence[JobSpec]) -> None:
    """Refuse a batch that mixes keyed jobs with jobs routed through an exchange (whose results
    are per queue reached): nothing is written."""
    if store.routed([s for s in specs if s.unique_key is None]):
        raise ConfigurationError("a batch with unique keys cannot also hold jobs routed through an exchange; "
                                 "send the routed jobs in a call of their own")


def _write_keyed(store: Store, conn: psycopg.Connection, specs: Sequence[JobSpec], *,
                 own: bool = False) -> list[UniqueWrite | None]:
    """Write a batch with keyed jobs on a psycopg connection; per spec, what its key's write did
    (None for a job without a key). A call whose key is held with ``on_conflict='error'`` raises
    ``DuplicateJobError`` here, so on sqlq's own connection nothing of the batch is written."""
    plain = [s for s in specs if s.unique_key is None]
    if plain:
        if len(plain) == 1:
            store.enqueue(conn, plain[0])  # (not own: the fast path would leave the transaction)
        else:
            store.enqueue_many(conn, plain)
    return _conflicts(specs, store.enqueue_unique(conn, [s for s in specs if s.unique_key is not None]))


def _conflicts(specs: Sequence[JobSpec], done: list[UniqueWrite]) -> list[UniqueWrite | None]:
    """``done`` (the keyed specs' writes, in order) placed beside every spec; raises the
    ``DuplicateJobError`` of the first keyed call with ``on_conflict='error'`` whose key was held."""
    writes: list[UniqueWrite | None] = []
    it = iter(done)
    for spec in specs:
        if spec.unique_key is None:
            writes.append(None)
            continue
        write = next(it)
        if spec.on_conflict == "error" and not write.written:
            raise DuplicateJobError(
                f"{spec.task}: unique key {spec.unique_key!r} is held by job {write.id} (waiting, running, or "
                f"within its unique_for window); nothing was written. Use on_conflict='skip' to get that job's "
                f"result instead, or 'replace' to update a waiting one")
        writes.append(write)
    return writes


def _write_keyed_on(app: App, connection: Any, store: Store, specs: Sequence[JobSpec]) -> list[UniqueWrite | None]:
    """``_write_keyed`` on the caller's connection: psycopg, Django's, or a SQLAlchemy
    Connection/Session (each statement through its driver, in the caller's transaction)."""
    if type(connection).__module__.startswith("django."):
        connection = _django_connection(connection)
    if isinstance(connection, psycopg.Connection):
        in_transaction = _in_transaction(connection)
        try:
            # (an autocommit connection gets a transaction of its own: an insert may be taken back)
            with connection.transaction() if connection.autocommit else contextlib.nullcontext():
                return _write_keyed(store, connection, specs)
        except psycopg.Error as exc:
            if broke(connection, exc):
                raise broke_in_transaction([s.id for s in specs], exc, in_transaction) from exc
            raise_clear_error(exc, app.conf.schema)
            raise
    conn = _sqlalchemy_connection(connection)
    driver = conn.connection.driver_connection

    def run(statement: str, params: dict[str, Any]) -> list[Sequence[Any]]:
        result = conn.exec_driver_sql(statement, params)
        return list(result.fetchall()) if result.returns_rows else []

    try:
        plain = [s for s in specs if s.unique_key is None]
        if plain:
            statement, params = store.write_statement(plain)
            conn.exec_driver_sql(statement, params)
        done = [drive(store.unique_steps(s), run) for s in specs if s.unique_key is not None]
    except Exception as exc:
        orig = getattr(exc, "orig", exc)
        if isinstance(driver, psycopg.Connection) and broke(driver, orig):
            raise broke_in_transaction([s.id for s in specs], orig, True) from exc
        raise_clear_error(orig, app.conf.schema)
        raise
    return _conflicts(specs, done)


def _rewrite(app: App, specs: Sequence[JobSpec], lost: BaseException) -> list[PublishRow] | None:
    """The one retry of a write whose pooled connection broke (``lost``): ``Store.rewrite`` on a
    new connection (the pool's idle ones went with the broken one: they were most likely cut too),
    or the error that says the first attempt's fate is unknown."""
    app._connections.discard_idle()
    try:
        with app._connections.connection() as conn:
            return app.store.rewrite(conn, specs)
    except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
        raise write_lost([s.id for s in specs], lost, exc) from exc


async def _arewrite(app: App, specs: Sequence[JobSpec], lost: BaseException) -> list[PublishRow] | None:
    """``_rewrite`` for the async API."""
    try:
        async with app._connections.async_pool().connection() as conn:
            try:
                return await app.store.arewrite(conn, specs)
            except psycopg.Error as exc:
                raise_clear_error(exc, app.conf.schema)
                raise
    except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
        raise write_lost([s.id for s in specs], lost, exc) from exc


def _write(store: Store, conn: psycopg.Connection, specs: Sequence[JobSpec], *,
           own: bool = False) -> list[PublishRow] | None:
    """Returns PUBLISH's rows for routed jobs (None otherwise). ``own``: a pooled connection."""
    if store.routed(specs):
        return store.publish(conn, specs, own=own)
    if len(specs) == 1:
        store.enqueue(conn, specs[0], own=own)
    else:
        store.enqueue_many(conn, specs)
    return None


def _write_on(app: App, connection: Any, store: Store, specs: Sequence[JobSpec], *,
              sent: bool = False) -> list[PublishRow] | None:
    """The caller's connection: psycopg, Django's (``django.db.connection``: its psycopg connection,
    so inside ``transaction.atomic()`` the job commits and rolls back with the block), or SQLAlchemy
    Connection/Session (their transaction). ``sent``: the task-sent events follow the write, in
    the caller's transaction."""
    if type(connection).__module__.startswith("django."):
        connection = _django_connection(connection)
    if isinstance(connection, psycopg.Connection):
        in_transaction = _in_transaction(connection)
        try:
            rows = _write(store, connection, specs)
            if sent:
                store.events_sent(connection, sent_hostname(), [s.id for s in specs])
            return rows
        except psycopg.Error as exc:
            if broke(connection, exc):
                raise broke_in_transaction([s.id for s in specs], exc, in_transaction) from exc
            raise_clear_error(exc, app.conf.schema)
            raise
    statement, params = store.write_statement(specs)
    conn = _sqlalchemy_connection(connection)
    driver = conn.connection.driver_connection  # (SQLAlchemy drops it when it sees the break)
    try:
        if isinstance(driver, psycopg.Connection) and store.routed(specs):
            store.prepare_routed(driver, specs)  # typed exchanges, broadcast prune: as PUBLISH's own path
        result = conn.exec_driver_sql(statement, params)
        rows = [PublishRow(*row) for row in result.fetchall()] if store.routed(specs) else None
        if sent:
            conn.exec_driver_sql(*store.events_sent_statement(sent_hostname(), [s.id for s in specs]))
    except Exception as exc:
        orig = getattr(exc, "orig", exc)
        if isinstance(driver, psycopg.Connection) and broke(driver, orig):
            raise broke_in_transaction([s.id for s in specs], orig, True) from exc
        raise_clear_error(orig, app.conf.schema)
        raise
    return rows


async def _awrite(app: App, store: Store, conn: psycopg.AsyncConnection,
                  specs: Sequence[JobSpec]) -> list[PublishRow] | None:
    try:
        if store.routed(specs):
            return await store.apublish(conn, specs)
        if len(specs) == 1:
            await store.aenqueue(conn, specs[0])
        else:
            await store.aenqueue_many(conn, specs)
    except psycopg.Error as exc:
        raise_clear_error(exc, app.conf.schema)
        raise
    return None


def _in_transaction(conn: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    """Whether a write on the caller's ``conn`` is part of a transaction of theirs (one already
    open, or the one psycopg opens for it on a connection not in autocommit)."""
    return not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def _check_call(args: Any, kwargs: Any) -> None:
    if args is not None and not isinstance(args, list | tuple):
        raise SerializationError(f"args must be a list or tuple, not {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise SerializationError(f"kwargs must be a dict, not {type(kwargs).__name__}")


def new_job_id() -> str:
    """A UUIDv7-style id: time-ordered, so the results primary key grows at its right edge
    instead of splitting random btree pages on every insert. 48 bits of milliseconds, the version
    and variant bits, 74 random bits; formatted by hand, a fraction of ``str(uuid.UUID(...))``'s cost."""
    return _format_job_id(f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}", os.urandom(10).hex())


def new_job_ids(n: int) -> list[str]:
    """``n`` ids for one bulk enqueue: one clock read and one ``urandom`` call for them all."""
    stamp = f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}"
    rand = os.urandom(10 * n).hex()
    return [_format_job_id(stamp, rand[i:i + 20]) for i in range(0, 20 * n, 20)]


def _format_job_id(stamp: str, rand: str) -> str:
    """``stamp``: 12 hex digits of time; ``rand``: 20 random hex digits (74 bits are used)."""
    return f"{stamp[:8]}-{stamp[8:]}-7{rand[:3]}-{_VARIANT[rand[3]]}{rand[4:7]}-{rand[7:19]}"


#: RFC 9562 variant bits (10xx) in the first digit of the fourth group, keeping two random bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _django_connection(obj: Any) -> psycopg.Connection:
    """The psycopg connection under a Django database connection (``sqlq.contrib.django.database``
    says which Django connections can carry a job); imported here only, so that ``import sqlq``
    never imports Django."""
    from .contrib.django.database import psycopg_connection

    return psycopg_connection(obj)


def _sqlalchemy_connection(obj: Any) -> Any:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    if isinstance(obj, Session):
        return obj.connection()
    if isinstance(obj, Connection):
        return obj
    raise ConfigurationError(
        f"connection= must be a SQLAlchemy Connection or Session, or a psycopg Connection "
        f"(async ones with the async API); got {type(obj).__name__}"
    )


async def _async_sqlalchemy_connection(obj: Any) -> Any:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(obj, AsyncSession):
        return await obj.connection()
    if isinstance(obj, AsyncConnection):
        return obj
    raise ConfigurationError(
        f"connection= for the async API must be a SQLAlchemy AsyncConnection or AsyncSession, or a "
        f"psycopg AsyncConnection; got {type(obj).__name__}"
    )


@functools.cache
def sent_hostname() -> str:
    """The producer's name in its task-sent events (Celery's: the sending host's)."""
    return socket.gethostname()
