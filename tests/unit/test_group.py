"""Groups without a server: the dict shape Celery gives a group and its JSON round trip, the three
ways of writing one, Celery's partial application to every member, the refused cases (a nested
group, a member that is not a signature, a group id that is not a UUID, ``|``), and eager groups:
under ``task_always_eager`` or with ``apply()`` every member runs here and an EagerGroupResult,
which reads nothing from a database, comes back."""

from __future__ import annotations

import json

import pytest

from sqlq import group
from sqlq.canvas import GROUP_TASK, Signature, signature
from sqlq.eager import EagerGroupResult, EagerResult
from sqlq.errors import ConfigurationError
from sqlq.result import GroupResult


@pytest.fixture
def add(app):
    @app.task(name="proj.add")
    def add(x, y=0):
        return x + y

    return add


@pytest.fixture
def boom(app):
    @app.task(name="proj.boom")
    def boom(x):
        raise ValueError(f"bad {x}")

    return boom


def test_a_group_is_a_signature_dict_with_celerys_shape(add):
    g = group(add.s(1, 1), add.s(2, 2))
    assert isinstance(g, Signature) and isinstance(g, dict)
    assert (g["task"], g["subtask_type"], g["args"], g["immutable"]) == (GROUP_TASK, "group", (), False)
    assert g["kwargs"]["tasks"] == [add.s(1, 1), add.s(2, 2)]
    assert len(g) == 2 and g.tasks == [add.s(1, 1), add.s(2, 2)]
    assert repr(g) == "group([proj.add(1, 1), proj.add(2, 2)])"


def test_a_list_a_generator_and_arguments_make_the_same_group(add):
    by_args = group(add.s(0), add.s(1), add.s(2))
    assert group([add.s(0), add.s(1), add.s(2)]) == by_args
    assert group(add.s(i) for i in range(3)) == by_args
    assert group((add.s(i) for i in range(3)), queue="low").options == {"queue": "low"}
    assert len(group()) == 0


def test_a_group_survives_a_json_round_trip_with_its_members_and_options(app, add):
    g = group([add.s(1), signature("billing.charge", (5,), app=app, queue="billing")], priority=3)
    back = signature(json.loads(json.dumps(g)), app=app)
    assert type(back) is group
    assert json.loads(json.dumps(back)) == json.loads(json.dumps(g))
    assert back.options == {"priority": 3}
    assert [type(t) for t in back.tasks] == [Signature, Signature]
    assert back.tasks[1].options == {"queue": "billing"}
    assert type(back.clone()) is group and back.clone().tasks == back.tasks


def test_send_time_args_go_before_each_members_and_options_win(add):
    g = group(add.s(1), add.s(y=2).set(priority=1), add.si(7, 7)).set(queue="q")
    group_id, calls = g._prepared((10,), {"y": 5}, {"priority": 9})
    assert len(group_id) == 36
    assert [(a, k, o) for _, a, k, o in calls] == [
        ((10, 1), {"y": 5}, {"queue": "q", "priority": 9}),
        ((10,), {"y": 5}, {"queue": "q", "priority": 9}),
        ((7, 7), {}, {"queue": "q", "priority": 9}),  # immutable: new options only
    ]
    partial = group(add.s(1), add.s(2)).clone((100,))
    assert [a for _, a, _, _ in partial._prepared((1000,), None, {})[1]] == [(1000, 100, 1), (1000, 100, 2)]


def test_refused_groups_say_why(add):
    with pytest.raises(ConfigurationError, match="a group or chord inside a group"):
        group(add.s(1), group(add.s(2)))
    with pytest.raises(ConfigurationError, match="members are signatures"):
        group(add.s(1), 42)
    with pytest.raises(ConfigurationError, match="must be a UUID"):
        group(add.s(1))._prepared((), None, {"task_id": "not-a-uuid"})
    from sqlq import chord

    assert isinstance(group(add.s(1)) | add.s(), chord)  # Celery's: a group followed by a task
    with pytest.raises(ConfigurationError, match="not one task"):
        _ = group(add.s(1)).type


def test_apply_runs_every_member_here_and_reads_no_database(add, boom):
    result = group(add.s(i, i) for i in range(4)).apply()
    assert type(result) is EagerGroupResult and isinstance(result, GroupResult)
    assert all(type(r) is EagerResult for r in result.results)
    assert result.get() == [0, 2, 4, 6] and result.join(timeout=1) == [0, 2, 4, 6]
    assert result.ready() and result.successful() and not result.failed() and not result.waiting()
    assert result.completed_count() == 4 and len(result) == 4 and result.revoke() == 0
    failing = group(add.s(1, 1), boom.s(3)).apply()
    assert failing.ready() and failing.failed() and not failing.successful() and failing.completed_count() == 1
    with pytest.raises(ValueError, match="bad 3"):
        failing.get()
    values = failing.get(propagate=False)
    assert values[0] == 2 and isinstance(values[1], ValueError)
    with pytest.raises(ConfigurationError, match="ran eagerly"):
        failing.save()
    failing.forget()
    assert [r.state for r in failing.results] == ["PENDING", "PENDING"]


def test_always_eager_makes_delay_and_calling_a_group_run_it_here(app, add):
    app.conf.task_always_eager = True
    result = group(add.s(1), add.s(2)).delay(10)
    assert type(result) is EagerGroupResult and result.get() == [11, 12]
    assert group(add.s(1), add.s(2))(5).get() == [6, 7]
    assert group([add.s(3)]).apply_async(task_id="0b6a44e0-6d2d-4c36-9bf7-5b8f0f1e6a11").id == \
        "0b6a44e0-6d2d-4c36-9bf7-5b8f0f1e6a11"
