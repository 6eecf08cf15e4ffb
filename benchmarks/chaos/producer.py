"""The outage scenario's producer: ``delay()`` in a paced loop, through a database outage.

    python -m benchmarks.chaos.producer --rate 200 --max-seconds 120 --stop-file F --out F.json

A process of its own, as an application is: it keeps calling until the stop file appears (or the
time limit), never faster than ``--rate`` calls/s, and writes what happened to ``--out``: the ids
whose call returned, the ids whose call raised, and each error with its wall-clock time, so that
the scenario can check that every error fell inside the down window and that every returned id
is in the database.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

from benchmarks.chaos.app import work


def produce(rate: float, max_seconds: float, stop_file: Path) -> dict:
    accepted: list[str] = []
    refused: list[str] = []
    errors: list[tuple[float, str, str]] = []
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < max_seconds and not stop_file.exists():
        due = started + sent / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif now - due > 1.0:  # a call that blocked: do not burst to catch up
            started = now - sent / rate
        job_id = str(uuid.uuid4())
        try:
            work.apply_async((sent, 1.0), task_id=job_id)
            accepted.append(job_id)
        except Exception as exc:  # noqa: BLE001 - every failure is a figure
            refused.append(job_id)
            errors.append((time.time(), type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else ""))
        sent += 1
    return {"accepted": accepted, "refused": refused, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = produce(args.rate, args.max_seconds, args.stop_file)
    args.out.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
