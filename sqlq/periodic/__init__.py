"""Periodic tasks: when ticks fall, schedules as rows, and the beat loop that sends each tick once.

Three layers, each depending only on the one before it:

* ``timing``: the pure time arithmetic (crontab, every, solar, time zones, DST, missed ticks); croniter is
  imported here and nowhere else, and nothing here touches the database;
* ``definitions``: the ``schedules`` table as the single source of truth, ``beat_schedule`` synced
  into it, and the operations behind ``sqlq schedule`` (``add_schedule``, ``list_schedules``, ...);
* ``beat``: the ``sqlq beat`` loop, which claims due schedules with ``SKIP LOCKED`` and writes each
  tick row with its job in one transaction.

The names below are imported on first use, so reading ``sqlq.crontab`` loads only the arithmetic.
"""

from ..lazy import lazy_exports

_TIMING = ("Schedule", "crontab", "every", "solar", "parse_schedule", "resolve_timezone", "next_fire", "prev_fire",
           "due_ticks", "CatchUpPolicy")
_DEFINITIONS = ("Definition", "SyncReport", "add_periodic_task", "add_schedule", "build_periodic_job", "check_registered", "describe",
                "first_fire", "get_schedule", "list_schedules", "pause_schedule", "remove_schedule",
                "resume_schedule", "run_now", "sync_config")
_BEAT = ("Beat", "Fired")

__getattr__ = lazy_exports(__name__, {
    **dict.fromkeys(_TIMING, ".timing"), **dict.fromkeys(_DEFINITIONS, ".definitions"),
    **dict.fromkeys(_BEAT, ".beat"),
})

__all__ = sorted(_TIMING + _DEFINITIONS + _BEAT)
