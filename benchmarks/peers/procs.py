"""Start and reliably stop worker processes, each in its own process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent


def worker_env(sink_dir: str | Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PEERS_DIR), env.get("PYTHONPATH")]))
    env["BENCH_SINK_DIR"] = str(sink_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group, output going to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=PEERS_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_alive(pgid: int) -> bool:
    return kill_group(pgid, 0)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if not group_alive(pgid):
            break
        time.sleep(0.05)
    kill_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
