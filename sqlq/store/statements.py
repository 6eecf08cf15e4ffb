"""The statement registry: every SQL statement sqlq runs, read from the ``.sql`` files beside this
module and parsed once, at import.

One file per group of tables, run by the store module of the same name (``jobs.sql`` by
``store/jobs.py``). A file is a header comment saying what the group is, then one block per
statement::

    -- name: CLAIM
    -- Comment lines right after the name say why the statement is as it is (at least one line).
    WITH picked AS (
        ...

A block runs to the next ``-- name:`` line or to the end of the file, and its statement is all of
it after the description: no statement is assembled from pieces of others, so the text a reader
sees is the text the server runs. ``{jobs}``-style names are the schema's tables and channels, which
``Store`` fills in through psycopg's ``sql.SQL.format`` (identifiers quoted, never pasted);
``%(name)s`` are psycopg's parameters and ``%%`` is a literal ``%``.

A malformed file (text before the first block that is not a comment, a block without a description
or without a statement, a name given twice) fails the import with a ``ValueError`` naming the file
and line: it is a defect of the package, not of the user's setup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from typing import NamedTuple

#: The groups whose statements ``Store`` renders for its schema, each ``<group>.sql``.
SCHEMA_GROUPS = ("base", "jobs", "claims", "workers", "results", "schedules", "routes", "rate_limits",
                 "concurrency_limits", "groups", "workflows", "control", "queues", "unique", "events")
#: Statements on the server itself, run before any schema exists (store/server.py).
SERVER_GROUPS = ("server",)

_PACKAGE = __name__.rpartition(".")[0]
_NAME_LINE = re.compile(r"--\s*name:(.*)$")
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class Statement(NamedTuple):
    """One block of a ``.sql`` file."""

    name: str
    description: str  # the comment lines, without their ``--``
    text: str  # the statement, a template over the schema's names
    group: str  # the file's name without ``.sql``
    line: int  # where its ``-- name:`` line is, for messages


def parse(source: str, group: str) -> list[Statement]:
    """The blocks of one file's text, in order."""
    blocks: list[tuple[str, int, list[str]]] = []
    for number, line in enumerate(source.splitlines(), 1):
        match = _NAME_LINE.match(line)
        if match is not None:
            name = match.group(1).strip()
            if not _NAME.fullmatch(name):
                raise ValueError(f"{group}.sql:{number}: statement name {name!r} is not UPPER_SNAKE_CASE")
            blocks.append((name, number, []))
        elif blocks:
            blocks[-1][2].append(line)
        elif line.strip() and not line.startswith("--"):
            raise ValueError(f"{group}.sql:{number}: text before the first '-- name:' block must be comments")
    return [_statement(name, number, lines, group) for name, number, lines in blocks]


def _statement(name: str, number: int, lines: list[str], group: str) -> Statement:
    described = 0
    while described < len(lines) and lines[described].startswith("--"):
        described += 1
    description = "\n".join(line[2:].strip() for line in lines[:described]).strip()
    text = "\n".join(lines[described:]).strip()
    if not description:
        raise ValueError(f"{group}.sql:{number}: {name} has no description (comment lines after its name)")
    if not text:
        raise ValueError(f"{group}.sql:{number}: {name} has no statement")
    return Statement(name, description, text, group, number)


def load(groups: Iterable[str]) -> dict[str, Statement]:
    """Every statement of ``<group>.sql`` for each group, by name (unique across all of them)."""
    registry: dict[str, Statement] = {}
    for group in groups:
        source = (resources.files(_PACKAGE) / f"{group}.sql").read_text(encoding="utf-8")
        for statement in parse(source, group):
            earlier = registry.setdefault(statement.name, statement)
            if earlier is not statement:
                raise ValueError(f"{group}.sql:{statement.line}: {statement.name} is already defined in "
                                 f"{earlier.group}.sql:{earlier.line}")
    return registry


STATEMENTS: dict[str, Statement] = load(SCHEMA_GROUPS + SERVER_GROUPS)
