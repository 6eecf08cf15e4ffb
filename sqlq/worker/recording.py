"""Recording a batch of outcomes so that one that cannot be written never holds back the others.

FINISH, RETRY and LOST each write a whole batch in one statement, so one value PostgreSQL refuses
(a result it cannot parse as jsonb, text it cannot store, a counter that would overflow) fails the
statement for every job in it. Before this module, the finisher then retried the same batch every
half second, forever, while the worker's heartbeat kept its jobs from being rescued: one poison
outcome wedged the worker.

Now a batch whose statement fails *for data reasons* (``is_data_error``) is split in halves until
the bad outcomes are alone; the others are recorded as they are. A bad one becomes FAILURE with a
message that says what could not be written and why (``sqlq.errors.SerializationError``, or
``sqlq.errors.InvalidJobError`` when the job's row is what overflows), and if even that cannot be
written, its text is escaped further, down to a constant ASCII sentence. If that too is refused,
the fault is not in the outcome (a dropped table, a revoked privilege): the error propagates and
the finisher keeps the batch for later, as it does for a lost connection.

Connection errors (``psycopg.OperationalError``, ``DatabaseUnavailableError``) always propagate
unchanged: they say nothing about the data, and the batch is recorded once the database is back.
No SQL here: the statements are the store's.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg

from ..errors import DatabaseUnavailableError
from ..serialization import db_text, unstorable_text_char
from ..store import ClaimedJob, Interrupted, Outcome, RetryRequest, Store

log = logging.getLogger("sqlq.worker")

T = TypeVar("T")

SERIALIZATION_ERROR = "sqlq.errors.SerializationError"
INVALID_JOB_ERROR = "sqlq.errors.InvalidJobError"
WORKER_LOST_ERROR = "sqlq.errors.WorkerLostError"
_LAST_WORDS = "the job's outcome could not be recorded, nor a description of why; see the worker's log"
_OUT_OF_RANGE = "22003"  # numeric_value_out_of_range: a counter of the job's row (retries + 1)


def is_data_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the statement's *data* was refused (split the batch), rather than that
    the database could not be reached (keep the batch and wait: ``OperationalError`` and its
    subclasses, ``InterfaceError``, ``DatabaseUnavailableError``).

    Data: every other ``psycopg.Error`` (DataError, IntegrityError, …), and the client-side
    refusals psycopg and the store's encoders raise before anything is sent: UnicodeEncodeError for
    a lone surrogate, ValueError, TypeError, OverflowError and ``struct.error`` for a value that
    does not fit its column."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | DatabaseUnavailableError):
        return False
    return isinstance(exc, psycopg.Error | ValueError | TypeError | OverflowError | struct.error)


def split_record(items: Sequence[T], write: Callable[[Sequence[T]], object],
                 poison: Callable[[T, BaseException], None]) -> None:
    """``write(items)``; if that fails for data reasons, the halves are written separately, down to
    single items, and ``poison(item, error)`` deals with each one that still fails. One bad item in
    n costs about 2·log2(n) statements. Anything else ``write`` raises propagates."""
    try:
        write(items)
    except Exception as exc:
        if not is_data_error(exc):
            raise
        if len(items) == 1:
            poison(items[0], exc)
            return
        middle = len(items) // 2
        split_record(items[:middle], write, poison)
        split_record(items[middle:], write, poison)


def describe_error(exc: BaseException) -> str:
    """One line for the error a statement raised: its class and the server's primary message and
    detail (not the CONTEXT lines, which repeat the parameter)."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        text = exc.diag.message_primary
        if exc.diag.message_detail:
            text += f" ({exc.diag.message_detail})"
    elif isinstance(exc, UnicodeEncodeError):
        text = f"{exc.reason}: {exc.object[exc.start:exc.end]!a}"
    else:
        text = str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {text}"


def _non_json_constant(text: str) -> str | None:
    """The first NaN / Infinity / -Infinity in a JSON text Python wrote with allow_nan (a result
    made before sqlq refused them, or by hand), else None."""
    found: list[str] = []

    def constant(name: str) -> float:
        found.append(name)
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=constant)
    except (ValueError, RecursionError):
        pass
    return found[0] if found else None


def diagnose(fields: dict[str, str | None]) -> str | None:
    """What, in these text fields of an outcome, PostgreSQL cannot take: a NaN or Infinity in the
    JSON ``result`` or a NUL / lone surrogate in any field (named, with the character escaped)."""
    result = fields.get("result")
    if result:
        constant = _non_json_constant(result)
        if constant is not None:
            return f"result contains {constant}, which JSON cannot carry"
    for name, value in fields.items():
        if value:
            char = unstorable_text_char(value)
            if char is not None:
                return f"{name} contains {char}, which PostgreSQL cannot store as text"
    return None


def _escalating(job_id: str, attempt: int, exc_type: str, message: str,
                traceback: str | None) -> list[Outcome]:
    """The FAILURE to write in place of an unwritable outcome, then ever plainer forms of it."""
    plain = message.encode("ascii", "backslashreplace").decode("ascii").replace("\x00", "\\x00")
    return [
        Outcome(id=job_id, attempt=attempt, state="FAILURE", exc_type=exc_type,
                exc_message=db_text(message), traceback=db_text(traceback)),
        Outcome(id=job_id, attempt=attempt, state="FAILURE", exc_type=exc_type, exc_message=plain),
        Outcome(id=job_id, attempt=attempt, state="FAILURE", exc_type=SERIALIZATION_ERROR,
                exc_message=_LAST_WORDS),
    ]


class Recorder:
    """Writes one flush's outcomes, retries and lost jobs for one worker (see the module's doc)."""

    def __init__(self, store: Store, conn: psycopg.Connection, worker_id: str):
        self.store = store
        self.conn = conn
        self.worker_id = worker_id

    def finish(self, outcomes: Sequence[Outcome]) -> None:
        split_record(outcomes, lambda batch: self.store.finish(self.conn, self.worker_id, batch),
                     self._poison_outcome)

    def retry(self, requests: Sequence[RetryRequest]) -> None:
        split_record(requests, lambda batch: self.store.retry(self.conn, self.worker_id, batch),
                     self._poison_retry)

    def lost(self, jobs: Sequence[ClaimedJob | Interrupted], max_lost: int, *,
             rerun: bool = False) -> tuple[int, int]:
        """LOST, split like FINISH; returns (handed back, failed), the poison ones counted as failed.
        ``rerun``: the attempts did nothing (see ``Store.lost``)."""
        counts = [0, 0]

        def write(batch: Sequence[ClaimedJob | Interrupted]) -> None:
            requeued, failed = self.store.lost(self.conn, self.worker_id, [(j.id, j.attempt) for j in batch],
                                               max_lost, rerun=rerun)
            counts[0] += requeued
            counts[1] += failed

        def poison(job: ClaimedJob | Interrupted, exc: BaseException) -> None:
            self._write_failure(job.id, job.attempt, WORKER_LOST_ERROR,
                                f"the worker running this job was lost, and handing the job back failed: "
                                f"{describe_error(exc)}", None, exc)
            counts[1] += 1

        split_record(jobs, write, poison)
        return counts[0], counts[1]

    # the poison ones ---------------------------------------------------------------------------

    def _poison_outcome(self, outcome: Outcome, exc: BaseException) -> None:
        found = diagnose({"result": outcome.result, "exc_type": outcome.exc_type,
                          "exc_message": outcome.exc_message, "traceback": outcome.traceback})
        was = outcome.state if outcome.exc_type is None else f"{outcome.state} {outcome.exc_type}: {outcome.exc_message}"
        message = (f"{found or 'its outcome could not be recorded'} ({describe_error(exc)}); the job ended "
                   f"{was}. Return JSON data without NaN/Infinity or NUL characters, or use another "
                   f"result_serializer")
        self._write_failure(outcome.id, outcome.attempt, SERIALIZATION_ERROR, message, outcome.traceback, exc)

    def _poison_retry(self, request: RetryRequest, exc: BaseException) -> None:
        found = diagnose({"error": request.error})
        row = isinstance(exc, psycopg.Error) and exc.sqlstate == _OUT_OF_RANGE
        message = (f"the retry could not be scheduled: {found or describe_error(exc)}"
                   f"{' (a counter of the job row is at its limit)' if row else ''}; it was retrying after "
                   f"{request.error}")
        self._write_failure(request.id, request.attempt, INVALID_JOB_ERROR if row else SERIALIZATION_ERROR,
                            message, None, exc)

    def _write_failure(self, job_id: str, attempt: int, exc_type: str, message: str,
                       traceback: str | None, cause: BaseException) -> None:
        """Record FAILURE for one job in place of what could not be written, escaping more at each
        refusal; if the plainest form is refused too, raise ``cause``: not this job's fault."""
        log.error("job %s: its outcome cannot be recorded as it is; recording FAILURE instead: %s",
                  job_id, db_text(message))
        for candidate in _escalating(job_id, attempt, exc_type, message, traceback):
            try:
                self.store.finish(self.conn, self.worker_id, [candidate])
                return
            except Exception as exc:
                if not is_data_error(exc):
                    raise
        raise cause
