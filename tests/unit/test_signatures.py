"""Signatures without a server: their dict shape and JSON round trip, Celery's partial application
(new args first, new kwargs and options win, immutable keeps its arguments), clone/set/copy/pickle,
repr, the missing | operator, and running one here (``sig()``, ``sig.apply()``)."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from sqlq.canvas import KEYS, Signature, signature, subtask
from sqlq.eager import EagerResult
from sqlq.errors import ConfigurationError, InvalidNameError, NotRegistered


@pytest.fixture
def add(app):
    @app.task(name="proj.add")
    def add(x, y=0, *more, z=0):
        return x + y + sum(more) + z

    return add


def test_a_signature_is_a_dict_with_celerys_keys(add):
    sig = Signature(add, (2, 2), {"z": 1}, {"countdown": 10})
    assert isinstance(sig, dict)
    assert tuple(sig) == KEYS
    assert dict(sig) == {"task": "proj.add", "args": (2, 2), "kwargs": {"z": 1}, "options": {"countdown": 10},
                         "immutable": False, "subtask_type": None}
    assert (sig.task, sig.name, sig.args, sig.kwargs, sig.options, sig.immutable) == (
        "proj.add", "proj.add", (2, 2), {"z": 1}, {"countdown": 10}, False)
    assert sig.type is add and sig.app is add.app


def test_extra_keyword_arguments_are_options_as_in_celery(add):
    sig = Signature("proj.add", (1,), countdown=5, queue="low")
    assert sig.options == {"countdown": 5, "queue": "low"}


def test_json_round_trip_gives_a_dict_that_turns_back_into_the_same_signature(app, add):
    sig = Signature(add, (2, 3), {"z": 4}, {"priority": 5}, immutable=True)
    data = json.loads(json.dumps(sig))
    assert data == {"task": "proj.add", "args": [2, 3], "kwargs": {"z": 4}, "options": {"priority": 5},
                    "immutable": True, "subtask_type": None}
    back = Signature.from_dict(data, app=app)
    assert back == sig and back.args == (2, 3) and back.immutable
    assert signature(data) == sig  # the current app
    assert back.type is add  # found by name in the app


def test_signature_function_takes_a_task_a_name_a_dict_or_a_signature(add):
    assert signature(add, (1, 2), countdown=3) == Signature(add, (1, 2), None, {"countdown": 3})
    assert signature("proj.add", args=(1,), kwargs={"y": 2}).kwargs == {"y": 2}
    sig = Signature(add, (1,))
    copied = signature(sig)
    assert copied == sig and copied is not sig
    assert subtask is signature  # Celery's old name


@pytest.mark.parametrize("bad, message", [
    ({"args": [1]}, "no 'task' key"),
    ({"task": "proj.add", "link": []}, "unknown key(s) link"),
    ({"task": "proj.add", "subtask_type": "nonesuch"}, "unknown subtask_type 'nonesuch'"),
])
def test_a_dict_that_is_not_a_signature_is_refused_with_the_reason(bad, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Signature.from_dict(bad)


def test_bad_parts_are_refused_naming_the_problem(add):
    with pytest.raises(ConfigurationError, match="must be a list or tuple, not str"):
        Signature(add, "ab")
    with pytest.raises(ConfigurationError, match="kwargs of a signature of proj.add must be a dict"):
        Signature(add, (), [("z", 1)])
    with pytest.raises(ConfigurationError, match="needs a task or a task name, not int"):
        Signature(42)
    with pytest.raises(InvalidNameError):
        Signature("")
    with pytest.raises(ConfigurationError, match="reads a signature's dict whole"):
        signature({"task": "proj.add"}, (1,))


def test_partial_application_prepends_new_args_and_new_kwargs_and_options_win(add):
    sig = Signature(add, (2,), {"z": 1}, {"queue": "a", "priority": 1})
    args, kwargs, options = sig._merge((4,), {"z": 10}, {"queue": "b"})
    assert args == (4, 2) and kwargs == {"z": 10} and options == {"queue": "b", "priority": 1}
    assert sig.args == (2,) and sig.options == {"queue": "a", "priority": 1}  # unchanged
    assert sig(1) == 3 + 1  # called here: add(1, 2, z=1)
    assert sig(1, z=0) == 3


def test_an_immutable_signature_keeps_its_arguments_but_takes_options(add):
    sig = Signature(add, (2, 2), immutable=True, options={"queue": "a"})
    assert sig._merge((9,), {"z": 9}, {"queue": "b"}) == ((2, 2), {}, {"queue": "b"})
    assert sig(100) == 4
    assert sig.apply((100,)).get() == 4


def test_clone_merges_into_a_new_signature_and_set_changes_this_one(add):
    sig = Signature(add, (2,), options={"queue": "a"})
    clone = sig.clone((1,), {"z": 3}, priority=2)
    assert clone.args == (1, 2) and clone.kwargs == {"z": 3} and clone.options == {"queue": "a", "priority": 2}
    assert clone.type is add and sig.args == (2,)
    clone["options"]["queue"] = "z"
    assert sig.options == {"queue": "a"}
    assert sig.set(countdown=5, immutable=True) is sig
    assert sig.options == {"queue": "a", "countdown": 5} and sig.immutable
    sig.set_immutable(False)
    assert not sig.immutable


def test_copy_deepcopy_and_pickle_keep_the_call_and_share_the_app(app, add):
    sig = Signature(add, (1, [2]), options={"headers": {"a": 1}})
    for other in (copy.copy(sig), copy.deepcopy(sig)):
        assert other == sig and other.app is app and other.type is add
    deep = copy.deepcopy(sig)
    deep["args"][1].append(3)
    assert sig.args == (1, [2])
    unpickled = pickle.loads(pickle.dumps(sig))
    assert unpickled == sig and isinstance(unpickled, Signature) and unpickled.type is add


def test_repr_is_celerys_call_form(add):
    assert repr(Signature(add, (2, 2))) == "proj.add(2, 2)"
    assert repr(Signature("proj.add", ("a",), {"z": 1})) == "proj.add('a', z=1)"
    assert repr(Signature("proj.add")) == "proj.add()"


def test_the_pipe_operator_chains_signatures_and_nothing_else(add):
    from sqlq import chain

    sig = Signature(add, (1, 1))
    piped = sig | sig | add.s(2)
    assert isinstance(piped, chain) and [t.args for t in piped.tasks] == [(1, 1), (1, 1), (2,)]
    with pytest.raises(TypeError, match="unsupported operand"):
        sig | {"x": 1}  # noqa: B018
    with pytest.raises(TypeError, match="unsupported operand"):
        {"x": 1} | sig  # noqa: B018
    with pytest.raises(TypeError, match="unsupported operand"):
        sig |= sig
    assert dict(sig)["task"] == "proj.add"


def test_apply_runs_eagerly_and_sends_nothing(add):
    result = Signature(add, (2,), {"z": 1}).apply((5,))
    assert isinstance(result, EagerResult)
    assert result.get() == 8 and result.state == "SUCCESS"


def test_a_task_this_process_does_not_have_cannot_run_here(app):
    sig = Signature("proj.elsewhere", (1,))
    with pytest.raises(NotRegistered, match="proj.elsewhere"):
        sig.apply()
    with pytest.raises(NotRegistered, match="proj.elsewhere"):
        sig()


def test_a_registered_type_is_rebuilt_from_its_subtask_type():
    @Signature.register_type("demo_kind")
    class Demo(Signature):
        pass

    try:
        back = Signature.from_dict({"task": "proj.add", "args": [1], "subtask_type": "demo_kind"})
        assert type(back) is Demo and back.subtask_type == "demo_kind" and back.args == (1,)
    finally:
        del Signature.TYPES["demo_kind"]
