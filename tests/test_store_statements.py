"""The statement registry (sqlq/store/statements.py and the .sql files beside it), without a server:
the format is parsed strictly, every statement is described, well formed and run by its store
module, and the statements written out whole in several variants stay in step."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest
from psycopg import sql

from sqlq.result import rebuild_exception
from sqlq.store import Store
from sqlq.store.records import ScheduleRow
from sqlq.store.statements import SCHEMA_GROUPS, SERVER_GROUPS, STATEMENTS, parse

STORE_DIR = Path(__file__).resolve().parent.parent / "sqlq" / "store"


# --- the format ---------------------------------------------------------------------------------

def test_a_file_parses_into_named_described_statements():
    source = "-- the header\n\n-- name: ONE\n-- why one\n--\n-- and more\nSELECT 1\n\n\n-- name: TWO\n-- why two\nSELECT\n  2\n"
    one, two = parse(source, "demo")
    assert (one.name, one.description, one.text, one.group, one.line) == ("ONE", "why one\n\nand more", "SELECT 1",
                                                                         "demo", 3)
    assert (two.name, two.description, two.text) == ("TWO", "why two", "SELECT\n  2")


@pytest.mark.parametrize("source, message", [
    ("SELECT 1\n-- name: ONE\n-- why\nSELECT 1\n", "demo.sql:1: text before the first"),
    ("-- name: ONE\nSELECT 1\n", "demo.sql:1: ONE has no description"),
    ("-- name: ONE\n-- why\n\n-- name: TWO\n-- why\nSELECT 2\n", "demo.sql:1: ONE has no statement"),
    ("-- name: one\n-- why\nSELECT 1\n", "statement name 'one' is not UPPER_SNAKE_CASE"),
])
def test_a_malformed_file_is_refused_with_its_line(source, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(source, "demo")


# --- the shipped statements ---------------------------------------------------------------------

def test_every_block_of_every_file_is_registered_once():
    groups = SCHEMA_GROUPS + SERVER_GROUPS
    names = [m.group(1) for group in groups
             for m in re.finditer(r"^-- name: (\w+)", (STORE_DIR / f"{group}.sql").read_text(), re.M)]
    assert len(names) == len(set(names)) == len(STATEMENTS)
    assert sorted(STORE_DIR.glob("*.sql")) == sorted(STORE_DIR / f"{group}.sql" for group in groups)


def test_every_statement_has_a_description_and_well_formed_placeholders():
    # rendering fails on an unknown {name} or a stray brace
    rendered = set(Store("sqlq").sql) | {name for name, s in STATEMENTS.items() if s.group in SERVER_GROUPS
                                         and sql.SQL(s.text).format(database=sql.Identifier("d")).as_string(None)}
    assert rendered == set(STATEMENTS)
    for name, statement in STATEMENTS.items():
        assert statement.description, name
        assert not re.search(r"%(?!\(\w+\)s)", statement.text.replace("%%", "")), f"{name}: a stray %"
        assert not statement.text.endswith(";"), f"{name}: statements are run one at a time, without ';'"


def test_exception_types_written_from_sql_are_full_dotted_names():
    """As a worker records them (sqlq.errors.X), so that AsyncResult.get() rebuilds each one."""
    written = {m.group(0) for s in STATEMENTS.values() for m in re.finditer(r"'[\w.]*Error'", s.text)}
    assert written == {"'sqlq.errors.InvalidJobError'", "'sqlq.errors.TaskRevokedError'",
                       "'sqlq.errors.WorkerLostError'"}
    for literal in written:
        exc = rebuild_exception(literal.strip("'"), "m", None)
        assert type(exc).__module__ + "." + type(exc).__name__ == literal.strip("'")


def test_every_statement_is_run_by_the_store_module_of_its_group():
    for name, statement in STATEMENTS.items():
        module = (STORE_DIR / f"{statement.group}.py").read_text()
        assert f'"{name}"' in module, f"{name} ({statement.group}.sql) is not run by store/{statement.group}.py"


def test_rows_come_back_as_records():
    """No Store method returns a row as a plain tuple: the only tuples it gives are a statement with
    its parameters and PUBLISH's (job ids, queues)."""
    not_rows = {"publish_statement", "write_statement", "published_jobs", "events_sent_statement"}
    for name, method in inspect.getmembers(Store, inspect.isfunction):
        returned = typing.get_type_hints(method).get("return")
        if not name.startswith("_") and name not in not_rows:
            assert "tuple[" not in str(returned) and returned is not tuple, f"Store.{name} returns {returned}"


# --- variants written out whole stay in step ----------------------------------------------------

def _closing(text: str, opening: int) -> int:
    """The index of the parenthesis that closes the one at ``opening``."""
    depth = 0
    for i in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced parentheses after {text[opening:opening + 40]!r}")


def _cte(statement: str, name: str) -> str:
    """The body of CTE ``name`` in ``statement``."""
    text = STATEMENTS[statement].text
    start = re.search(rf"\b{name} AS (?:MATERIALIZED )?\(", text)
    assert start is not None, f"{statement} has no CTE {name}"
    return text[start.end():_closing(text, start.end() - 1)]


def _tail(statement: str, name: str) -> str:
    """Everything of ``statement`` after CTE ``name``."""
    text = STATEMENTS[statement].text
    start = re.search(rf"\b{name} AS (?:MATERIALIZED )?\(", text)
    assert start is not None, f"{statement} has no CTE {name}"
    return text[_closing(text, start.end() - 1) + 1:]


def _words(text: str) -> str:
    return " ".join(text.split())


def test_the_finish_variants_share_done_ins_and_the_count():
    # past their outcomes `o`, FINISH_OK is FINISH and FINISH_OK_UPSERT is FINISH_UPSERT
    assert _tail("FINISH_OK", "o") == _tail("FINISH", "o")
    assert _tail("FINISH_OK_UPSERT", "o") == _tail("FINISH_UPSERT", "o")
    assert _cte("FINISH_UPSERT", "o") == _cte("FINISH", "o")
    assert _cte("FINISH_OK_UPSERT", "o") == _cte("FINISH_OK", "o")
    # and the upsert is the plain form with ON CONFLICT
    assert _cte("FINISH_UPSERT", "done") == _cte("FINISH", "done")
    plain = re.sub(r"\s*ON CONFLICT \(id\) DO UPDATE SET.*", "\n", _cte("FINISH_UPSERT", "ins"), flags=re.S)
    assert plain == _cte("FINISH", "ins")
    assert _tail("FINISH_UPSERT", "ins") == _tail("FINISH", "ins")


def test_lost_and_rescue_share_what_follows_the_lost_jobs():
    assert _tail("LOST", "lost") == _tail("RESCUE", "lost")


def test_liveness_and_rescue_judge_a_worker_dead_alike():
    def dead(text: str) -> str:
        opening = text.index("(w.heartbeat_at < ")
        return _words(text[opening:_closing(text, opening) + 1])

    assert dead(STATEMENTS["WORKERS_LIVENESS"].text) == dead(_cte("RESCUE", "dead"))


def test_the_batch_enqueue_and_its_rewrite_write_the_same_rows():
    assert _cte("ENQUEUE_REWRITE", "v") == _cte("ENQUEUE_MANY", "v")
    insert = _words(_cte("ENQUEUE_MANY", "ins")).removesuffix(" RETURNING queue, state")
    assert _words(_tail("ENQUEUE_REWRITE", "v")) == (
        insert + " WHERE NOT EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = v.id) ON CONFLICT (id) DO NOTHING")


def test_the_publish_variants_share_grouping_fan_out_and_insert():
    for name in ("PUBLISH_ONE", "PUBLISH_REWRITE"):
        assert _cte(name, "g") == _cte("PUBLISH", "g") and _cte(name, "v") == _cte("PUBLISH", "v")
    assert _cte("PUBLISH_REWRITE", "m") == _cte("PUBLISH", "m")
    assert _tail("PUBLISH_ONE", "v") == _tail("PUBLISH", "v")
    guard = "\n    WHERE NOT EXISTS (SELECT 1 FROM {results} AS r WHERE r.id = v.job_id)\n    ON CONFLICT (id) DO NOTHING"
    assert _cte("PUBLISH_REWRITE", "ins").replace(guard, "") == _cte("PUBLISH", "ins")
    notified = _tail("PUBLISH", "ins").split("g.job_group::text,")
    assert _tail("PUBLISH_REWRITE", "ins").split("g.job_group::text,")[0] == notified[0]


def test_every_derived_id_is_the_same_expression():
    derived = re.compile(r"substr\(encode\(sha256\(convert_to\((.+?)::text \|\| '/' \|\| (.+?), 'UTF8'\)\), "
                         r"'hex'\), 1, 32\)::uuid")
    found = [(name, m.groups()) for name in ("PUBLISH", "PUBLISH_ONE", "PUBLISH_REWRITE")
             for m in derived.finditer(STATEMENTS[name].text)]
    assert sorted(found) == [("PUBLISH", ("g.id", "d.n::text")), ("PUBLISH", ("u.id", "'group'")),
                             ("PUBLISH_ONE", ("%(id)s::uuid", "'group'")), ("PUBLISH_ONE", ("g.id", "d.n::text")),
                             ("PUBLISH_REWRITE", ("g.id", "d.n::text")), ("PUBLISH_REWRITE", ("u.id", "'group'"))]
    assert "".join(s.text for s in STATEMENTS.values()).count("sha256(") == len(found)


def test_statements_reading_whole_schedules_select_the_columns_of_schedule_row():
    for name in ("SCHEDULE_GET", "SCHEDULE_GET_FOR_UPDATE", "SCHEDULE_LIST", "SCHEDULE_CLAIM_DUE"):
        columns = re.match(r"SELECT (.*?)\nFROM ", STATEMENTS[name].text, re.S).group(1)
        assert [c.strip() for c in columns.split(",")] == list(ScheduleRow._fields), name


def test_every_statement_that_records_an_outcome_carries_the_job_s_workflow():
    """A workflow moves on when its job's results row is inserted with the job's plan (the trigger
    of migration 0007 fires on results rows whose workflow is not NULL): a statement that moves a job
    into results without its workflow, root and parent would stop a chain, a chord or a callback
    there in silence."""
    inserting = {name: s.text for name, s in STATEMENTS.items() if re.search(r"INSERT INTO \{results\}", s.text)}
    assert len(inserting) >= 8  # FINISH and its variants, REVOKE, RESCUE, LOST, QUARANTINE, the hand-back, ...
    for name, text in inserting.items():
        for insert in re.finditer(r"INSERT INTO \{results\}[^(]*\(([^)]*)\)", text):
            columns = {c.strip() for c in insert.group(1).split(",")}
            assert {"workflow", "root_id", "parent_id"} <= columns, name
