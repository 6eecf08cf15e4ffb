"""The control channel, sender side: a command becomes a ``control`` row announced with NOTIFY, and
the workers' replies (``control_replies`` rows, each announced on the replies channel) are
collected until every live worker addressed has answered, ``limit`` replies came, or ``timeout``
passed.

Why two tables rather than reply rows in one: a command is written once and read by every
worker, while each worker writes only its own reply row, so no two workers ever contend for a row
and a sender reads its replies with one indexed look-up. Why the sender may stop early: the
``workers`` table says which live workers the command reaches (Celery, over a broker, cannot know
and always waits the whole timeout); a worker that started a moment after the send still answers,
but only a sender still waiting sees it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..serialization import json_dumps, json_loads

if TYPE_CHECKING:
    from ..app import App

#: Seconds a command stays valid past the sender's timeout, so a worker busy for a moment still
#: handles a command nobody waits for (reply=False), and maintenance keeps it that much longer.
GRACE = 5.0

Reply = dict[str, Any]


def destinations(destination: str | Sequence[str] | None) -> list[str] | None:
    """Celery's ``destination``: a list of worker names (a single name is taken as one); None: all."""
    if destination is None:
        return None
    if isinstance(destination, str):
        return [d.strip() for d in destination.split(",") if d.strip()]
    return [str(d) for d in destination]


def broadcast(app: App, command: str, arguments: dict[str, Any] | None = None,
              destination: str | Sequence[str] | None = None, reply: bool = False, timeout: float = 1.0,
              limit: int | None = None, callback: Callable[[Reply], None] | None = None) -> list[Reply] | None:
    """Send ``command`` to the workers addressed (all, or those whose hostname or id is in
    ``destination``). With ``reply``, return Celery's list of ``{hostname: reply}`` dicts, one per
    worker that answered in time (``callback`` is called with each as it comes); else None."""
    names = destinations(destination)
    text = json_dumps(arguments or {})
    ttl = float(timeout) + GRACE
    lost = float(app.conf.worker_lost_timeout)
    if not reply:
        with app.connection() as conn:
            app.store.control_send(conn, command, text, names, False, ttl, lost)
        return None
    deadline = time.monotonic() + max(float(timeout), 0.0)
    replies: list[Reply] = []
    seen: set[str] = set()
    with app.direct_connection() as conn:  # (LISTEN: not through a transaction pooler)
        conn.execute(app.store.listen_control_replies)  # before the send: no reply can be missed
        sent = app.store.control_send(conn, command, text, names, True, ttl, lost)
        expected = set(sent.expected)
        while True:
            for row in app.store.control_replies(conn, sent.id):
                if row.worker_id in seen or (limit is not None and len(replies) >= limit):
                    continue
                seen.add(row.worker_id)
                answer = {row.hostname: json_loads(row.reply)}
                replies.append(answer)
                if callback is not None:
                    callback(answer)
            if limit is not None and len(replies) >= limit:
                break
            if expected and expected <= seen:
                break  # every live worker addressed has answered
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # woken by a reply's NOTIFY, one that came while the read above ran included (psycopg
            # keeps those for notifies()); the bound is a backstop, correctness never depends on it
            for _ in conn.notifies(timeout=min(left, 0.25), stop_after=1):
                pass
    return replies
