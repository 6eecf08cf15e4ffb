"""Remote control through PostgreSQL: ``app.control`` (Celery's Control) and its ``inspect()``.

A command is a row of the ``control`` table announced with NOTIFY; each worker addressed answers
with a row of ``control_replies`` (sqlq/control/channel.py). The workers' side is
sqlq/control/server.py and commands.py; revoked ids and terminating a running job are
sqlq/control/revocation.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .channel import broadcast
from .inspect import Inspect
from .revocation import signal_number

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Control", "Inspect"]

Destination = str | Sequence[str] | None


class Control:
    """Celery's ``app.control``. The commands that change something reply only when asked
    (``reply=True``), as Celery's do; they return Celery's list of ``{hostname: reply}`` then."""

    def __init__(self, app: App):
        self.app = app

    def inspect(self, destination: Destination = None, timeout: float = 1.0,
                callback: Callable[[dict[str, Any]], None] | None = None, limit: int | None = None,
                **_celery: Any) -> Inspect:
        _no_broker(_celery)
        return Inspect(self.app, destination, timeout, callback, limit)

    def broadcast(self, command: str, arguments: dict[str, Any] | None = None, destination: Destination = None,
                  reply: bool = False, timeout: float = 1.0, limit: int | None = None,
                  callback: Callable[[dict[str, Any]], None] | None = None,
                  **_celery: Any) -> list[dict[str, Any]] | None:
        """Send any command by name (the ones ``sqlq.control.commands`` handles; another gets an
        error reply from each worker)."""
        _no_broker(_celery)
        return broadcast(self.app, command, arguments, destination, reply, timeout, limit, callback)

    def ping(self, destination: Destination = None, timeout: float = 1.0,
             **kwargs: Any) -> list[dict[str, Any]]:
        """``[{'sqlq@host': {'ok': 'pong'}}, ...]``, one per worker that answered."""
        kwargs.pop("reply", None)
        return self.broadcast("ping", destination=destination, reply=True, timeout=timeout, **kwargs) or []

    def shutdown(self, destination: Destination = None, **kwargs: Any) -> list[dict[str, Any]] | None:
        """Warm shutdown: the workers stop claiming, finish their running jobs and exit."""
        return self.broadcast("shutdown", destination=destination, **kwargs)

    def rate_limit(self, task_name: str, rate_limit: Any, destination: Destination = None,
                   **kwargs: Any) -> list[dict[str, Any]] | None:
        """Change a task's rate limit (``'10/m'``; None or 0 removes it). A sqlq limit is one token
        bucket shared by every worker (sqlq.rate_limits), so it is written once here and each
        worker reads it again at once; a limit for some workers only does not exist."""
        from ..rate_limits import set_rate_limit

        if destination is not None:
            raise ConfigurationError(
                "rate_limit(destination=...): a sqlq rate limit is one bucket shared by every worker, "
                "not a per-worker setting; call it without destination")
        set_rate_limit(self.app, task_name, rate_limit)
        return self.broadcast("rate_limit", {"task_name": task_name, "rate_limit": rate_limit}, **kwargs)

    def concurrency_limit(self, task_name: str, limit: Any, key: str | None = None, destination: Destination = None,
                          **kwargs: Any) -> list[dict[str, Any]] | None:
        """Change a task's concurrency limit (of its key value ``key`` when given; None or 0 removes
        it). The limit is one row every worker's claims read (sqlq.concurrency_limits), so it is
        written once here, holds from each worker's next claim of the task, and the workers are told
        to read which tasks are limited at once; a limit for some workers only does not exist."""
        from ..concurrency_limits import set_concurrency_limit

        if destination is not None:
            raise ConfigurationError(
                "concurrency_limit(destination=...): a sqlq concurrency limit holds for every worker "
                "together, not per worker; call it without destination")
        n = set_concurrency_limit(self.app, task_name, limit, key)
        return self.broadcast("concurrency_limit", {"task_name": task_name, "limit": n, "key": key}, **kwargs)

    def time_limit(self, task_name: str, soft: float | None = None, hard: float | None = None,
                   destination: Destination = None, **kwargs: Any) -> list[dict[str, Any]] | None:
        """Set a task's soft and hard time limits in the workers addressed, until they restart."""
        return self.broadcast("time_limit", {"task_name": task_name, "soft": soft, "hard": hard},
                              destination=destination, **kwargs)

    def pool_grow(self, n: int = 1, destination: Destination = None, **kwargs: Any) -> list[dict[str, Any]] | None:
        return self.broadcast("pool_grow", {"n": n}, destination=destination, **kwargs)

    def pool_shrink(self, n: int = 1, destination: Destination = None,
                    **kwargs: Any) -> list[dict[str, Any]] | None:
        return self.broadcast("pool_shrink", {"n": n}, destination=destination, **kwargs)

    def add_consumer(self, queue: str, exchange: str | None = None, exchange_type: str | None = None,
                     routing_key: str | None = None, options: dict[str, Any] | None = None,
                     destination: Destination = None, **kwargs: Any) -> list[dict[str, Any]] | None:
        """Start consuming ``queue`` (until the worker restarts)."""
        if exchange or routing_key or options:
            raise ConfigurationError(
                "add_consumer takes a queue name only: a sqlq queue gets its bindings from the routes "
                "(task_queues, `sqlq routes add`), not from a consumer")
        return self.broadcast("add_consumer", {"queue": queue}, destination=destination, **kwargs)

    def cancel_consumer(self, queue: str, destination: Destination = None,
                        **kwargs: Any) -> list[dict[str, Any]] | None:
        return self.broadcast("cancel_consumer", {"queue": queue}, destination=destination, **kwargs)

    def revoke(self, task_id: str | Sequence[str], destination: Destination = None, terminate: bool = False,
               signal: str | int = "SIGTERM", **kwargs: Any) -> list[dict[str, Any]] | None:
        """Revoke jobs: a waiting one is recorded REVOKED now; the ids are kept in the ``revoked``
        table (until ``worker_revoke_expires``), so a worker that claims one, now or after a
        restart, records it REVOKED without running it; with ``terminate``, the worker running one
        stops it (``signal``; see sqlq.control.revocation for what each pool can do)."""
        ids = [task_id] if isinstance(task_id, str) else [str(t) for t in task_id]
        self.flag_revoked(ids, terminate, signal)
        return self.broadcast("revoke", {"task_id": ids, "terminate": terminate, "signal": signal},
                              destination=destination, **kwargs)

    def flag_revoked(self, ids: Sequence[str], terminate: bool = False, signal: str | int = "SIGTERM",
                     task_name: str | None = None, notify: bool = False) -> int:
        """What ``revoke`` writes: the waiting jobs among ``ids`` become REVOKED, and the ids go in
        the ``revoked`` table for the workers; with ``notify``, the workers are also sent the
        ``revoke`` command (no reply awaited). Returns how many waiting jobs were revoked."""
        from .. import signals
        from ..task import task_uuid

        signal_number(signal)  # (an unknown signal name is an error here, before anything is written)
        rows = [task_uuid(t) for t in ids]
        with self.app.connection() as conn:
            revoked = self.app.store.revoke(conn, rows, terminate=terminate,
                                            signal=str(signal) if terminate else None,
                                            expires=float(self.app.conf.worker_revoke_expires))
        if revoked and signals.task_revoked.has_receivers:
            signals.send_revoked(self.app, list(ids), task_name)
        if notify:
            self.broadcast("revoke", {"task_id": list(ids), "terminate": terminate, "signal": signal})
        return revoked

    def terminate(self, task_id: str | Sequence[str], destination: Destination = None,
                  signal: str | int = "SIGTERM", **kwargs: Any) -> list[dict[str, Any]] | None:
        """``revoke(task_id, terminate=True, signal=signal)``, as Celery's."""
        return self.revoke(task_id, destination=destination, terminate=True, signal=signal, **kwargs)


def _no_broker(options: dict[str, Any]) -> None:
    """Celery's broker arguments (``connection``, ``channel``, ``pattern``, ``matcher``) name a
    broker sqlq does not have: an error rather than an argument taken and ignored."""
    if options:
        raise ConfigurationError(
            f"{', '.join(sorted(options))}: sqlq's control goes through PostgreSQL, not a broker "
            f"connection or channel; address workers with destination=[hostnames or worker ids]")
