"""What a schema, queue, task or exchange name may look like.

Names reach SQL only as bound parameters or quoted identifiers; validating them anyway keeps
typos and injection attempts out of the tables and gives the user an error at the call site.
"""

from __future__ import annotations

import re

from .errors import InvalidNameError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Celery queue/exchange names commonly contain dots, dashes and colons ("video.high", "celery:events").
_QUEUE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")
_TASK = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,254}$")


def validate_identifier(name: str, what: str = "schema") -> str:
    """Names used as PostgreSQL identifiers (the schema): letters, digits, underscores."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise InvalidNameError(
            f"invalid {what} name {name!r}: use letters, digits and underscores, starting with a "
            f"letter or underscore, at most 63 characters"
        )
    return name


def validate_queue(name: str, what: str = "queue") -> str:
    if not isinstance(name, str) or not _QUEUE.match(name):
        raise InvalidNameError(
            f"invalid {what} name {name!r}: use letters, digits and _ . : - (at most 200 characters, "
            f"not starting with . : or -)"
        )
    return name


def validate_task_name(name: str) -> str:
    if not isinstance(name, str) or not _TASK.match(name):
        raise InvalidNameError(
            f"invalid task name {name!r}: use a dotted Python-style name such as 'proj.tasks.add'"
        )
    return name
