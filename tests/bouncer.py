"""A private PgBouncer in transaction pooling mode, in front of the test database.

``tests/test_pgbouncer.py`` runs sqlq through it. It is a process of its own: its own port on
127.0.0.1, its ini, userlist and log in a temporary directory, pointing at the database the tests
use (the shared server's ``test`` database by default); the shared server's configuration is never
touched. As root (CI and these machines) it runs as the ``postgres`` user, because PgBouncer
refuses to run as root. ``.ci/run`` installs Debian's ``pgbouncer`` when it is missing.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.apps.harness import wait_for
from tests.cluster import free_port

#: The first PgBouncer that can keep prepared statements in transaction mode (max_prepared_statements).
PREPARED_SINCE = (1, 21)


def pgbouncer_binary() -> str | None:
    """Debian installs it in /usr/sbin, which a non-root PATH leaves out."""
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)


def pgbouncer_version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True, timeout=30).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary} from {out!r}")
    return int(match.group(1)), int(match.group(2))


class PrivateBouncer:
    """``with PrivateBouncer(database_url) as bouncer: bouncer.url ...``; stopped and deleted on exit.

    ``url`` reaches the same database as ``database_url`` through the pooler (same user and
    database name); ``admin_url`` is its admin console (``SHOW SERVERS`` ...)."""

    def __init__(self, database_url: str, binary: str, pool_size: int = 10):
        self.binary = binary
        self.version = pgbouncer_version(binary)
        self.prepared_statements = self.version >= PREPARED_SINCE
        target = conninfo_to_dict(database_url)
        self.user = str(target.get("user") or pwd.getpwuid(os.geteuid()).pw_name)
        self.dbname = str(target.get("dbname") or self.user)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sqlq-pgbouncer-"))
        self.log = self.root / "pgbouncer.log"
        self.url = f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"
        self.admin_url = f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer"
        self._run_as = "postgres" if os.geteuid() == 0 else None
        server = " ".join(f"{key}={target[key]}" for key in ("host", "port", "password") if target.get(key))
        prepared = "max_prepared_statements = 200\n" if self.prepared_statements else ""
        (self.root / "userlist.txt").write_text(f'"{self.user}" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{self.dbname} = {server} dbname={self.dbname}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'userlist.txt'}\n"
            f"admin_users = {self.user}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 1000\n"
            f"logfile = {self.log}\n"
            f"{prepared}")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        command = [self.binary, str(self.root / "pgbouncer.ini")]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        wait_for(self._accepts, 30, 0.05, message=lambda: f"pgbouncer to accept connections; its log:\n{self._log()}")

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {self.process.returncode}; its log:\n{self._log()}")
        try:
            with psycopg.connect(self.url, connect_timeout=2, prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def _log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(none)"

    def server_pids(self) -> set[int]:
        """The PostgreSQL backends PgBouncer holds for its clients (its admin console's SHOW
        SERVERS), which the simple query protocol alone reaches."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            res = conn.pgconn.exec_(b"SHOW SERVERS")
            column = [res.fname(i) for i in range(res.nfields)].index(b"remote_pid")
            return {int(res.get_value(row, column) or 0) for row in range(res.ntuples)}

    def stop(self) -> None:
        """SIGINT: PgBouncer's "safe shutdown" (runuser passes the signal on)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateBouncer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
