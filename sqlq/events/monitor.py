"""``sqlq events``: the events stream on a terminal (Celery's ``celery events``).

Three forms: ``--dump`` prints each event on one line (``2026-12-04 03:10:00.123 task-succeeded
uuid=... name=... runtime=0.001 hostname=...``), ``--json`` one JSON object per line (for ``jq``
and log shippers), and by default a table of the workers and of the tasks per state, redrawn each
second with plain terminal output (no curses), or a summary line each second something changed
when stdout is not a terminal. Ctrl-C exits with status 0; a database outage is waited out by the
receiver (one line when it goes, one when it is back), which then goes on after the last event.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from . import TASK_STATES, Receiver, State

if TYPE_CHECKING:
    from ..app import App

#: The fields a dump line shows first, in this order; the others follow sorted, hostname last.
_FIRST = ("uuid", "name")
#: Fields a dump line leaves out: they are the line's time and type, or the stream's bookkeeping.
_HIDDEN = frozenset({"type", "timestamp", "id", "clock", "hostname"})
#: The task states in the table's order.
_STATES = tuple(dict.fromkeys(TASK_STATES.values()))


def format_time(timestamp: float) -> str:
    """``2026-12-04 03:10:00.123`` (UTC)."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in "\"'=" for c in value) else json.dumps(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def dump_line(event: dict[str, Any]) -> str:
    """One event as one line: time, type, then ``key=value`` fields (values with spaces or
    newlines, a traceback's, JSON-quoted so the line stays one line)."""
    parts = [format_time(float(event["timestamp"])), str(event["type"])]
    parts += [f"{key}={_value(event[key])}" for key in _FIRST if event.get(key) is not None]
    parts += [f"{key}={_value(event[key])}" for key in sorted(event)
              if key not in _HIDDEN and key not in _FIRST and event[key] is not None]
    parts.append(f"hostname={event.get('hostname')}")
    return " ".join(parts)


def json_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=str)


def table(state: State, now: float | None = None) -> list[str]:
    """The live table's lines: workers, then tasks per state."""
    now = time.time() if now is None else now
    lines = [f"sqlq events  {format_time(now)[:-4]} UTC  (Ctrl-C to exit)", "",
             f"{'WORKER':<32} {'STATUS':<8} {'ACTIVE':>6} {'PROCESSED':>10}  LAST EVENT"]
    alive = {id(w) for w in state.alive_workers(now)}
    for hostname, worker in sorted(state.workers.items()):
        status = "online" if id(worker) in alive else "offline" if not worker.get("alive") else "lost"
        ago = max(now - float(worker.get("last_heartbeat", now)), 0.0)
        lines.append(f"{hostname:<32} {status:<8} {worker.get('active', 0):>6} {worker.get('processed', 0):>10}"
                     f"  {ago:.0f}s ago")
    if not state.workers:
        lines.append("(no worker event yet: workers send them with -E, a heartbeat every few seconds)")
    lines += ["", "TASKS   " + "  ".join(f"{s} {state.counts.get(s, 0)}" for s in _STATES),
              f"EVENTS  {state.event_count}"]
    return lines


def summary(state: State, now: float | None = None) -> str:
    """The table as one line, for a stdout that is not a terminal."""
    now = time.time() if now is None else now
    return (f"{format_time(now)} workers={len(state.alive_workers(now))} "
            + " ".join(f"{s.lower()}={state.counts.get(s, 0)}" for s in _STATES)
            + f" events={state.event_count}")


class _Screen:
    """The table's output: redrawn in place on a terminal, a line per change otherwise."""

    def __init__(self, state: State, out: TextIO):
        self.state = state
        self.out = out
        self.tty = out.isatty()
        self.drawn_at = 0.0
        self.drawn_count = -1

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.drawn_at < 1.0:
            return
        self.drawn_at = now
        if self.tty:
            self.out.write("\x1b[H\x1b[2J" + "\n".join(table(self.state)) + "\n")
        elif force or self.state.event_count != self.drawn_count:
            self.out.write(summary(self.state) + "\n")
        self.drawn_count = self.state.event_count
        self.out.flush()


def run(app: App, *, mode: str, since: str | None = None, tasks: Sequence[str] = (), types: Sequence[str] = (),
        limit: int | None = None, timeout: float | None = None, out: TextIO | None = None) -> int:
    """The ``sqlq events`` command; returns its exit status."""
    out = out or sys.stdout
    if not logging.getLogger().handlers and not logging.getLogger("sqlq").handlers:
        logging.basicConfig(level=logging.INFO, format="sqlq events: %(message)s", stream=sys.stderr)
    receiver = Receiver(app, since=since, types=types or None, names=tasks or None)
    state = State()
    screen = _Screen(state, out) if mode == "table" else None
    try:
        events = receiver.itercapture(limit=limit, timeout=timeout,
                                      on_idle=screen.tick if screen is not None else None)
        for event in events:
            if screen is not None:
                state.event(event)
                screen.tick()
            else:
                out.write((json_line(event) if mode == "json" else dump_line(event)) + "\n")
                out.flush()
        if screen is not None:
            screen.tick(force=True)
    except KeyboardInterrupt:
        if screen is not None and screen.tty:
            out.write("\n")
        return 0
    except BrokenPipeError:  # (| head): the reader is gone
        return 0
    return 0
