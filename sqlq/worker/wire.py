"""What a prefork parent and its children say to each other, and how it is framed.

Messages are length-prefixed ``marshal`` tuples (``frame`` / ``FrameReader``): a job and an outcome
travel as plain tuples of str, int, float, bytes, bool and None, about 2 µs per outcome where
pickling the ``Outcome`` dataclass cost 14. Both sides import this module, so the format has one
definition. The messages:

* parent → child: ``("jobs", jobs_to_wire(batch))``; ``("giveback",)``, asking for the queued jobs
  the child has not started; ``("terminate", job_id, signum)``, die by that signal if that job is
  the one running (remote control's revoke); ``("time_limit", task, soft, hard)``;
  ``("revoked", [job_id, ...])``, report those of the queued jobs REVOKED without running them; ``None``, stop
  (as is EOF: the parent went away);
* child → parent: ``("ready",)`` once the app is imported; ``("done", job_id, result_to_wire(r))``
  as each job ends; ``("returned", [job_id, ...])``, the answer to a giveback.

Nothing here may cost more than the tuples themselves: each function runs once per job or per batch.
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..store import ClaimedJob, Interrupted, Outcome, RetryRequest, Unregistered

if TYPE_CHECKING:
    from .execution import Result

_HEADER = struct.Struct("<I")


def frame(message: Any) -> bytes:  # whatever marshal takes (tuples of str, int, float, bytes, None)
    """``message`` (tuples, lists and scalars only: ``marshal``) as one length-prefixed frame."""
    data = marshal.dumps(message)
    return _HEADER.pack(len(data)) + data


class FrameReader:
    """Splits the bytes read from a socket into messages."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self.buffer
        buffer += data
        messages: list[Any] = []
        start, end = 0, len(buffer)
        while end - start >= 4:
            size = _HEADER.unpack_from(buffer, start)[0]
            if end - start - 4 < size:
                break
            messages.append(marshal.loads(buffer[start + 4:start + 4 + size]))
            start += 4 + size
        if start:
            del buffer[:start]
        return messages


def jobs_to_wire(jobs: Iterable[ClaimedJob]) -> list[tuple[Any, ...]]:
    """A ``ClaimedJob`` is a NamedTuple of plain values: its fields, in order, are its wire form."""
    return [tuple(job) for job in jobs]


def jobs_from_wire(data: Iterable[tuple[Any, ...]]) -> Iterator[ClaimedJob]:
    return (ClaimedJob(*job) for job in data)


_OUTCOME_FIELDS = Outcome.__slots__


def result_to_wire(result: Result) -> tuple[Any, ...] | None:
    """``("O", *Outcome fields)``, ``("I", id, attempt, reason)``, ``("R", id, attempt, delay, error,
    eta, traceback)``, ``("U", id, attempt, task)``, or None (a transactional task recorded its own
    outcome)."""
    if result is None:
        return None
    if type(result) is Outcome:
        return ("O", *[getattr(result, name) for name in _OUTCOME_FIELDS])
    if type(result) is Interrupted:
        return ("I", result.id, result.attempt, result.reason)
    if type(result) is Unregistered:
        return ("U", result.id, result.attempt, result.task)
    return ("R", result.id, result.attempt, result.delay, result.error, result.eta, result.traceback)


def result_from_wire(data: tuple[Any, ...] | None) -> Result:
    if data is None:
        return None
    if data[0] == "O":
        return Outcome(*data[1:])
    if data[0] == "I":
        return Interrupted(*data[1:])
    if data[0] == "U":
        return Unregistered(*data[1:])
    return RetryRequest(*data[1:])
