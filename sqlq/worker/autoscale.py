"""``sqlq worker --autoscale MAX,MIN``: Celery's autoscaler, on the pools' pool_grow/pool_shrink.

The pool starts with MIN processes or threads. About once a second the autoscaler compares the jobs
the worker holds (claimed and not finished: what Celery counts as reserved requests) with the pool's
size: more of them than the pool has means jobs wait, so it grows toward MAX at once; fewer, and
after ``keepalive`` seconds without growing, it shrinks toward MIN. The worker claims
*size × prefetch multiplier* jobs, so a backlog in the database shows up as held jobs as soon as a
claim fills the buffer; no query is added. ``AUTOSCALE_KEEPALIVE`` (Celery's environment variable)
sets ``keepalive``, 30 seconds by default.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("sqlq.worker")

#: Seconds between two looks at the pool (Celery's autoscaler wakes every second too).
INTERVAL = 1.0
#: Seconds the pool stays at its size after growing before it may shrink (Celery's default).
KEEPALIVE = 30.0


def parse_autoscale(value: str | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """``"MAX,MIN"`` (or ``"MAX"``, MIN then 0 as in Celery, raised to 1 here: a pool of no
    process would run nothing) as ``(max, min)``; swapped numbers are put in order, as Celery does."""
    if value is None or value == "":
        return None
    parts: list[Any] = list(value) if isinstance(value, (tuple, list)) else str(value).split(",")
    try:
        numbers = [int(str(p).strip()) for p in parts]
    except ValueError:
        raise ConfigurationError(
            f"--autoscale {value!r}: give MAX,MIN as two whole numbers, e.g. --autoscale 10,3"
        ) from None
    if not 1 <= len(numbers) <= 2 or any(n < 0 for n in numbers):
        raise ConfigurationError(
            f"--autoscale {value!r}: give MAX,MIN as two whole numbers, e.g. --autoscale 10,3"
        )
    high, low = (numbers[0], numbers[1]) if len(numbers) == 2 else (numbers[0], 0)
    high, low = max(high, low), min(high, low)
    if high < 1:
        raise ConfigurationError(f"--autoscale {value!r}: MAX must be 1 or more")
    return high, max(low, 1)


def keepalive_from_env() -> float:
    raw = os.environ.get("AUTOSCALE_KEEPALIVE", "")
    if not raw.strip():
        return KEEPALIVE
    try:
        return max(float(raw), 0.0)
    except ValueError:
        raise ConfigurationError(f"AUTOSCALE_KEEPALIVE={raw!r} is not a number of seconds") from None


class Autoscaler:
    """The thread that resizes the worker's pool between ``low`` and ``high`` (see the module)."""

    def __init__(self, worker: Worker, high: int, low: int, keepalive: float | None = None):
        self.worker = worker
        self.high = high
        self.low = low
        self.keepalive = keepalive_from_env() if keepalive is None else keepalive
        self._stopped = threading.Event()
        self._last_grow = time.monotonic()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlq-autoscale", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def info(self) -> dict[str, int]:
        """Celery's ``stats()['autoscaler']``."""
        return {"max": self.high, "min": self.low, "current": self.worker.concurrency, "qty": self.held()}

    def held(self) -> int:
        return max(self.worker._held(), 0)

    def _run(self) -> None:
        while not self._stopped.wait(INTERVAL):
            try:
                self.step(time.monotonic())
            except Exception:  # noqa: BLE001 - a failed resize must not end autoscaling; said, tried again
                log.exception("autoscale: resizing the pool failed; trying again in %.0fs", INTERVAL)

    def step(self, now: float) -> int:
        """One look: grow or shrink once if due; returns the pool's size after it."""
        worker = self.worker
        if worker._stop_mode is not None:
            return worker.concurrency
        size = worker.concurrency
        held = self.held()
        wanted = min(held, self.high)
        if wanted > size:
            self._last_grow = now
            return self._resize(wanted, "grows")
        wanted = max(held, self.low)
        if wanted < size and now - self._last_grow >= self.keepalive:
            return self._resize(wanted, "shrinks")
        return size

    def _resize(self, target: int, how: str) -> int:
        worker = self.worker
        log.info(
            "autoscale: pool %s from %d to %d (%d job(s) held)", how, worker.concurrency, target, self.held()
        )
        worker.pool.resize(target)  # type: ignore[attr-defined]  # (threads and prefork: Worker checks)
        worker.resized(target)
        return target
