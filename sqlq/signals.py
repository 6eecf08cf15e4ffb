"""Signals with Celery's names, so existing hooks (metrics, tracing, cleanup) carry over.

A receiver that raises is logged and ignored: a broken metrics hook must not fail the job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sqlq.signals")


class Signal:
    def __init__(self, name: str):
        self.name = name
        self._receivers: list[tuple[Callable[..., Any], Any]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"

    def connect(self, receiver: Callable[..., Any] | None = None, *, sender: Any = None) -> Any:
        """Register ``receiver``; usable as ``@signal.connect`` or ``@signal.connect(sender=task)``."""
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            with self._lock:
                self._receivers.append((fn, sender))
            return fn

        return register(receiver) if receiver is not None else register

    def disconnect(self, receiver: Callable[..., Any]) -> None:
        with self._lock:
            self._receivers = [(fn, s) for fn, s in self._receivers if fn is not receiver]

    @property
    def has_receivers(self) -> bool:
        return bool(self._receivers)

    def send(self, sender: Any = None, **kwargs: Any) -> list[tuple[Callable[..., Any], Any]]:
        responses = []
        for fn, wanted in list(self._receivers):
            if wanted is not None and wanted is not sender and getattr(sender, "name", None) != wanted:
                continue
            try:
                responses.append((fn, fn(sender=sender, signal=self, **kwargs)))
            except Exception:  # noqa: BLE001 - receivers must not break the worker
                log.exception("receiver %r of signal %s raised", fn, self.name)
        return responses


task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")
