"""``make chaos`` / ``make chaos-small``: run the chaos scenarios, one line of figures each.

    python -m benchmarks.chaos.run [--size full|small] [--only NAME[,NAME...]] [--keep-logs]

Each scenario initdb's its own PostgreSQL cluster on a free port (never the shared server), runs,
prints one line ``chaos NAME: figures -> OK`` (or ``-> FAILED (targets missed)``) on stdout, and
destroys the cluster. The last line is ``chaos: N passed, M failed``; the exit status is 1 when any
target was missed (or a scenario could not run), so CI fails on a regression. Progress and the
workers' last words go to stderr; the logs are kept with ``--keep-logs`` (or CHAOS_KEEP_LOGS=1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.chaos import beat, crash, outage, poison, transactional  # noqa: E402
from benchmarks.chaos.lab import Outcome, say  # noqa: E402

SCENARIOS: dict[str, Callable[[str, Path], Outcome]] = {
    "crash": crash.run,
    "transactional": transactional.run,
    "outage": outage.run,
    "poison": poison.run,
    "beat": beat.run,
}


class Interrupted(Exception):
    """SIGTERM: unwind like Ctrl-C, so every scenario's clean-up (processes, cluster) runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise Interrupted(f"signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos.run", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("full", "small"), default="full")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    parser.add_argument("--keep-logs", action="store_true", default=os.environ.get("CHAOS_KEEP_LOGS") == "1")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.names = names
    return args


def run_one(name: str, size: str, log_dir: Path) -> Outcome:
    """A scenario that raises counts as failed, with the error as its figures."""
    try:
        return SCENARIOS[name](size, log_dir)
    except (KeyboardInterrupt, Interrupted):
        raise
    except Exception as exc:  # noqa: BLE001 - reported as the scenario's line, then the next one runs
        traceback.print_exc(file=sys.stderr)
        return Outcome(name, f"error {type(exc).__name__}: {exc}".replace("\n", " ")[:300], ["ran"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    log_dir = Path(tempfile.mkdtemp(prefix="sqlq-chaos-"))
    say(f"size={args.size}, scenarios={','.join(args.names)}, logs in {log_dir}")
    outcomes: list[Outcome] = []
    started = time.monotonic()
    try:
        for name in args.names:
            begun = time.monotonic()
            outcome = run_one(name, args.size, log_dir)
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
            say(f"{name}: {time.monotonic() - begun:.0f}s")
    except (KeyboardInterrupt, Interrupted) as exc:
        say(f"interrupted ({exc or 'Ctrl-C'}); every process and cluster was cleaned up")
        return 130
    finally:
        if args.keep_logs:
            say(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    failed = sum(1 for o in outcomes if not o.ok)
    say(f"total {time.monotonic() - started:.0f}s")
    print(f"chaos: {len(outcomes) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
