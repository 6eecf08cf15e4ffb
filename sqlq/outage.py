"""Riding out database outages: how long to wait before the next try, and what to log.

A production database restarts, fails over and drops connections every week; a worker or beat
that exits then is down. Every long-running loop in sqlq (claiming, recording outcomes,
housekeeping, LISTEN, beat passes, start-up) therefore catches the failure, waits a
:class:`Backoff` delay and tries again, and reports through one shared :class:`OutageLog`, so that
an outage reads as one WARNING when the database is lost and one INFO when it is back, whatever
the number of threads and attempts in between.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

from .errors import DatabaseUnavailableError, SchemaNotMigratedError, first_line

T = TypeVar("T")

#: psycopg errors that mean "the server or the connection is gone", not "this statement is wrong".
#: (A failover that briefly points the URL at a standby reads as read_only_sql_transaction.)
_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.ReadOnlySqlTransaction,
    DatabaseUnavailableError, ConnectionError,
)


def is_outage(exc: BaseException) -> bool:
    """True for the errors a database restart, failover or network cut produces."""
    return isinstance(exc, _OUTAGE_ERRORS)


class Backoff:
    """Jittered exponential backoff: ``first``, doubling up to ``cap``, back to ``first`` once a
    try succeeds (``reset``). Jitter ("equal jitter": half fixed, half random) keeps the workers
    of a cluster from reconnecting in step after a restart."""

    def __init__(self, first: float = 0.1, cap: float = 5.0, rng: random.Random | None = None):
        self.first = first
        self.cap = cap
        self._next = first
        self._random = (rng or random.Random()).random

    def next(self) -> float:
        """The delay before the next try (and double the one after it)."""
        ceiling = self._next
        self._next = min(self._next * 2, self.cap)
        return ceiling / 2 + self._random() * ceiling / 2

    def reset(self) -> None:
        self._next = self.first

    @property
    def failing(self) -> bool:
        return self._next != self.first


class OutageLog:
    """One WARNING when the database is lost, one INFO when it is back, shared by the threads of a
    process. Errors that are not outages (a bug, a statement the server refuses) are logged every
    time they happen, with their traceback: they are rare, and each one needs a reader."""

    def __init__(self, logger: logging.Logger, who: str):
        self.log = logger
        self.who = who
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_said = 0.0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException, doing: str) -> None:
        if not is_outage(exc):
            self.log.error("%s: %s failed; retrying", self.who, doing, exc_info=exc)
            return
        if self._went_down():
            self.log.warning("%s: lost the database while %s (%s); retrying with backoff until it is back",
                             self.who, doing, first_line(exc))
        else:
            self.log.debug("%s: %s failed again: %s", self.who, doing, first_line(exc))

    def waiting(self, exc: BaseException, what: str, timeout: float | None) -> None:
        """Start-up could not proceed yet (server down, schema not migrated yet)."""
        if self._went_down():
            limit = "for as long as it takes" if timeout is None else f"for up to {timeout:g}s"
            self.log.warning("%s: waiting for %s (%s); retrying %s (database_wait_timeout)",
                             self.who, what, first_line(exc), limit)
        else:
            self.log.debug("%s: still waiting for %s: %s", self.who, what, first_line(exc))

    def _went_down(self) -> bool:
        """Mark the outage's start; True for the failure that started it."""
        with self._lock:
            if self._down_since is not None:
                return False
            self._down_since = self._last_said = time.monotonic()
            return True

    def recovered(self) -> None:
        if self._down_since is None:  # the common case: nothing to say, no lock taken
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            self.log.info("%s: the database is back after %.1fs", self.who, time.monotonic() - since)

    def still_down(self, every: float, what: str) -> None:
        """A reminder at most every ``every`` seconds (start-up waits: the operator is watching)."""
        now = time.monotonic()
        with self._lock:
            if self._down_since is None or now - self._last_said < every:
                return
            self._last_said = now
            waited = now - self._down_since
        self.log.warning("%s: still waiting for %s (%.0fs so far)", self.who, what, waited)



def wait_for_database(step: Callable[[], T], *, outage: OutageLog, what: str, timeout: float | None,
                      stopped: Callable[[], bool] = lambda: False, backoff: Backoff | None = None,
                      sleep: Callable[[float], object] = time.sleep, remind_every: float = 30.0) -> T | None:
    """Run ``step`` until it succeeds; on an outage (or a schema not migrated *yet*: a migration
    job started beside the worker) wait and try again, up to ``timeout`` seconds (None: forever).

    Returns ``step``'s value, or None when ``stopped()`` became true first. Errors that are neither
    (a wrong password, a missing database) are raised at once: waiting cannot fix them."""
    backoff = backoff or Backoff(first=0.2)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not stopped():
        try:
            value = step()
        except Exception as exc:
            if not _worth_waiting_for(exc) or (deadline is not None and time.monotonic() >= deadline):
                raise
            outage.waiting(exc, what, timeout)
            outage.still_down(remind_every, what)
            delay = backoff.next()
            if deadline is not None:
                delay = min(delay, max(deadline - time.monotonic(), 0.0))
            sleep(delay)
            continue
        outage.recovered()
        return value
    return None


def _worth_waiting_for(exc: BaseException) -> bool:
    if isinstance(exc, SchemaNotMigratedError):
        return True
    if isinstance(exc, DatabaseUnavailableError):
        # a server that answers "no" (bad login, no such database) will say it again: report it now
        text = str(exc)
        return not any(s in text for s in ("rejected the login", "does not exist"))
    return is_outage(exc)
