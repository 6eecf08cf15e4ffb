"""``app.control.inspect()``: Celery's Inspect, answered by the workers through PostgreSQL.

Each method sends one command and returns Celery's shape: a dict keyed by worker hostname
(``{'sqlq@host': [...]}``), or None when no worker replied within the timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .channel import broadcast

if TYPE_CHECKING:
    from ..app import App


class Inspect:
    """What the workers addressed hold and know (``destination``: hostnames or worker ids; None:
    every worker), each answer awaited up to ``timeout`` seconds."""

    def __init__(self, app: App, destination: str | Sequence[str] | None = None, timeout: float = 1.0,
                 callback: Callable[[dict[str, Any]], None] | None = None, limit: int | None = None):
        self.app = app
        self.destination = destination
        self.timeout = timeout
        self.callback = callback
        self.limit = limit

    def _request(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        replies = broadcast(self.app, command, arguments, destination=self.destination, reply=True,
                            timeout=self.timeout, limit=self.limit, callback=self.callback)
        merged: dict[str, Any] = {}
        for answer in replies or ():
            merged.update(answer)
        return merged or None

    def ping(self, destination: str | Sequence[str] | None = None) -> dict[str, Any] | None:
        """``{'sqlq@host': {'ok': 'pong'}}`` for each worker that answered."""
        if destination is not None:
            return Inspect(self.app, destination, self.timeout, self.callback, self.limit).ping()
        return self._request("ping")

    def active(self, safe: bool | None = None) -> dict[str, Any] | None:
        """The jobs each worker runs now, as Celery's request dicts (``id``, ``name``, ``args``,
        ``kwargs``, ``hostname``, ``time_start``, ``worker_pid``, ``delivery_info``, ...)."""
        return self._request("active")

    def reserved(self, safe: bool | None = None) -> dict[str, Any] | None:
        """The jobs each worker has claimed and not started (its prefetch buffer)."""
        return self._request("reserved")

    def scheduled(self, safe: bool | None = None) -> dict[str, Any] | None:
        """Jobs waiting for their eta or countdown in each worker's queues (``{'eta', 'priority',
        'request'}``). In sqlq they are rows of the queue, held by no worker until due, so every
        worker of a queue lists the same ones."""
        return self._request("scheduled")

    def registered(self, *taskinfoitems: str) -> dict[str, Any] | None:
        """The task names each worker's app registers (with ``taskinfoitems``, e.g. 'rate_limit',
        ``'name [rate_limit=10/m]'``)."""
        return self._request("registered", taskinfoitems=list(taskinfoitems) or None)

    registered_tasks = registered

    def revoked(self) -> dict[str, Any] | None:
        """The revoked ids each worker honours (the row ids: a task id that is not a UUID shows as
        the UUID its job was written under)."""
        return self._request("revoked")

    def stats(self) -> dict[str, Any] | None:
        """Each worker's statistics: Celery's keys (``total``, ``pid``, ``uptime``, ``pool``,
        ``broker``, ``prefetch_count``, ``rusage``) and sqlq's ``worker_id``, ``queues``,
        ``processed``."""
        return self._request("stats")

    def active_queues(self) -> dict[str, Any] | None:
        return self._request("active_queues")

    def query_task(self, *ids: str | Sequence[str]) -> dict[str, Any] | None:
        """``{task_id: ['active' | 'reserved', request]}`` for those of ``ids`` each worker holds."""
        flat: list[str] = []
        for item in ids:
            flat.extend([item] if isinstance(item, str) else list(item))
        return self._request("query_task", ids=flat)

    def conf(self, with_defaults: bool = False) -> dict[str, Any] | None:
        """Each worker's settings (the ones its app set; all with ``with_defaults``), passwords masked."""
        return self._request("conf", with_defaults=with_defaults)
