"""Task-side recorder: every benchmark task calls ``record(i)`` as its first (and only) action.

Each worker process appends fixed-width ``"<i> <time.time()>"`` lines to its own file in
``$BENCH_SINK_DIR`` (line-buffered, so one write(2) per task and no cross-process locking).
Because the records are fixed-width, the harness can count finished jobs from file sizes alone
(no parsing while the worker is busy) and read the files back once at the end. This module must
stay dependency-free: it is imported inside Celery, PgQueuer and Procrastinate workers alike.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RECORD_BYTES = 29  # 10-digit index, space, 17-char timestamp, newline

_file = None
_owner_pid: int | None = None


def _open_for_this_process():
    global _file, _owner_pid
    path = os.path.join(os.environ["BENCH_SINK_DIR"], f"{os.getpid()}.txt")
    _file = open(path, "a", buffering=1)  # noqa: SIM115 - kept open for the process lifetime
    _owner_pid = os.getpid()
    return _file


def record(i: int) -> None:
    started = time.time()
    out = _file if _owner_pid == os.getpid() else _open_for_this_process()
    out.write(f"{i:010d} {started:017.6f}\n")


def count_records(directory: str | Path) -> int:
    """Number of complete records written so far (from file sizes only)."""
    return sum(p.stat().st_size // RECORD_BYTES for p in Path(directory).glob("*.txt"))


def read_records(directory: str | Path) -> dict[int, float]:
    """Map job index -> first recorded start time, over all per-process files in ``directory``."""
    starts: dict[int, float] = {}
    for path in Path(directory).glob("*.txt"):
        data = path.read_bytes()
        complete = len(data) - len(data) % RECORD_BYTES
        for line in data[:complete].decode().splitlines():
            index, _, stamp = line.partition(" ")
            starts.setdefault(int(index), float(stamp))
    return starts
