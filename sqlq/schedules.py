"""``celery.schedules`` under sqlq's roof: ``from sqlq.schedules import crontab, solar, schedule``
is the only change a Celery module that imports its schedules from there needs.

``schedule(run_every)`` is Celery's fixed interval; sqlq's is ``every``, whose ticks are anchored
(``anchor + k * interval``) instead of counted from the last run, so a slow beat or a restart
never shifts them. Celery's ``relative=True`` (round the first run to the interval) is what every
interval here does already, so it is accepted; ``nowfun``/``app`` have no meaning for a schedule
stored as a row and are refused by name.
"""

from __future__ import annotations

from datetime import timedelta

from .periodic.timing import crontab, every, solar


def schedule(run_every: timedelta | float | int, relative: bool = False) -> every:
    """Celery's ``schedule(run_every=timedelta(...))``: an ``every`` of that interval."""
    return every(run_every)


__all__ = ["crontab", "every", "schedule", "solar"]
