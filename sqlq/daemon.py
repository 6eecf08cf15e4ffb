"""Running ``sqlq worker`` and ``sqlq beat`` as daemons: ``--detach``, ``--pidfile``, ``--logfile``.

Celery's spelling and semantics (``celery worker -D --pidfile=%n.pid --logfile=%n%I.log``), in
one module so that the worker and beat behave alike. Paths are made absolute before detaching,
because a daemon changes its directory (``--workdir``, default ``/`` as in Celery) and a relative
pidfile would then name another file.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
import tempfile

from .errors import ConfigurationError

#: The directory a detached process moves to unless ``--workdir`` names one (Celery's).
DAEMON_WORKDIR = "/"


def expand_path(path: str, hostname: str | None = None, index: int | None = None) -> str:
    """Celery's node-name expansions in a ``--logfile``/``--pidfile`` path: ``%p`` the full node
    name (``sqlq@host.example.com``), ``%h`` the host with its domain, ``%n`` the name before
    ``@`` (or the host without its domain), ``%d`` the domain, ``%i`` the pool process index (0
    for the main process), ``%I`` the same with a ``-`` separator (empty for the main process) and
    ``%%`` a percent sign. The result is absolute (see the module docstring)."""
    node = hostname or f"sqlq@{socket.gethostname()}"
    name, _, host = node.rpartition("@")
    host = host or socket.gethostname()
    short, _, domain = host.partition(".")
    values = {
        "p": node,
        "h": host,
        "n": name or short,
        "d": domain,
        "i": str(index or 0),
        "I": f"-{index}" if index else "",
    }
    out: list[str] = []
    chars = iter(path)
    for char in chars:
        if char != "%":
            out.append(char)
            continue
        key = next(chars, "")
        if key == "%":
            out.append("%")
        elif key in values:
            out.append(values[key])
        else:
            raise ConfigurationError(f"{path!r}: unknown expansion %{key} (use %p, %h, %n, %d, %i, %I or %%)")
    return os.path.abspath("".join(out))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().strip() or "0") or None
    except (OSError, ValueError):
        return None


def check_pidfile(path: str) -> None:
    """Refuse to start when ``path`` names a live process (asked before detaching, so that the
    error reaches the terminal rather than the daemon's log); a stale file is left for
    ``acquire_pidfile`` to replace."""
    pid = _read_pid(path)
    if pid is not None and pid != os.getpid() and _pid_alive(pid):
        raise ConfigurationError(
            f"pidfile {path} is held by the running process {pid}: is this worker already running? "
            f"Stop it, or give this one another --pidfile"
        )


def acquire_pidfile(path: str) -> None:
    """Write this process's pid to ``path`` atomically (a complete file appears at once, or not at
    all: written aside, then hard-linked into place, which fails if the name exists), replacing the
    pidfile of a process that is gone; removed at exit, if it is still ours."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".sqlq-pid-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")
        for _ in range(3):  # (a stale file is removed and the link tried again)
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                check_pidfile(path)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # stale: its process is gone
        else:
            raise ConfigurationError(
                f"pidfile {path}: another process keeps writing it; give another --pidfile"
            )
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write pidfile {path}: {exc.strerror}; give a writable --pidfile"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    atexit.register(release_pidfile, path, os.getpid())


def release_pidfile(path: str, pid: int) -> None:
    """Remove the pidfile at exit unless another process wrote it meanwhile (or this is a fork)."""
    if os.getpid() == pid and _read_pid(path) == pid:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def detach(logfile: str | None, workdir: str | None = None) -> None:
    """Become a daemon, as Celery's ``--detach`` does: fork, ``setsid`` (no controlling terminal),
    fork again (never to reacquire one), change to ``workdir`` (default ``/``), and point stdin at
    ``/dev/null`` and stdout and stderr at ``logfile`` (or ``/dev/null`` without one). The
    original process exits 0. The current directory is added to ``PYTHONPATH`` first, so that the
    prefork children, fresh interpreters started from ``workdir``, still import the app."""
    target = os.path.abspath(workdir or DAEMON_WORKDIR)
    if not os.path.isdir(target):
        raise ConfigurationError(f"--workdir {target}: no such directory")
    here = os.getcwd()
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([here, *paths])
    if here not in sys.path:
        sys.path.insert(0, here)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir(target)
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if logfile else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        if fd > 2:
            os.close(fd)


def start(
    *, detached: bool, logfile: str | None, pidfile: str | None, workdir: str | None, hostname: str | None
) -> None:
    """What ``--detach``, ``--logfile`` and ``--pidfile`` do before a worker or beat starts. The
    checks come first, while the terminal still shows their errors: the logfile can be written and
    no live process holds the pidfile; then detaching, then the pidfile with the daemon's pid. A
    ``--logfile`` takes the process's stderr (as Celery's ``worker_redirect_stdouts``), so that
    the lines of prefork children and what a task prints land there too."""
    log_path = expand_path(logfile, hostname) if logfile else None
    pid_path = expand_path(pidfile, hostname) if pidfile else None
    if log_path is not None:
        try:
            with open(log_path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write logfile {log_path}: {exc.strerror}; give a writable --logfile"
            ) from None
    if pid_path is not None:
        check_pidfile(pid_path)
    if workdir is not None and not detached:
        raise ConfigurationError(
            "--workdir is the directory a detached process moves to: give it with --detach"
        )
    if detached:
        if log_path is None:
            print("sqlq: --detach without --logfile: the daemon's log goes to /dev/null", file=sys.stderr)
        detach(log_path, workdir)
    elif log_path is not None:
        sys.stderr.flush()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    if pid_path is not None:
        acquire_pidfile(pid_path)
        # until the worker or beat installs its own handler: a SIGTERM while starting exits through
        # atexit, which removes the pidfile, rather than leaving it behind
        signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
