"""Paused queues (queues.sql): pausing, resuming and listing them. Workers honour the set at their
next claim; ``sqlq.worker.worker`` reads it (``Worker._read_paused``).
"""

from __future__ import annotations

from typing import cast

import psycopg

from .base import StoreBase
from .records import PausedQueue


class Queues(StoreBase):
    @property
    def listen_queues(self) -> str:
        """The LISTEN statement of the channel that pauses and resumes are announced on."""
        return self.sql["LISTEN_QUEUES"]

    def pause_queue(self, conn: psycopg.Connection, queue: str) -> bool:
        """Pause ``queue``; False when it was already paused."""
        return bool(cast("tuple[bool, str]", conn.execute(self.sql["PAUSE_QUEUE"], {"queue": queue}).fetchone())[0])

    def resume_queue(self, conn: psycopg.Connection, queue: str) -> bool:
        """Resume ``queue``; False when it was not paused."""
        row = conn.execute(self.sql["RESUME_QUEUE"], {"queue": queue}).fetchone()
        return bool(cast("tuple[bool, str, str]", row)[0])

    def paused_queues(self, conn: psycopg.Connection) -> list[PausedQueue]:
        return [PausedQueue(*r) for r in conn.execute(self.sql["PAUSED_QUEUES"]).fetchall()]
