"""``sqlq.schedules`` stands in for ``celery.schedules``: the same names make the same schedules."""

from datetime import timedelta

import sqlq
from sqlq.periodic.timing import every
from sqlq.schedules import crontab, schedule, solar


def test_schedule_is_an_interval_of_run_every() -> None:
    made = schedule(timedelta(seconds=30))
    assert isinstance(made, every)
    assert made.interval == timedelta(seconds=30)
    assert schedule(run_every=10.0, relative=True).interval == timedelta(seconds=10)


def test_the_names_are_sqlqs_own() -> None:
    assert crontab is sqlq.crontab
    assert solar is sqlq.solar
