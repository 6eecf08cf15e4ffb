"""Unique jobs, the pure part: checking ``unique_key``/``unique_for``/``on_conflict`` and deriving a
task's key from a call (``@app.task(unique_on=...)``). No SQL: the store enforces the key
(store/unique.sql), this module only decides what the key is, so a bad option raises at the call.

A derived key is ``<task name>:<128-bit BLAKE2b of the canonical JSON of the chosen parts>`` (32 hex
digits): the same call gives the same key in every process (dict order does not matter, tagged
types compare by value), and the key, which every claim of the job writes again into the index,
stays short whatever the arguments weigh. A key given as ``unique_key=`` is used
as it is, so one key can be shared by several tasks.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import serialization
from .errors import ConfigurationError

#: What ``on_conflict=`` accepts: keep the job that holds the key (and return it), push that job's
#: eta and replace its arguments (debounce), or raise ``DuplicateJobError``.
ON_CONFLICT = ("skip", "replace", "error")
#: A btree entry must fit a third of a page; a key given by hand longer than this is refused with
#: the advice to hash it (derived keys are short by construction).
MAX_KEY_LENGTH = 1000

#: The parts of a call ``unique_on`` may name besides keyword-argument names.
_WHOLE = ("args", "kwargs")

UniqueOn = Sequence[str] | Callable[[Sequence[Any], Mapping[str, Any]], str]


def check_unique_on(task_name: str, unique_on: Any) -> None:
    """Refuse a task's ``unique_on`` that no call could use, when the task is defined."""
    if unique_on is None or callable(unique_on):
        return
    if isinstance(unique_on, str):
        raise ConfigurationError(
            f"{task_name}: unique_on must be a tuple such as ('args',) or ('kwargs',) or a tuple of keyword "
            f"argument names, or a callable (args, kwargs) -> str; got the string {unique_on!r} (write "
            f"({unique_on!r},))")
    if not isinstance(unique_on, list | tuple) or not unique_on \
            or not all(isinstance(part, str) and part for part in unique_on):
        raise ConfigurationError(
            f"{task_name}: unique_on must be a non-empty tuple of 'args', 'kwargs' or keyword argument names, "
            f"or a callable (args, kwargs) -> str; got {unique_on!r}")


def check_options(unique_key: Any, unique_for: Any, on_conflict: Any) -> None:
    """Refuse a bad ``unique_key``/``unique_for``/``on_conflict`` before anything is written."""
    if unique_key is not None:
        if not isinstance(unique_key, str) or not unique_key:
            raise ConfigurationError(f"unique_key must be a non-empty string, got {unique_key!r}")
        if len(unique_key) > MAX_KEY_LENGTH:
            raise ConfigurationError(
                f"unique_key is {len(unique_key)} characters long, at most {MAX_KEY_LENGTH} are allowed; pass a "
                f"hash of it (hashlib.sha256(key.encode()).hexdigest())")
    if unique_for is not None and (isinstance(unique_for, bool) or not isinstance(unique_for, int | float)
                                   or not 0 < unique_for < math.inf):
        raise ConfigurationError(f"unique_for must be a positive number of seconds, got {unique_for!r}")
    if on_conflict not in ON_CONFLICT:
        raise ConfigurationError(f"on_conflict must be one of {', '.join(map(repr, ON_CONFLICT))}, got {on_conflict!r}")


def derive_key(task_name: str, unique_on: UniqueOn, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
               run: Callable[..., Any] | None = None) -> str:
    """The key ``unique_on`` gives this call of ``task_name``.

    Keyword-argument names also find an argument passed by position, through ``run``'s signature
    (``add.delay(2, 3)`` and ``add.delay(x=2, y=3)`` get the same key for ``unique_on=('x',)``); a
    name the call does not pass counts as absent, not as an error, so calls relying on a default
    share their key."""
    args, kwargs = tuple(args or ()), dict(kwargs or {})
    if callable(unique_on):
        key = unique_on(args, kwargs)
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"{task_name}: the unique_on callable must return a non-empty string, returned {key!r}")
        return f"{task_name}:{key}"
    check_unique_on(task_name, unique_on)
    parts: dict[str, Any] = {}
    named: dict[str, Any] | None = None
    for part in unique_on:
        if part == "args":
            parts["args"] = list(args)
        elif part == "kwargs":
            parts["kwargs"] = kwargs
        else:
            if named is None:
                named = _bound(args, kwargs, run)
            if part in named:
                parts["kw:" + part] = named[part]
    return f"{task_name}:{digest(parts)}"


def key_hash(key: str) -> str:
    """The uuid a key is stored and indexed as (``jobs.unique_hash``): its 128-bit BLAKE2b. A
    16-byte entry compared as bytes, instead of the key's text under the database's collation,
    which every claim of a keyed job writes into the index again."""
    return str(uuid.UUID(bytes=hashlib.blake2b(key.encode(), digest_size=16, person=b"sqlq-unique").digest()))


def digest(value: Any) -> str:
    """A 128-bit BLAKE2b of ``value``'s canonical JSON: sqlq's tagged JSON (so a datetime or a UUID counts by
    its value), read back as plain JSON, tags and all, and written with sorted keys."""
    plain = json.loads(serialization.json_dumps(value))
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _bound(args: tuple[Any, ...], kwargs: dict[str, Any], run: Callable[..., Any] | None) -> dict[str, Any]:
    """The call's arguments by parameter name (keyword arguments alone when ``run``'s signature
    cannot place the positional ones)."""
    if run is None or not args:
        return kwargs
    try:
        return dict(inspect.signature(run).bind_partial(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        return kwargs
