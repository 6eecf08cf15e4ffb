"""What ``sqlq worker``'s Celery-style flags do before the worker starts (``-I``, ``--purge``,
``--time-limit``, ``-O``, ``--without-*``), kept out of ``sqlq.cli`` so that the command only
reads its options."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ..names import validate_queue
from .child import INCLUDE_ENV
from .worker import _WITHOUT_REASONS

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("sqlq.worker")

#: ``-O`` profiles Celery has, and what each is here.
OPTIMIZATIONS = {
    "default": "sqlq's prefork pool sends each child a few jobs at a time",
    "fair": (
        "sqlq's prefork pool already works that way: a child busy with one job for 50 ms hands "
        "back the jobs queued behind it to the other children, so -O fair changes nothing"
    ),
}


def comma_list(value: str | Sequence[str] | None) -> list[str]:
    if not value:
        return []
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    return [p.strip() for p in parts if p.strip()]


def import_modules(modules: Sequence[str]) -> None:
    """``-I mod1,mod2``: import the modules (their tasks register on the app), as Celery's
    ``--include``. The prefork children import the app only, so the names are also added to the
    ``SQLQ_WORKER_INCLUDE`` environment they inherit (``sqlq.worker.child`` imports them)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"-I/--include {name!r} cannot be imported: {exc}; check the module "
                f"name and that it is on the path"
            ) from None
    if modules:
        os.environ[INCLUDE_ENV] = ",".join(modules)


def set_time_limits(app: App, hard: float | None, soft: float | None) -> None:
    """``--time-limit``/``--soft-time-limit``: the worker-wide ``task_time_limit`` and
    ``task_soft_time_limit`` (a task's own limit still wins). Set as their environment variables,
    which beat the app's settings, so that the prefork children, which import the app afresh,
    follow them too."""
    for value, setting in ((hard, "task_time_limit"), (soft, "task_soft_time_limit")):
        if value is not None:
            if value <= 0:
                raise ConfigurationError(
                    f"--{setting.replace('task_', '').replace('_', '-')} must be more than 0 "
                    f"seconds, not {value}"
                )
            os.environ[f"SQLQ_{setting.upper()}"] = repr(float(value))
    app.conf.reload_environment()


def set_log_format(app: App, kind: str | None) -> None:
    """``--log-format``: the ``log_format`` setting, as its variable (the prefork children's too)."""
    if kind is not None:
        os.environ["SQLQ_LOG_FORMAT"] = kind
        app.conf.reload_environment()


def purge_queues(app: App, queues: Sequence[str]) -> int:
    """``--purge``: delete the waiting and scheduled jobs of these queues (running jobs are their
    workers'), as Celery's ``--purge`` discards the waiting messages of the worker's queues."""
    total = 0
    with app.connection() as conn:
        for queue in queues:
            total += app.store.purge(conn, validate_queue(queue))
    return total


def say_celery_only(optimization: str | None, **switches: bool) -> None:
    """One line for each Celery flag given that has no effect here, never silence."""
    for name, given in switches.items():
        if given:
            log.warning("--%s has no effect in sqlq: %s", name.replace("_", "-"), _WITHOUT_REASONS[name])
    if optimization is not None:
        log.info("-O %s: %s", optimization, OPTIMIZATIONS[optimization])
