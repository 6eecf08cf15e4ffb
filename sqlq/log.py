"""Loggers for task modules: Celery's ``get_task_logger(__name__)``.

A task logger keeps the name it is asked for (``__name__``, as in Celery) but hangs below the
``sqlq.task`` logger instead of the root, so its records reach the handler ``sqlq worker`` sets
up, whose lines carry the running task's ``name[id]``, and a ``setup_logging`` or
``after_setup_task_logger`` receiver that configures ``sqlq.task`` configures them all.
"""

from __future__ import annotations

import logging

#: The parent of every task logger; ``sqlq worker`` configures its parent, ``sqlq``.
TASK_LOGGER = "sqlq.task"


def get_logger(name: str) -> logging.Logger:
    """A plain logger by name (Celery's ``celery.utils.log.get_logger``)."""
    return logging.getLogger(name)


def get_task_logger(name: str) -> logging.Logger:
    """The logger ``name`` with ``sqlq.task`` as its parent. A name already below ``sqlq`` keeps
    its own place; ``sqlq.task`` itself and the root's name are refused, as in Celery, because the
    logger would be its own parent."""
    if name in (TASK_LOGGER, "root", ""):
        raise ValueError(f"get_task_logger({name!r}): give the task module's __name__")
    logger = logging.getLogger(name)
    if not name.startswith("sqlq."):
        logger.parent = logging.getLogger(TASK_LOGGER)
    return logger
