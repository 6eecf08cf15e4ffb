"""A chord's plan without a server: a header of one task's calls due now is kept as calls (ids
assigned, no node per member) so that a top-level chord streams its rows like a group; the member
nodes are built only when the plan goes to the database as JSON (on a SQLAlchemy connection),
and then they are what the database needs: each member's id as its handle
says, its group, the workflow's root, its chord to count down. A header with a countdown is built
at once, as before."""

from __future__ import annotations

import json
import uuid

import pytest

from sqlq import chord
from sqlq.workflows import _Compiler, _ids, _plan_json, _streamable


@pytest.fixture
def tasks(app):
    @app.task(name="proj.add")
    def add(x, y=0):
        return x + y

    @app.task(name="proj.tsum")
    def tsum(numbers):
        return sum(numbers)

    return add, tsum


def test_a_top_level_chord_of_one_tasks_calls_keeps_its_header_as_calls(app, tasks):
    add, tsum = tasks
    compiler = _Compiler(app)
    node, handle, _, _ = compiler.build(chord((add.s(i) for i in range(5)), tsum.s()))
    header = _streamable(compiler, node, None)
    assert header is not None and node["members"] is None
    ids = [r.id for r in handle.parent.results]
    assert header.ids == ids == node["results"] and all(str(uuid.UUID(i)) == i for i in ids)
    assert header.group_id == node["group"] == handle.parent.id and header.chord
    assert compiler.root_row == ids[0]  # the first member is the workflow's root, as when built node by node
    assert node["body"]["root_id"] == ids[0] and node["body"]["task"] == "proj.tsum"
    assert _ids(node) == [*ids, handle.id]  # what revoke() of the chord names
    assert [a for a, _ in header.pairs] == [(i,) for i in range(5)]


def test_a_header_built_for_the_plans_json_is_what_the_database_reads(app, tasks):
    add, tsum = tasks
    compiler = _Compiler(app)
    node, handle, _, _ = compiler.build(chord((add.s(i) for i in range(3)), tsum.s()))
    assert _streamable(compiler, node, object()) is None  # not psycopg (e.g. SQLAlchemy): the plan as JSON
    compiler.materialize(None)
    plan = json.loads(_plan_json(node))
    members = plan["members"]
    assert [m["id"] for m in members] == [r.id for r in handle.parent.results] == plan["results"]
    assert [m["args"] for m in members] == [[0], [1], [2]]
    assert {(m["task"], m["group_id"], m["root_id"], m["mutable"]) for m in members} \
        == {("proj.add", plan["group"], members[0]["id"], True)}
    assert all(m["workflow"] == {"chord": plan["group"]} for m in members)
    assert {job_id: compiler.specs[job_id].args for job_id in plan["results"]} \
        == dict(zip(plan["results"], ["[0]", "[1]", "[2]"], strict=True))  # (what _copied writes rows from)


def test_a_header_not_due_now_is_built_node_by_node(app, tasks):
    add, tsum = tasks
    compiler = _Compiler(app)
    node, _, _, _ = compiler.build(chord((add.s(i).set(countdown=5) for i in range(3)), tsum.s()))
    assert not compiler.headers and _streamable(compiler, node, None) is None
    assert [m["countdown"] for m in node["members"]] == [5.0, 5.0, 5.0]
    assert all(m["workflow"] == {"chord": node["group"]} for m in node["members"])
