"""sqlq through PgBouncer in transaction pooling mode (tests/bouncer.py: a private PgBouncer in front
of the test database), with ``listen_database_url`` going to the database directly.

Producers' writes, the workers' claims and finishes, migrations, beat and the control channel's
sends go through the pooler; LISTEN (result waiter, the workers' wake-ups, control replies) and
each worker's housekeeping session (its liveness lock) go direct. Prepared statements are off
below PgBouncer 1.21 (``database_prepared_statements``), on with ``max_prepared_statements`` from
1.21. The last test runs core modules of the suite as they are, pointed at the pooler.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from sqlq import App, chord, group
from sqlq.periodic.beat import Beat
from tests.apps.harness import ROOT, WorkerProcess, scalar, wait_answering
from tests.bouncer import PrivateBouncer, pgbouncer_binary

TIMEOUT = 60


@pytest.fixture(scope="session")
def bouncer(database_url: str) -> Iterator[PrivateBouncer]:
    binary = pgbouncer_binary()
    if binary is None:
        reason = os.environ.get("SQLQ_PGBOUNCER_MISSING")
        if os.environ.get("CI") and not reason:
            pytest.fail("pgbouncer is not installed; .ci/run installs it (apt-get install pgbouncer)")
        pytest.skip(f"pgbouncer is not installed ({reason or 'apt-get install pgbouncer'})")
    with PrivateBouncer(database_url, binary) as running:
        yield running


def pooled_environment(bouncer: PrivateBouncer, direct_url: str) -> dict[str, str]:
    """What a deployment behind PgBouncer sets: the pooler as the database, LISTEN direct."""
    return {"SQLQ_DATABASE_URL": bouncer.url, "SQLQ_LISTEN_DATABASE_URL": direct_url,
            "SQLQ_DATABASE_PREPARED_STATEMENTS": "1" if bouncer.prepared_statements else "0"}


@pytest.fixture
def pooled(bouncer: PrivateBouncer, schema: str, database_url: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """tests/apps/basic.py's app (importable: prefork children, worker processes) through the
    pooler, the environment exported for subprocesses; migrated through the pooler."""
    for name, value in pooled_environment(bouncer, database_url).items():
        monkeypatch.setenv(name, value)
    from tests.apps import basic

    basic.app.close()
    basic.app.migrate()
    yield basic.app
    basic.app.close()


def test_the_app_reads_the_pooled_settings(pooled: App, bouncer: PrivateBouncer, database_url: str):
    assert pooled.database_url == bouncer.url
    assert pooled.listen_database_url == database_url
    assert pooled.pooled
    with pooled.connection() as conn:
        assert conn.info.port == bouncer.port
        assert conn.prepare_threshold == (5 if bouncer.prepared_statements else None)


def test_producers_through_the_pooler_and_worker_processes_drain(pooled: App, bouncer: PrivateBouncer,
                                                                 tmp_path: Path, database_url: str):
    """delay, bulk (COPY) and a transactional enqueue inside the caller's own transaction on a
    pooled connection; a threads worker and a prefork worker drain them; AsyncResult.get waits
    on the direct LISTEN connection."""
    from tests.apps import basic

    singles = [basic.add.delay(i, i) for i in range(40)]  # (more than psycopg's prepare threshold)
    bulk = basic.add.apply_many([((i, 1), {}) for i in range(300)])  # the COPY path
    with psycopg.connect(bouncer.url, prepare_threshold=None) as own:  # the caller's transactions
        rolled_back = basic.add.apply_async((0, 0), connection=own)
        own.rollback()
        inside = basic.add.apply_async((20, 22), connection=own)
        own.commit()
    workers = [WorkerProcess(tmp_path / "threads.log", pool="threads", concurrency=4),
               WorkerProcess(tmp_path / "prefork.log", pool="prefork", concurrency=2)]
    try:
        assert [r.get(timeout=TIMEOUT) for r in singles] == [2 * i for i in range(40)]
        assert [r.get(timeout=TIMEOUT) for r in bulk] == [i + 1 for i in range(300)]
        assert inside.get(timeout=TIMEOUT) == 42
        with psycopg.connect(database_url, autocommit=True) as direct:
            assert scalar(direct, "SELECT count(*) FROM {s}.results WHERE id = %s", rolled_back.id,
                          schema=pooled.conf.schema) == 0
            ran_by = scalar(direct, "SELECT count(DISTINCT worker_id) FROM {s}.results", schema=pooled.conf.schema)
        with pytest.raises(ValueError, match="through the pooler"):
            basic.fail.delay("through the pooler").get(timeout=TIMEOUT)
    finally:
        for worker in workers:
            worker.stop()
    assert ran_by >= 1
    for worker in workers:
        # the one traceback allowed is the failing task's own, which the worker logs as Celery does
        # (``raised unexpected: EXC`` and its traceback); anything else is an error of sqlq's
        output = worker.output()
        expected = output.count("raised unexpected: ValueError('through the pooler')")
        assert output.count("Traceback") == expected, output
    assert sum(w.output().count("raised unexpected: ValueError('through the pooler')") for w in workers) == 1


def test_session_state_goes_direct_and_claims_leave_no_session_setting(pooled: App, bouncer: PrivateBouncer,
                                                                       tmp_path: Path, database_url: str):
    """The worker's LISTEN connection and its liveness lock are on backends PgBouncer does not
    hold; PgBouncer's server connections keep the server's settings after claims ran on them
    (a session SET would reach whichever client gets that connection next)."""
    from tests.apps import basic

    worker = WorkerProcess(tmp_path / "worker.log", pool="threads", concurrency=2)
    try:
        assert basic.add.delay(1, 2).get(timeout=TIMEOUT) == 3
        schema = pooled.conf.schema
        with psycopg.connect(database_url, autocommit=True) as direct:
            listening = {r[0] for r in direct.execute(
                "SELECT pid FROM pg_stat_activity WHERE query = %s", (f'LISTEN "{schema}.jobs"',))}
            key = scalar(direct, "SELECT lock_key FROM {s}.workers", schema=schema)
            locking = {r[0] for r in direct.execute(  # (the lock's second key, an oid in pg_locks)
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted "
                "AND objid = %s::bigint::oid", (key & 0xFFFFFFFF,))}
        assert listening, "the worker's LISTEN connection"
        assert locking, "the worker's liveness lock"
        served = bouncer.server_pids()
        assert served and not (listening | locking) & served
        for _ in range(10):  # every server connection: the claims' settings are gone from each
            with psycopg.connect(bouncer.url, autocommit=True, prepare_threshold=None) as conn:
                assert conn.execute("SELECT current_setting('synchronous_commit'), "
                                    "current_setting('enable_seqscan')").fetchone() == ("on", "on")
    finally:
        worker.stop()


def test_a_pooled_claim_sets_its_settings_for_its_transaction_and_still_sets_aside_impossible_rows(
        pooled: App, database_url: str):
    """begin_claiming(per_transaction=True), as a worker behind a pooler claims: the session keeps
    the server's settings, and a claim that fails for a row's data (an attempt CLAIM cannot
    increment) rolls its transaction back, sets the row aside and claims again."""
    from tests.test_poison_rows import INT_MAX, _insert_row

    schema = pooled.conf.schema
    worker_id = str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as direct:
        poison = _insert_row(direct, schema, attempt=INT_MAX)
        good = [_insert_row(direct, schema) for _ in range(3)]
    with pooled.connection() as conn:
        pooled.store.register_worker(conn, id=worker_id, hostname="test", pid=1, queues=["default"],
                                     concurrency=1, pool="threads")
        pooled.store.begin_claiming(conn, per_transaction=True)
        jobs = pooled.store.claim(conn, worker_id, "default", 10)
        assert conn.execute("SELECT current_setting('synchronous_commit')").fetchone() == ("on",)
        pooled.store.end_claiming(conn)
        assert not conn.closed
    assert [j.id for j in jobs] == good
    with psycopg.connect(database_url, autocommit=True) as direct:
        assert scalar(direct, "SELECT exc_type FROM {s}.results WHERE id = %s", poison,
                      schema=schema) == "sqlq.errors.InvalidJobError"


def test_retries_a_chord_and_a_group_through_the_pooler(pooled: App, tmp_path: Path):
    app.close()  # (this module's app: a previous test's connections)
    worker = WorkerProcess(tmp_path / "worker.log", app_path="tests.test_pgbouncer:app", pool="threads",
                           concurrency=4)
    try:
        assert app_flaky.delay().get(timeout=TIMEOUT) == 2
        assert group(app_add.s(i, i) for i in range(10)).delay().get(timeout=TIMEOUT) == [2 * i for i in range(10)]
        assert chord(app_add.s(i, 1) for i in range(10))(app_tsum.s()).get(timeout=TIMEOUT) == 55
    finally:
        worker.stop()
        app.close()
    assert "Traceback" not in worker.output(), worker.output()


def test_control_ping_and_inspect_through_the_pooler(pooled: App, tmp_path: Path):
    worker = WorkerProcess(tmp_path / "worker.log", pool="threads", concurrency=2, extra=("-n", "pooled@host"))
    try:
        assert wait_answering(pooled, "pooled@host")["pooled@host"] == {"ok": "pong"}
        active = pooled.control.inspect(timeout=5).active_queues()
        assert "pooled@host" in active and active["pooled@host"]
    finally:
        worker.stop()


def test_beat_ticks_through_the_pooler(pooled: App, database_url: str):
    pooled.conf.beat_schedule = {"every-minute": {"task": "tests.apps.basic.add", "schedule": timedelta(minutes=1),
                                                  "args": (1, 1)}}
    try:
        beat = Beat(pooled)
        beat.sync_config()
        now = datetime.now(UTC)
        fired = beat.run_once(now) + beat.run_once(now + timedelta(minutes=2))
        assert fired
        with psycopg.connect(database_url, autocommit=True) as direct:
            assert scalar(direct, "SELECT count(*) FROM {s}.jobs WHERE task = 'tests.apps.basic.add'",
                          schema=pooled.conf.schema) >= 1
    finally:
        pooled.conf.beat_schedule = {}


#: Core modules of the suite, run unchanged with the pooler as the test database.
#: (Left out: modules whose tests LISTEN, prepare or SET on connections of their own, which a
#: transaction pooler does not allow them either, e.g. test_bulk's and test_transactional_enqueue's
#: listeners, tests/apps/basic.py's record_run.)
CORE = ("tests/test_calling.py", "tests/test_group.py", "tests/test_worker_outcomes.py", "tests/test_worker_retry.py",
        "tests/test_control.py")


def test_core_modules_of_the_suite_pass_through_the_pooler(bouncer: PrivateBouncer, database_url: str):
    env = {**os.environ, **pooled_environment(bouncer, database_url), "SQLQ_TEST_DATABASE_URL": bouncer.url}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *CORE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


# An importable app of this module's own for the retry and canvas test's worker process.
app = App("tests.test_pgbouncer")


@app.task(name="pgbouncer.add")
def app_add(x: int, y: int) -> int:
    return x + y


@app.task(name="pgbouncer.tsum")
def app_tsum(values: list[int]) -> int:
    return sum(values)


@app.task(name="pgbouncer.flaky", bind=True, max_retries=3, default_retry_delay=0)
def app_flaky(self) -> int:  # type: ignore[no-untyped-def]
    if self.request.retries < 2:
        raise self.retry(countdown=0)
    return self.request.retries
