"""The libpq fast path of a one-job write: a prepared statement run with ``PQexecPrepared``.

psycopg's ``execute`` adapts every parameter and tracks the statement, which is a large share of a
``delay()``'s client CPU (docs/architecture.md, "A delay() bypasses psycopg's adaptation"). The
statements run here have every parameter cast in their text, so they can be prepared once per
connection and sent text parameters encoded here; it is still one round trip.

Anything unusual (an error, a connection whose encoding is not UTF-8, a statement lost to
``DISCARD ALL`` or a transaction-mode bouncer) makes ``execute`` return None and the caller runs the
statement through psycopg instead (so does a connection that prepares nothing: the setting
``database_prepared_statements``), which either succeeds (the failed attempt wrote nothing: sqlq's
own connections are in autocommit) or raises the typed error callers expect. Only sqlq's own
pooled autocommit connections may come here: on a caller's connection this would bypass the BEGIN
psycopg issues for the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import weakref
import zlib
from dataclasses import dataclass
from typing import Any

import psycopg

#: The one-job statements run this way: each ``delay()``/``apply_async()`` is one of them.
STATEMENTS = ("ENQUEUE_NOW", "ENQUEUE", "PUBLISH_ONE")

#: Statements prepared here, by connection (psycopg does not know of them).
_PREPARED: weakref.WeakKeyDictionary[psycopg.Connection, set[bytes]] = weakref.WeakKeyDictionary()

_NO_SUCH_STATEMENT = "26000"  # invalid_sql_statement_name: e.g. after DISCARD ALL
_ALREADY_PREPARED = "42P05"  # duplicate_prepared_statement
_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s")


@dataclass(frozen=True, slots=True)
class FastStatement:
    """One of the store's statements in libpq's form."""

    name: bytes  # the prepared statement's name
    text: bytes  # with $1, $2, … for psycopg's %(name)s placeholders
    params: tuple[str, ...]  # the parameter for each $n, in order
    formats: tuple[int, ...]  # 1 (binary, raw bytes) for the bytea payload, 0 (text) for the rest

    @classmethod
    def of(cls, key: str, statement: str) -> FastStatement:
        """``statement`` (rendered, with psycopg's placeholders) under a name that changes with its
        text, so a connection never runs an older text prepared under the same name."""
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) is None:
                return "%"
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        text = _PLACEHOLDER.sub(number, statement).encode()
        return cls(b"sqlq_%s_%08x" % (key.lower().encode(), zlib.crc32(text)), text, tuple(names),
                   tuple(int(name == "payload") for name in names))


def execute(conn: psycopg.Connection, statement: FastStatement,
            params: dict[str, Any]) -> psycopg.pq.abc.PGresult | None:
    """Run ``statement`` on ``conn``, prepared there on first use; its result, or None when the
    caller must run it through psycopg instead. A connection lost under the statement (which may
    then have committed) fails psycopg's run too, with OperationalError, so the caller's handling
    of a broken connection takes over."""
    if conn.prepare_threshold is None:  # database_prepared_statements off: prepare nothing
        return None
    if statement.name not in _PREPARED.get(conn, ()) and not _prepare(conn, statement):
        return None
    res = conn.pgconn.exec_prepared(statement.name, [_wire(params[name]) for name in statement.params],  # type: ignore[misc]  # psycopg's annotation leaves out None (NULL), which libpq takes
                                    statement.formats)
    if res.status == psycopg.pq.ExecStatus.TUPLES_OK:
        return res
    if _sqlstate(res) == _NO_SUCH_STATEMENT:  # forgotten by the server: prepare them again
        _PREPARED.pop(conn, None)
    return None


def _prepare(conn: psycopg.Connection, statement: FastStatement) -> bool:
    """Prepare ``statement`` on ``conn``; False where the fast path cannot be used."""
    if conn.info.encoding != "utf-8":  # our parameters are UTF-8 bytes
        return False
    res = conn.pgconn.prepare(statement.name, statement.text)
    if res.status != psycopg.pq.ExecStatus.COMMAND_OK and _sqlstate(res) != _ALREADY_PREPARED:
        return False
    _PREPARED.setdefault(conn, set()).add(statement.name)
    return True


def _sqlstate(res: psycopg.pq.abc.PGresult) -> str | None:
    code = res.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
    return code.decode() if code else None


def _wire(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text input form (bytes as they are: the payload goes in binary)."""
    if value is None or type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode()
    if type(value) is bool:
        return b"t" if value else b"f"
    if isinstance(value, dt.datetime):
        return value.isoformat().encode()  # always aware here: naive times are made UTC up front
    return str(value).encode()  # int, float


def parse_text_array(value: bytes | None) -> list[str] | None:
    """A text[] in its text output form, for elements that never need quoting beyond a bare
    "NULL" word: job ids and validated queue names (no commas, quotes, braces or spaces)."""
    if value is None:
        return None
    inner = value[1:-1].decode()
    return [item.strip('"') for item in inner.split(",")] if inner else []
