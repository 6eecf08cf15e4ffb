"""How a task's time limits are enforced in the thread that runs it, one implementation per kind of pool.

``Executor`` arms the limits before it calls a (synchronous) task and disarms them when the task
returns or raises; it knows only the ``TimeLimits`` protocol. An async task's limits are not these:
asyncio cancels it (``Executor._await``), because an exception thrown into the event loop's own
machinery would leave the loop broken.
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import SoftTimeLimitExceeded, TimeLimitExceeded


class TimeLimits(Protocol):
    """``start(soft, hard)`` arms the limits (seconds; None or 0: no such limit) for the task the
    calling thread is about to run and returns the callable that disarms them; that callable is
    called exactly once, in the same thread, when the task ends, before the thread's next task.
    An implementation may leave a limit to someone else: in a prefork child the parent enforces the
    hard one, by killing the child."""

    def start(self, soft: float | None, hard: float | None) -> Callable[[], None]: ...


class ThreadTimeLimits:
    """Time limits for tasks running in a thread (threads and solo pools).

    A watchdog thread raises ``SoftTimeLimitExceeded`` (then ``TimeLimitExceeded``) inside the task's
    thread. Python delivers such an exception at the next bytecode: a task blocked inside C code
    (a long ``time.sleep``, a socket read without timeout) sees it only when that call returns.
    Only the prefork pool can stop such a task at once (it kills the child process).
    """

    def __init__(self) -> None:
        self._deadlines: dict[int, list[float | None]] = {}  # [soft, hard] deadline, monotonic
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, soft: float | None, hard: float | None) -> Callable[[], None]:
        if soft is None and hard is None:
            return _noop
        ident = threading.get_ident()
        now = time.monotonic()
        entry = [now + soft if soft else None, now + hard if hard else None]
        with self._lock:
            self._deadlines[ident] = entry
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="sqlq-time-limits", daemon=True)
                self._thread.start()
        self._wake.set()

        def stop() -> None:
            with self._lock:
                self._deadlines.pop(ident, None)

        return stop

    def _watch(self) -> None:
        while True:
            now = time.monotonic()
            next_check = 1.0
            with self._lock:
                for ident, entry in list(self._deadlines.items()):
                    for index, exc in ((0, SoftTimeLimitExceeded), (1, TimeLimitExceeded)):
                        deadline = entry[index]
                        if deadline is None:
                            continue
                        if deadline <= now:
                            entry[index] = None
                            _raise_in_thread(ident, exc)
                        else:
                            next_check = min(next_check, deadline - now)
            self._wake.wait(max(next_check, 0.001))
            self._wake.clear()


def _raise_in_thread(ident: int, exc: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))


class AlarmTimeLimits:
    """Soft time limit for a task in a prefork child's main thread: SIGALRM interrupts even a
    blocking call. The hard limit belongs to the parent, which kills the child."""

    def __init__(self) -> None:
        signal.signal(signal.SIGALRM, self._on_alarm)

    @staticmethod
    def _on_alarm(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded("soft time limit exceeded")

    def start(self, soft: float | None, hard: float | None) -> Callable[[], None]:
        if not soft:
            return _noop
        signal.setitimer(signal.ITIMER_REAL, soft)
        return _cancel_alarm


def _cancel_alarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def _noop() -> None:
    return None
