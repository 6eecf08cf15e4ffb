"""Workers (workers.sql): their rows and heartbeats, their liveness locks, and the jobs of a worker
that is gone (``rescue``; its row moves to ``dead_workers``, listed until ``worker_dead_retention``),
of attempts a worker knows were cut off (``lost``), and of jobs whose task it does not know
(``hand_back``).

A worker holds a session-level advisory lock (two keys: this schema's ``liveness_namespace`` and
its ``lock_key``) on its housekeeping connection; one worker at a time reads ``pg_locks`` to see
whose lock is free (``workers_liveness``) and then rescues their jobs at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, cast

import psycopg

from .base import StoreBase
from .records import HandedBack, LostJobs, WorkerRow

#: Seconds a worker's liveness lock must stay free before the worker is presumed dead: a live
#: worker whose session was cut (a terminated backend) reconnects and takes it back well within it.
LIVENESS_GRACE = 1.0


class Workers(StoreBase):
    def register_worker(self, conn: psycopg.Connection, *, id: str, hostname: str, pid: int,
                        queues: list[str], concurrency: int, pool: str, lock_key: int | None = None,
                        tasks: Sequence[str] | None = None) -> None:
        """``tasks``: the task names the worker's app registers (None: taken to know every task)."""
        conn.execute(self.sql["REGISTER_WORKER"], {"id": id, "hostname": hostname, "pid": pid,
                                                   "queues": queues, "concurrency": concurrency, "pool": pool,
                                                   "lock_key": lock_key,
                                                   "tasks": None if tasks is None else list(tasks)})

    def heartbeat(self, conn: psycopg.Connection, worker_id: str) -> int | None:
        """How many workers the table holds (the share of cluster-wide chores is drawn from it); None
        when this worker's row is gone: it was presumed dead and its jobs rescued."""
        row = conn.execute(self.sql["HEARTBEAT"], {"id": worker_id}, prepare=True).fetchone()
        return None if row is None else int(cast("tuple[int]", row)[0])

    def unregister_worker(self, conn: psycopg.Connection, worker_id: str) -> None:
        conn.execute(self.sql["UNREGISTER_WORKER"], {"id": worker_id})

    def workers(self, conn: psycopg.Connection, timeout: float) -> list[WorkerRow]:
        """Every worker, live or dead (kept for ``worker_dead_retention``), each with its state:
        ``timeout`` is ``worker_lost_timeout``, past which a silent worker is no longer online."""
        rows = conn.execute(self.sql["WORKERS"], {"namespace": self.liveness_namespace,
                                                  "timeout": timeout}).fetchall()
        return [WorkerRow(*r) for r in rows]

    def expire_dead_workers(self, conn: psycopg.Connection, retention: float) -> int:
        """Forget the dead workers found dead more than ``retention`` seconds ago."""
        return conn.execute(self.sql["EXPIRE_DEAD_WORKERS"], {"retention": retention}).rowcount

    def hand_back(self, conn: psycopg.Connection, worker_id: str, jobs: Sequence[tuple[str, int]], *,
                  timeout: float, max_handbacks: int, delay: float, max_delay: float) -> HandedBack:
        """(id, attempt) jobs whose task this worker does not know: back to wait for a live worker of
        their queue that knows it, or FAILURE NotRegistered when there is none or they were handed
        back ``max_handbacks`` times (HAND_BACK)."""
        if not jobs:
            return HandedBack(0, 0)
        row = conn.execute(self.sql["HAND_BACK"], {
            "worker_id": worker_id, "ids": [j[0] for j in jobs], "attempts": [j[1] for j in jobs],
            "namespace": self.liveness_namespace, "timeout": timeout, "max_handbacks": max_handbacks,
            "delay": delay, "max_delay": max_delay}).fetchone()
        return HandedBack(*cast("tuple[Any, ...]", row)[:2])

    @property
    def liveness_namespace(self) -> int:
        """First key of the workers' two-key liveness locks: this schema's, as a signed int4."""
        key = zlib.crc32(f"sqlq-liveness:{self.schema}".encode())
        return key - (1 << 32) if key >= 1 << 31 else key

    def take_worker_lock(self, conn: psycopg.Connection, lock_key: int) -> bool:
        """Hold this worker's liveness lock for as long as ``conn``'s session lives."""
        return bool(cast("tuple[bool]", conn.execute(self.sql["WORKER_LOCK"], {"namespace": self.liveness_namespace,
                                                           "lock_key": lock_key}).fetchone())[0])

    def workers_liveness(self, conn: psycopg.Connection, timeout: float, grace: float = LIVENESS_GRACE) -> bool:
        """Note whose liveness lock is free; True when some worker is now dead (run ``rescue``)."""
        return bool(cast("tuple[bool]", conn.execute(self.sql["WORKERS_LIVENESS"],
                                 {"namespace": self.liveness_namespace, "timeout": timeout,
                                  "grace": grace}).fetchone())[0])

    def rescue(self, conn: psycopg.Connection, timeout: float, max_lost: int,
               grace: float = LIVENESS_GRACE) -> LostJobs:
        """Hand back or fail the jobs of dead workers."""
        row = conn.execute(self.sql["RESCUE"], {"timeout": timeout, "grace": grace, "max_lost": max_lost,
                                                "rerun": False}).fetchone()
        return LostJobs(*cast("tuple[Any, ...]", row)[:2])

    def lost(self, conn: psycopg.Connection, worker_id: str, jobs: Sequence[tuple[str, int]],
             max_lost: int, *, rerun: bool = False) -> LostJobs:
        """(id, attempt) jobs this worker knows were interrupted. ``rerun``: their attempts did nothing (rolled back), so they run again even when the task
        does not ack late."""
        if not jobs:
            return LostJobs(0, 0)
        row = conn.execute(self.sql["LOST"], {"worker_id": worker_id, "ids": [j[0] for j in jobs],
                                              "attempts": [j[1] for j in jobs], "max_lost": max_lost,
                                              "rerun": rerun}).fetchone()
        return LostJobs(*cast("tuple[Any, ...]", row)[:2])
