"""Remote control (control.sql): commands to workers and their replies, the revoked ids, and the
few reads of the worker tables that ``inspect`` answers need.

What the commands mean is sqlq/control/; these methods only write and read the rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

import psycopg

from .base import StoreBase
from .records import ControlCommand, ControlReply, ControlSent, ScheduledJob


class Control(StoreBase):
    @property
    def listen_control(self) -> str:
        """The LISTEN statement of the channel that announces commands to workers."""
        return self.sql["LISTEN_CONTROL"]

    @property
    def listen_control_replies(self) -> str:
        """The LISTEN statement of the channel that announces workers' replies to senders."""
        return self.sql["LISTEN_CONTROL_REPLIES"]

    def control_send(self, conn: psycopg.Connection, command: str, arguments_json: str,
                     destination: Sequence[str] | None, reply: bool, ttl: float, lost: float) -> ControlSent:
        """Write and announce one command, valid for ``ttl`` seconds; ``lost`` is the heartbeat age
        past which a worker is not expected to answer."""
        row = conn.execute(self.sql["CONTROL_SEND"], {
            "command": command, "arguments": arguments_json,
            "destination": list(destination) if destination is not None else None,
            "reply": reply, "ttl": ttl, "lost": lost}).fetchone()
        return ControlSent(*cast("tuple[Any, ...]", row))

    def control_pending(self, conn: psycopg.Connection, worker_id: str, hostname: str,
                        since: dt.datetime) -> list[ControlCommand]:
        rows = conn.execute(self.sql["CONTROL_PENDING"],
                            {"worker_id": worker_id, "hostname": hostname, "since": since}).fetchall()
        return [ControlCommand(*r) for r in rows]

    def control_reply(self, conn: psycopg.Connection, control_id: int, worker_id: str, hostname: str,
                      reply_json: str) -> None:
        conn.execute(self.sql["CONTROL_REPLY"], {"control_id": control_id, "worker_id": worker_id,
                                                 "hostname": hostname, "reply": reply_json})

    def control_replies(self, conn: psycopg.Connection, control_id: int) -> list[ControlReply]:
        return [ControlReply(*r) for r in conn.execute(self.sql["CONTROL_REPLIES"],
                                                       {"control_id": control_id}).fetchall()]

    def control_clock(self, conn: psycopg.Connection) -> dt.datetime:
        return cast("tuple[dt.datetime]", conn.execute(self.sql["CONTROL_CLOCK"]).fetchone())[0]

    def control_prune(self, conn: psycopg.Connection, keep: float) -> int:
        """Delete commands expired for ``keep`` seconds (their replies go with them) and expired
        revoked ids; returns how many commands went."""
        return conn.execute(self.sql["CONTROL_PRUNE"], {"keep": keep}).rowcount

    def revoked_ids(self, conn: psycopg.Connection, limit: int) -> list[str]:
        return [r[0] for r in conn.execute(self.sql["REVOKED_IDS"], {"limit": limit}).fetchall()]

    def worker_set_queues(self, conn: psycopg.Connection, worker_id: str, queues: Sequence[str]) -> None:
        conn.execute(self.sql["WORKER_SET_QUEUES"], {"id": worker_id, "queues": list(queues)})

    def control_scheduled(self, conn: psycopg.Connection, queues: Sequence[str], limit: int) -> list[ScheduledJob]:
        rows = conn.execute(self.sql["CONTROL_SCHEDULED"], {"queues": list(queues), "limit": limit}).fetchall()
        return [ScheduledJob(*r) for r in rows]

    def control_started(self, conn: psycopg.Connection, worker_id: str, ids: Sequence[str]) -> dict[str, float]:
        """When each of this worker's jobs among ``ids`` started (seconds since the epoch)."""
        rows = conn.execute(self.sql["CONTROL_STARTED"], {"ids": list(ids), "worker_id": worker_id}).fetchall()
        return {r[0]: r[1] for r in rows}
