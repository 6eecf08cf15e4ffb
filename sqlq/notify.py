"""LISTEN/NOTIFY: being told "look now" instead of polling.

Correctness never depends on a notification: they can be lost while a connection is down, so
every waiter also re-checks on a slow timer. A lost LISTEN connection reconnects with capped
exponential backoff.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections import defaultdict
from collections.abc import Callable

import psycopg

from .db import connect
from .outage import Backoff, OutageLog

log = logging.getLogger("sqlq.notify")


class Listener:
    """A daemon thread holding one LISTEN connection and handing each notification to a callback.

    ``on_notify(channel, payload)`` runs on the listener thread and must be quick.
    ``on_reconnect()`` runs after a (re)connection, because notifications sent while we were away
    are gone and the owner should re-check whatever it waits for.

    The thread waits on the connection's socket and on one end of a socket pair that ``stop()``
    writes to, so stopping takes effect at once: a worker's exit and every ``App.close()`` would
    otherwise wait out a polling timeout.
    """

    #: seconds between two looks at the connection when nothing arrives (a stop never waits for it)
    idle_check = 5.0

    def __init__(self, url: str, listen_sql: list[str], on_notify: Callable[[str, str], None],
                 on_reconnect: Callable[[], None] | None = None, name: str = "sqlq-listener",
                 max_backoff: float = 5.0, outage: OutageLog | None = None):
        self.url = url
        self.listen_sql = listen_sql
        self.on_notify = on_notify
        self.on_reconnect = on_reconnect
        self.max_backoff = max_backoff
        self.outage = outage or OutageLog(log, name)
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._waker: socket.socket | None = None  # stop() writes to it to wake the thread: start()
        self._wakeup: socket.socket | None = None  # makes the pair, the thread's exit closes it
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, wait: float = 10.0) -> Listener:
        """Start and wait until LISTEN is in place, so nothing sent after this returns is missed."""
        self._waker, self._wakeup = socket.socketpair()
        self._thread.start()
        self.ready.wait(wait)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._waker is not None:
            with contextlib.suppress(OSError):  # the thread has ended and closed the pair
                self._waker.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = Backoff(cap=self.max_backoff)
        while not self._stop.is_set():
            try:
                with connect(self.url) as conn:
                    self._conn = conn
                    for statement in self.listen_sql:
                        conn.execute(statement)
                    backoff.reset()
                    self.outage.recovered()
                    self.ready.set()
                    if self.on_reconnect is not None:
                        self.on_reconnect()
                    self._listen(conn)
            except Exception as exc:  # noqa: BLE001 - any connection trouble: back off and reconnect
                if self._stop.is_set():
                    break
                self.outage.failed(exc, "listening for notifications")
                self.ready.clear()
                self._stop.wait(backoff.next())
            finally:
                self._conn = None
        assert self._waker is not None and self._wakeup is not None  # start() made the pair
        self._waker.close()
        self._wakeup.close()

    def _listen(self, conn: psycopg.Connection) -> None:
        """Hand on notifications until stopped; raises when the connection breaks."""
        with selectors.DefaultSelector() as selector:  # (not select.select: no limit on fd numbers)
            selector.register(conn.fileno(), selectors.EVENT_READ)
            assert self._wakeup is not None  # start() made it before starting the thread
            selector.register(self._wakeup, selectors.EVENT_READ)
            while not self._stop.is_set():
                # timeout=0: take what has arrived (and what psycopg kept while LISTEN ran), never
                # wait inside psycopg, where a stop could not reach us; a broken connection raises
                for note in conn.notifies(timeout=0):
                    self.on_notify(note.channel, note.payload)
                if self._stop.is_set():
                    break
                selector.select(self.idle_check)


class ResultWaiter:
    """Wakes whoever waits in ``AsyncResult.get()`` or ``aget()`` when their job finishes.

    One LISTEN connection per app serves every waiting thread and coroutine. The FINISH statement
    sends the finished ids (or an empty payload for a large batch, meaning "everyone re-check").
    A waiter registers a ``wake`` callable: ``threading.Event.set`` for a thread, a
    ``call_soon_threadsafe`` into its event loop for a coroutine.
    """

    def __init__(self, url: str, listen_sql: str):
        self._wakers: dict[str, set[Callable[[], None]]] = defaultdict(set)
        self._lock = threading.Lock()
        self._listener = Listener(url, [listen_sql], self._on_notify, self._wake_all, name="sqlq-results")
        self._started = False

    def ensure_started(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self._listener.start()

    def register(self, job_id: str, wake: Callable[[], None] | None = None) -> Callable[[], None]:
        """Call ``wake`` (default: a new ``threading.Event``'s ``set``) when ``job_id`` may have
        finished; returns what to pass to ``unregister``."""
        if wake is None:
            wake = threading.Event().set
        with self._lock:
            self._wakers[job_id].add(wake)
        return wake

    def unregister(self, job_id: str, wake: Callable[[], None]) -> None:
        with self._lock:
            wakers = self._wakers.get(job_id)
            if wakers is not None:
                wakers.discard(wake)
                if not wakers:
                    del self._wakers[job_id]

    def _on_notify(self, channel: str, payload: str) -> None:
        if not payload:
            self._wake_all()
            return
        with self._lock:
            wakers = [wake for job_id in payload.split(",") for wake in self._wakers.get(job_id, ())]
        for wake in wakers:
            wake()

    def _wake_all(self) -> None:
        with self._lock:
            wakers = [wake for group in self._wakers.values() for wake in group]
        for wake in wakers:
            wake()

    def close(self) -> None:
        if self._started:
            self._listener.stop()
