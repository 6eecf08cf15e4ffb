"""Loggers for task modules: Celery's ``get_task_logger(__name__)``.

A task logger keeps the name it is asked for (``__name__``, as in Celery) but hangs below the
``sqlq.task`` logger instead of the root, so its records reach the handler ``sqlq worker`` sets
up, whose lines carry the running task's ``name[id]``, and a ``setup_logging`` or
``after_setup_task_logger`` receiver that configures ``sqlq.task`` configures them all.
"""

from __future__ import annotations

import datetime as dt
import json
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


#: The ``--log-format`` choices (the ``log_format`` setting, ``SQLQ_LOG_FORMAT``).
LOG_FORMATS = ("text", "json")

#: The attributes of a record that come from ``job_fields`` (a line about a job that is not the
#: running task's: received, recorded by the consumer or the finisher).
_JOB_ATTRS = ("job_id", "job_name", "job_queue")


def job_fields(job_id: str, name: str, queue: str) -> dict[str, str]:
    """``extra=`` for a log line about a job, so that ``--log-format json`` names it."""
    return {"job_id": job_id, "job_name": name, "job_queue": queue}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors that parse rather than grep: ``timestamp`` (UTC,
    ISO 8601), ``level``, ``logger``, ``process``, ``message``, the job's ``job_id``, ``job_name`` and
    ``job_queue`` when the line is about a job (the running task's, or the one the line names), and
    ``exc_info`` with the traceback when the record carries one. A newline in a message stays inside
    its JSON string, so a traceback never splits an object over lines."""

    def format(self, record: logging.LogRecord) -> str:
        from .task import _current_request

        out: dict[str, object] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "process": record.processName,
            "message": record.getMessage(),
        }
        if getattr(record, "job_id", None) is not None:
            out.update((key, getattr(record, key, None)) for key in _JOB_ATTRS)
        else:
            request = _current_request.get()
            if request is not None and request.id:
                out.update(job_id=request.id, job_name=request.task, job_queue=request.queue)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def make_formatter(kind: str, text_format: str) -> logging.Formatter:
    """The formatter of ``--log-format kind``: ``text_format`` for ``text``, one JSON object per
    line for ``json``; another name is an error naming the choices (a typo must not fall back)."""
    if kind == "json":
        return JsonFormatter()
    if kind == "text":
        return logging.Formatter(text_format)
    from .errors import ConfigurationError

    raise ConfigurationError(f"log format {kind!r} (--log-format, log_format, SQLQ_LOG_FORMAT): "
                             f"choose one of {', '.join(LOG_FORMATS)}")
