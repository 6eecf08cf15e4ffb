"""A worker's claimed jobs (claims.sql): its claiming session, claiming, and recording outcomes,
retries and jobs handed back, each for a batch in one statement, each guarded by
``id AND worker_id AND attempt``.

The claiming session (``begin_claiming`` … ``end_claiming``) commits without waiting for the WAL
flush and keeps CLAIM's generic plan; why that is safe is CLAIM_SESSION_BEGIN's description.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Collection, Sequence
from typing import Any, cast

import psycopg

from ..errors import InvalidJobError
from . import binary
from .base import StoreBase
from .records import ClaimedJob, ConcurrencyLimitedClaim, Outcome, RateLimitedClaim, RetryRequest

#: FINISH's and FINISH_OK's twins with ON CONFLICT (Claims.finish).
_UPSERT = {"FINISH": "FINISH_UPSERT", "FINISH_OK": "FINISH_OK_UPSERT"}


#: Claiming connections that go through a transaction pooler: each claim statement runs in a
#: transaction of its own with CLAIM_TRANSACTION_SETTINGS (begin_claiming's ``per_transaction``).
_PER_TRANSACTION: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()


class Claims(StoreBase):
    def begin_claiming(self, conn: psycopg.Connection, *, per_transaction: bool = False) -> None:
        """Make ``conn``'s session the claiming session: from now on it runs CLAIM and PROMOTE only,
        until ``end_claiming``. ``per_transaction`` (``conn`` goes through a transaction pooler):
        the session is left as it is and each claim sets the same settings for its own transaction."""
        if per_transaction:
            _PER_TRANSACTION.add(conn)
        else:
            conn.execute(self.sql["CLAIM_SESSION_BEGIN"])

    def end_claiming(self, conn: psycopg.Connection) -> None:
        """Give ``conn`` the server's settings back, or close it when that fails: the pool drops a
        closed connection, and a producer must never get one whose commits do not wait for the
        flush. Never raises psycopg's errors (the connection was broken anyway, or about to be)."""
        if conn in _PER_TRANSACTION:
            _PER_TRANSACTION.discard(conn)
            return
        try:
            conn.execute(self.sql["CLAIM_SESSION_END"])
        except psycopg.Error:
            conn.close()

    def claim(self, conn: psycopg.Connection, worker_id: str, queue: str, limit: int) -> list[ClaimedJob]:
        """Claim up to ``limit`` jobs of ``queue``.

        A row CLAIM cannot take (an ``attempt`` at the integer limit fails the whole statement: every
        worker of the queue would fail every claim) is set aside by QUARANTINE as FAILURE
        InvalidJobError, and the claim runs again. A claim that still fails for its data raises
        InvalidJobError saying so; connection errors propagate unchanged."""
        rows = self._claim_rows(conn, "CLAIM", {"worker_id": worker_id, "queue": queue, "limit": limit})
        return _claimed_jobs(rows)

    def claim_unlimited(self, conn: psycopg.Connection, worker_id: str, queue: str, limit: int,
                        limited: Sequence[str]) -> list[ClaimedJob]:
        """``claim`` but for the jobs of the ``limited`` tasks (CLAIM_UNLIMITED), which
        ``claim_rate_limited`` takes as their buckets allow."""
        rows = self._claim_rows(conn, "CLAIM_UNLIMITED", {"worker_id": worker_id, "queue": queue, "limit": limit,
                                                          "limited": list(limited)})
        return _claimed_jobs(rows)

    def claim_rate_limited(self, conn: psycopg.Connection, worker_id: str, queue: str, task: str,
                           limit: int) -> RateLimitedClaim:
        """Claim up to ``limit`` jobs of the rate-limited ``task`` in ``queue``, taking a token from its
        bucket for each (CLAIM_RATE_LIMITED), and say when to try again if jobs were left waiting
        for tokens. Rows CLAIM cannot take are set aside as ``claim`` does."""
        rows = self._claim_rows(conn, "CLAIM_RATE_LIMITED", {"worker_id": worker_id, "queue": queue, "task": task,
                                                             "limit": limit})
        jobs = _claimed_jobs([r[:-1] for r in rows if r[0] is not None])
        return RateLimitedClaim(jobs, rows[0][-1] if rows else None)

    def claim_concurrency_limited(self, conn: psycopg.Connection, worker_id: str, queue: str, task: str,
                                  limit: int, keyed: bool = False) -> ConcurrencyLimitedClaim:
        """Claim up to ``limit`` jobs of the concurrency-limited ``task`` in ``queue``, as many as its
        free slots allow (per key value when ``keyed``: the task has a ``concurrency_key``), and say
        whether jobs were left waiting for a slot. One transaction of two statements: the limit
        rows' lock (CONCURRENCY_LOCK), then the claim, whose snapshot is taken once the lock is
        held (why it cannot be one statement: CONCURRENCY_LOCK's description). Rows CLAIM cannot take
        are set aside as ``claim`` does, after the transaction."""
        params = {"worker_id": worker_id, "queue": queue, "task": task, "limit": limit}
        statement = "CLAIM_CONCURRENCY_KEYED" if keyed else "CLAIM_CONCURRENCY_LIMITED"
        try:
            rows = self._locked_claim(conn, statement, params)
        except psycopg.DataError:
            if not conn.autocommit:
                raise
            self.quarantine(conn, queue)
            rows = self._locked_claim(conn, statement, params)
        jobs = _claimed_jobs([r[:-1] for r in rows if r[0] is not None])
        return ConcurrencyLimitedClaim(jobs, bool(rows[0][-1]) if rows else False)

    def _locked_claim(self, conn: psycopg.Connection, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """CONCURRENCY_LOCK then the claim, in one transaction (on a pooled claiming connection
        with CLAIM_TRANSACTION_SETTINGS first, as ``_run_claim``)."""
        with conn.transaction():
            if conn in _PER_TRANSACTION:
                conn.execute(self.sql["CLAIM_TRANSACTION_SETTINGS"])
            conn.execute(self.sql["CONCURRENCY_LOCK"], {"task": params["task"]}, prepare=True)
            return conn.execute(self.sql[statement], params, prepare=True).fetchall()

    def _claim_rows(self, conn: psycopg.Connection, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one of the claim statements, setting aside (QUARANTINE) the queue's rows that make it
        fail for their data, once; see ``claim``."""
        queue = params["queue"]
        try:
            return self._run_claim(conn, statement, params)
        except psycopg.DataError as exc:
            if not conn.autocommit:  # inside the caller's transaction, which the error aborted
                raise
            count = self.quarantine(conn, queue)
            try:
                return self._run_claim(conn, statement, params)
            except psycopg.DataError as again:
                raise InvalidJobError(
                    f"claiming from queue {queue!r} fails: {type(again).__name__}: "
                    f"{again.diag.message_primary or again}; {count} impossible row(s) were set aside, but "
                    f"another row of that queue holds values sqlq cannot handle: inspect its waiting rows "
                    f"(SELECT * FROM {self.schema}.jobs WHERE queue = '{queue}' AND state = 'available')"
                ) from exc

    def _run_claim(self, conn: psycopg.Connection, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """One claim statement; on a pooled claiming connection in its own transaction after
        CLAIM_TRANSACTION_SETTINGS, the four statements sent in one round trip (a pipeline: the
        rows are read once the COMMIT is back)."""
        if conn not in _PER_TRANSACTION:
            return conn.execute(self.sql[statement], params, prepare=True).fetchall()
        with conn.pipeline(), conn.transaction():
            conn.execute(self.sql["CLAIM_TRANSACTION_SETTINGS"])
            cur = conn.execute(self.sql[statement], params, prepare=True)
        return cur.fetchall()

    def quarantine(self, conn: psycopg.Connection, queue: str) -> int:
        """Move ``queue``'s rows that no worker can run (QUARANTINE) to results as FAILURE; returns
        how many."""
        return cast("tuple[int]", conn.execute(self.sql["QUARANTINE"], {"queue": queue}).fetchone())[0]

    def finish(self, conn: psycopg.Connection, worker_id: str, outcomes: Sequence[Outcome]) -> int:
        """Record outcomes; returns how many were still ours to record."""
        if not outcomes:
            return 0
        params: dict[str, Any] | None = None
        if all(o.state == "SUCCESS" and o.result_payload is None for o in outcomes):
            statement = "FINISH_OK"
            params = _finish_ok_params(conn, worker_id, outcomes)
        if params is None:
            statement = "FINISH"
            params = {
                "worker_id": worker_id, "ids": [o.id for o in outcomes], "attempts": [o.attempt for o in outcomes],
                "results": [o.result for o in outcomes], "states": [o.state for o in outcomes],
                "result_payloads": [o.result_payload for o in outcomes],
                "result_content_types": [o.result_content_type for o in outcomes],
                "exc_types": [o.exc_type for o in outcomes], "exc_messages": [o.exc_message for o in outcomes],
                "tracebacks": [o.traceback for o in outcomes],
            }
        # A plain INSERT into results unless the connection is in a transaction (a transactional
        # task's, where a failed statement would abort the caller's work): a reused task id then
        # fails it, having written nothing, and the ON CONFLICT twin records the outcomes.
        if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            statement = _UPSERT[statement]
        # Never prepared. A generic plan cannot see the batch size (a nested loop over the unnest()
        # rows), and one made while the table held a few rows scans the whole table at every later
        # FINISH; planning each call is the price of a plan that follows the table.
        try:
            return cast("tuple[int]", conn.execute(self.sql[statement], params, prepare=False).fetchone())[0]
        except psycopg.errors.UniqueViolation:
            if statement not in _UPSERT:
                raise
        return cast("tuple[int]", conn.execute(self.sql[_UPSERT[statement]], params, prepare=False).fetchone())[0]

    def retry(self, conn: psycopg.Connection, worker_id: str, requests: Sequence[RetryRequest]) -> int:
        if not requests:
            return 0
        params = {
            "worker_id": worker_id, "ids": [r.id for r in requests], "attempts": [r.attempt for r in requests],
            "delays": [r.delay for r in requests], "etas": [r.eta for r in requests],
            "errors": [r.error for r in requests], "tracebacks": [r.traceback for r in requests],
        }
        return cast("tuple[int]", conn.execute(self.sql["RETRY"], params).fetchone())[0]

    def release_unknown(self, conn: psycopg.Connection, worker_id: str, known: Collection[str]) -> int:
        """Hand back the jobs the rows say ``worker_id`` holds that are not in ``known`` (a claim whose
        reply was lost); how many."""
        row = conn.execute(self.sql["RELEASE_UNKNOWN"], {"worker_id": worker_id, "known": list(known)}).fetchone()
        return int(row[0]) if row else 0

    def release(self, conn: psycopg.Connection, worker_id: str, jobs: Sequence[tuple[str, int]]) -> None:
        """Hand back (id, attempt) jobs that never started, their attempt unspent."""
        if jobs:
            conn.execute(self.sql["RELEASE"], {"worker_id": worker_id, "ids": [j[0] for j in jobs],
                                               "attempts": [j[1] for j in jobs]})


def _finish_ok_params(conn: psycopg.Connection, worker_id: str,
                      outcomes: Sequence[Outcome]) -> dict[str, Any] | None:
    """FINISH_OK's parameters as binary arrays (store/binary.py), or None when they cannot be (a
    connection whose encoding is not UTF-8, an id that is not a uuid: FINISH then runs and the
    server says what is wrong)."""
    if conn.info.encoding != "utf-8":
        return None
    try:
        ids = binary.uuid_array([o.id for o in outcomes])
        attempts = binary.int4_array([o.attempt for o in outcomes])
    except (ValueError, TypeError, struct.error):
        return None
    return {"worker_id": worker_id, "ids": ids, "attempts": attempts,
            "results": binary.text_array([o.result for o in outcomes])}


def _claimed_jobs(rows: Sequence[Sequence[Any]]) -> list[ClaimedJob]:
    """A claim's rows as ClaimedJobs, highest priority first, then FIFO (RETURNING has no order)."""
    jobs = [ClaimedJob(*r) for r in rows]
    jobs.sort(key=lambda j: (-j.priority, j.seq))
    return jobs
