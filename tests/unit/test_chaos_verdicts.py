"""The chaos harness's verdicts, without a cluster: a scenario fails exactly when a must-be-zero
figure is not zero, its line says which, a rerun counts as explained only by a dead worker, a
killed holder or a database event around its end, and the command line refuses unknown scenarios."""

from __future__ import annotations

import pytest

from benchmarks.chaos.lab import Outcome, format_states, missed_targets, settings_note
from benchmarks.chaos.run import parse_args
from benchmarks.chaos.storm import Disruption, interrupted


def test_only_non_zero_figures_are_missed_targets():
    assert missed_targets(lost=0, duplicates=0) == []
    assert missed_targets(lost=3, duplicates=0, dead_workers=1) == ["lost", "dead_workers"]


def test_a_scenarios_line_says_ok_or_which_targets_it_missed():
    assert Outcome("crash", "jobs=10", []).line() == "chaos crash: jobs=10 -> OK"
    missed = Outcome("crash", "jobs=10", ["lost", "duplicates"])
    assert not missed.ok and missed.line() == "chaos crash: jobs=10 -> FAILED (lost, duplicates)"


def test_states_and_settings_read_in_a_stable_order():
    assert format_states({"SUCCESS": 9, "FAILURE": 1}) == "FAILURE:1,SUCCESS:9"
    assert format_states({}) == "none"
    assert settings_note({}) == "settings=defaults"
    assert settings_note({"b": "2", "a": "1"}) == "settings=a=1,b=2"


def test_a_rerun_is_explained_only_by_a_death_or_a_database_event_near_its_end():
    outage = [Disruption("restart", start=100.0, end=105.0)]
    assert interrupted("w1", 50.0, "j", dead={"w1"}, killed_jobs=set(), windows=[], margin_s=1.0)
    assert interrupted("w2", 50.0, "j", dead=set(), killed_jobs={"j"}, windows=[], margin_s=1.0)
    assert interrupted("w2", 98.0, "j", dead=set(), killed_jobs=set(), windows=outage, margin_s=1.0)  # 2 s before
    assert interrupted("w2", 106.0, "j", dead=set(), killed_jobs=set(), windows=outage, margin_s=1.0)  # margin after
    assert not interrupted("w2", 97.9, "j", dead=set(), killed_jobs=set(), windows=outage, margin_s=1.0)
    assert not interrupted("w2", 106.1, "j", dead=set(), killed_jobs=set(), windows=outage, margin_s=1.0)
    assert not interrupted(None, 50.0, "j", dead={"w1"}, killed_jobs=set(), windows=outage, margin_s=1.0)


def test_the_command_line_runs_every_scenario_or_a_named_subset():
    assert parse_args([]).names == ["crash", "transactional", "outage", "poison", "beat"]
    assert parse_args(["--size", "small", "--only", "beat, crash"]).names == ["beat", "crash"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "crash,meteor"])
