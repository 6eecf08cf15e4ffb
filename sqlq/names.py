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


# --- routing ---

#: AMQP caps routing keys at 255 bytes (a short string); keeping the cap keeps keys portable.
MAX_ROUTING_KEY = 255


def validate_exchange(name: str) -> str:
    """Exchange names follow the queue rules (they are bound parameters, never SQL text)."""
    return validate_queue(name, "exchange")


def validate_routing_key(key: str, what: str = "routing key") -> str:
    """Routing keys and binding keys: any text up to 255 bytes except NUL, which PostgreSQL cannot store.

    Words are separated by dots; ``*`` and ``#`` are wildcards only as whole words of a topic
    binding key, and every other character (regex metacharacters included) is matched literally.
    """
    if not isinstance(key, str):
        raise InvalidNameError(f"{what} must be a string, got {type(key).__name__}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: not text PostgreSQL can store
        size = MAX_ROUTING_KEY + 1
    if "\x00" in key or size > MAX_ROUTING_KEY:
        raise InvalidNameError(
            f"invalid {what} {key!r}: use text of at most {MAX_ROUTING_KEY} UTF-8 bytes, without NUL "
            f"characters or lone surrogates"
        )
    return key
