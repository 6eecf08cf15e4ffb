"""A private PostgreSQL cluster for tests and scripts that break the database.

Outage, restart and failover tests must never touch the shared server on 5432: other people's
work runs on it. ``PrivateCluster`` runs ``initdb`` in a directory of its own and starts the
server on a free port of 127.0.0.1, so it can be stopped, killed and restarted at will. As root
(CI and these machines) the server runs as the ``postgres`` user, because PostgreSQL refuses
to run as root.

Used by ``tests/test_database_outages.py`` and by ``make chaos`` (``benchmarks/chaos/``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.apps.harness import wait_for


def _bindir() -> Path:
    """The newest installed server's binaries (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise RuntimeError("no PostgreSQL server binaries found (pg_ctl); install postgresql")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateCluster:
    """``with PrivateCluster() as cluster: cluster.url ...``; stopped and deleted on exit."""

    def __init__(self, port: int | None = None, directory: str | None = None):
        self.port = port or free_port()
        self.root = Path(directory or tempfile.mkdtemp(prefix="sqlq-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.bin = _bindir()
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    # running the server's tools as the right user ----------------------------------------------

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)

    def init(self) -> PrivateCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-instructions", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\nmax_connections = 200\n"
                       "shared_buffers = 64MB\n")
        return self

    def start(self, wait: float = 60) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(wait)), "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: what a restart or a managed failover does; ``immediate``: a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def terminate_backends(self, application_name_like: str = "%") -> int:
        """pg_terminate_backend on every client backend but ours (a failover's or a DBA's kill)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "AND coalesce(application_name, '') LIKE %s", (application_name_like,)).fetchone()
        return int(row[0]) if row else 0

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the server accepts a connection; after ``timeout``, libpq's last error is raised."""
        last: list[psycopg.OperationalError] = []

        def accepts() -> bool:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return True
            except psycopg.OperationalError as exc:
                last[:] = [exc]
                return False

        try:
            wait_for(accepts, timeout, 0.05, message="the private cluster to accept connections")
        except AssertionError:
            raise last[0] from None

    def destroy(self) -> None:
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateCluster:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    with PrivateCluster() as cluster:
        yield cluster
