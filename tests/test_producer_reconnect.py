"""Producers ride out lost connections, on a private cluster of their own.

After a server restart or terminated backends, the next enqueue of every form succeeds: pooled
connections are checked before reuse and a write whose connection broke is made once more,
guarded so that it is written at most once, even when the first attempt committed and a worker
already finished the job. A real break in the middle of a statement is made by a TCP proxy that
cuts the connection once the server has answered (so the first attempt did commit), or by
terminating a backend that waits on a lock (so it did not). Inside a caller's transaction
nothing is retried and the error says what happened. The async pool never opens more than its
bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from sqlq import App, Exchange, GroupResult, Queue
from sqlq.db import AsyncConnectionPool, ConnectionPool, usable
from sqlq.errors import DatabaseUnavailableError
from sqlq.routing import apply_routes
from tests.apps.harness import await_for, wait_for
from tests.cluster import PrivateCluster
from tests.conftest import WorkerThread


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    with PrivateCluster() as pg:
        yield pg


class Proxy:
    """A TCP proxy in front of the cluster that can cut a connection after the server answered.

    ``cut_when(predicate, before=None)``: the next chunk the server sends, on any connection, for
    which ``predicate(chunk)`` holds is not forwarded; ``before()`` runs first, then both sockets
    of that connection are closed. To the client that is a connection lost mid-statement, whose
    statement the server has run to its end (and, in autocommit, committed)."""

    def __init__(self, port: int):
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url_port = self.listener.getsockname()[1]
        self.cuts = 0
        self._lock = threading.Lock()
        self._rule: tuple[Callable[[bytes], bool], Callable[[], None] | None] | None = None
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_when(self, predicate: Callable[[bytes], bool], before: Callable[[], None] | None = None) -> None:
        with self._lock:
            self._rule = (predicate, before)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.port))
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_server and self._take(data):
                    for sock in (src, dst):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _take(self, data: bytes) -> bool:
        with self._lock:
            rule = self._rule
            if rule is None or not rule[0](data):
                return False
            self._rule = None
        if rule[1] is not None:
            rule[1]()
        self.cuts += 1
        return True

    def refuse(self) -> None:
        """Accept no more connections (shutdown first: a close alone does not stop a blocked accept)."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def close(self) -> None:
        self.refuse()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def name() -> str:
    """This test's schema, also its application_name: its own connections, counted by it."""
    return f"r_{uuid.uuid4().hex[:12]}"


def _app(url: str, name: str, **settings) -> App:
    sep = "&" if "?" in url else "?"
    return App("tests", database_url=f"{url}{sep}application_name={name}", schema=name, **settings)


@pytest.fixture
def app(cluster: PrivateCluster, name: str) -> Iterator[App]:
    """A migrated app on the cluster, straight to the server."""
    application = _app(cluster.url, name)
    application.migrate()
    _register(application)
    yield application
    application.close()


@pytest.fixture
def proxied(cluster: PrivateCluster, app: App, name: str) -> Iterator[tuple[App, Proxy]]:
    """Another app on the same schema whose connections go through a cutting proxy."""
    proxy = Proxy(cluster.port)
    application = _app(f"postgresql://postgres@127.0.0.1:{proxy.url_port}/postgres", name)
    _register(application)
    yield application, proxy
    application.close()
    proxy.close()


def _register(application: App) -> None:
    @application.task(name="reconnect.add")
    def add(x, y=0):
        return x + y


def _routes(application: App) -> None:
    """A fanout exchange to two queues: a routed publish writes two jobs and a group."""
    apply_routes(application, [Queue("audit", Exchange("events", type="fanout")), Queue("mail", "events")])


def _ids(cluster: PrivateCluster, name: str, table: str = "jobs") -> list[str]:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        return sorted(r[0] for r in conn.execute(f'SELECT id::text FROM "{name}".{table}').fetchall())


def _warm(application: App) -> None:
    """Fill the pool's idle list and prepare the fast statements, so that what follows runs on
    connections the server is about to drop."""
    add = application.tasks["reconnect.add"]
    add.delay(0)
    add.apply_async((0,), countdown=60)


def _sent(results: list) -> list[str]:
    """The job ids behind results (a GroupResult's jobs too)."""
    out: list[str] = []
    for result in results:
        out += [r.id for r in result.results] if isinstance(result, GroupResult) else [result.id]
    return out


#: Each synchronous enqueue form, as (name, call returning its results).
SYNC_FORMS: list[tuple[str, Callable[[App], list]]] = [
    ("delay", lambda a: [a.tasks["reconnect.add"].delay(1)]),
    ("apply_async countdown", lambda a: [a.tasks["reconnect.add"].apply_async((2,), countdown=30)]),
    ("send_task", lambda a: [a.send_task("reconnect.add", (3,))]),
    ("delay_many (ENQUEUE_MANY)", lambda a: a.tasks["reconnect.add"].delay_many(range(5))),
    ("delay_many (COPY)", lambda a: a.tasks["reconnect.add"].delay_many(range(100))),
    ("routed", lambda a: [a.tasks["reconnect.add"].apply_async((4,), exchange="events")]),
]


# --- after terminated backends and a restart, the next enqueue just works ---------------------

@pytest.mark.parametrize("breakage", ["terminate_backends", "restart"])
def test_each_enqueue_form_succeeds_right_after_the_server_dropped_its_connections(
        app: App, cluster: PrivateCluster, name: str, breakage: str):
    """After pg_terminate_backend on the app's connections, or a server restart, the next
    delay(), apply_async, send_task, bulk and routed enqueue each succeed, with no error, and
    each of their jobs is written once."""
    _routes(app)
    expected: list[str] = []
    for _form, call in SYNC_FORMS:
        _warm(app)
        if breakage == "restart":
            cluster.restart()
        else:
            assert cluster.terminate_backends(name) >= 1
        expected += _sent(call(app))
    jobs = _ids(cluster, name)
    assert len(expected) == 1 + 1 + 1 + 5 + 100 + 2  # (the routed one: a job for each of two queues)
    assert set(expected) <= set(jobs) and len(jobs) == len(expected) + 2 * len(SYNC_FORMS)


@pytest.mark.parametrize("breakage", ["terminate_backends", "restart"])
async def test_async_enqueues_succeed_right_after_the_server_dropped_its_connections(
        app: App, cluster: PrivateCluster, name: str, breakage: str):
    """adelay, aapply_async and adelay_many after terminated backends or a restart succeed at once."""
    add = app.tasks["reconnect.add"]
    expected: list[str] = []
    for call in (lambda: add.adelay(1), lambda: add.aapply_async((2,), countdown=30),
                 lambda: add.adelay_many(range(3))):
        await add.adelay(0)  # an idle async connection to lose
        if breakage == "restart":
            await asyncio.to_thread(cluster.restart)
        else:
            assert cluster.terminate_backends(name) >= 1
        got = await call()
        expected += _sent(got if isinstance(got, list) else [got])
    jobs = _ids(cluster, name)
    assert set(expected) <= set(jobs) and len(jobs) == len(set(jobs)) == len(expected) + 3


def test_the_pool_hands_out_a_new_connection_for_one_that_died_idle(cluster: PrivateCluster, name: str):
    """Once the server has dropped an idle pooled connection (its farewell is on the socket), the
    check-out sees it without a round trip and gives a working new connection instead: the
    enqueue never reaches its retry."""
    pool = ConnectionPool(f"{cluster.url}?application_name={name}", size=2)
    try:
        with pool.connection() as first:
            pass
        assert cluster.terminate_backends(name) == 1
        wait_for(lambda: not usable(first), 20, message="the idle connection to read as unusable")
        with pool.connection() as conn:
            assert conn is not first and conn.execute("SELECT 1").fetchone() == (1,)
        assert first.closed
    finally:
        pool.dispose()


# --- a connection lost mid-statement: written exactly once --------------------------------------

def _completes(*tags: bytes) -> Callable[[bytes], bool]:
    """Whether a chunk from the server holds a CommandComplete with one of these tags (so the
    statement ran to its end), not merely a PREPARE's ParseComplete."""
    return lambda data: any(tag in data for tag in tags)


#: The reply that says a write is done: its statement's, or for COPY its transaction's COMMIT.
DONE = {form: _completes(b"COMMIT\x00") if "COPY" in form else _completes(b"INSERT ", b"SELECT ")
        for form, _ in SYNC_FORMS}


@pytest.mark.parametrize("form", [f for f, _ in SYNC_FORMS])
def test_a_reply_lost_after_the_commit_leaves_exactly_one_write(
        proxied: tuple[App, Proxy], app: App, cluster: PrivateCluster, name: str, form: str):
    """The server commits the write, the connection is cut before the client hears of it: the
    retry finds the jobs written and reports success, with the same ids, and writes nothing
    twice (one-job forms: the INSERT's reply; COPY: the COMMIT's)."""
    producer, proxy = proxied
    _routes(app)
    _warm(producer)
    before = _ids(cluster, name)
    proxy.cut_when(DONE[form])
    sent = _sent(dict(SYNC_FORMS)[form](producer))
    assert proxy.cuts == 1
    assert _ids(cluster, name) == sorted(before + sent)


def test_a_job_claimed_and_finished_before_the_retry_is_not_written_again(
        proxied: tuple[App, Proxy], app: App, cluster: PrivateCluster, name: str):
    """The first attempt commits; before the client hears of it a worker claims and finishes the
    job (its jobs row is gone, a result is there); the retry must not write it again."""
    producer, proxy = proxied
    worker = WorkerThread(app, concurrency=1, pool="solo")

    def finished(count: int) -> Callable[[], bool]:
        return lambda: len(_ids(cluster, name, "results")) == count

    def finish_then_stop() -> None:  # (before the client hears of its write)
        wait_for(finished(2), 20, message="2 results")
        worker.stop()  # so that a job written again would stay in the table

    with worker:
        _warm(producer)  # (its countdown job stays scheduled; the due one is finished first)
        wait_for(finished(1), 20, message="1 result")
        proxy.cut_when(DONE["delay"], before=finish_then_stop)
        result = producer.tasks["reconnect.add"].delay(20, 22)
        assert proxy.cuts == 1
    assert result.get(timeout=20) == 42
    assert result.id in _ids(cluster, name, "results")
    assert result.id not in _ids(cluster, name)


def test_a_statement_lost_before_it_committed_is_written_by_the_retry(app: App, cluster: PrivateCluster, name: str):
    """The INSERT waits on a lock when its backend is terminated, so the first attempt wrote
    nothing: the retry writes the job, once."""
    add = app.tasks["reconnect.add"]
    _warm(app)
    with app.connection() as probe:
        producer_pid = probe.info.backend_pid
    locker = psycopg.connect(cluster.url)
    locker.execute(f'LOCK TABLE "{name}".jobs IN ACCESS EXCLUSIVE MODE')
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(add.delay(7)))
    thread.start()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                      (producer_pid,)).fetchone() == ("Lock",),
                 20, message="the producer's INSERT to wait on the lock")
        conn.execute("SELECT pg_terminate_backend(%s)", (producer_pid,))
    locker.rollback()  # the retry's INSERT could not run while the lock is held
    locker.close()
    thread.join(20)
    assert outcome and outcome[0].id in _ids(cluster, name)
    assert len(_ids(cluster, name)) == 3


def test_when_the_retry_cannot_connect_the_error_names_the_job(proxied: tuple[App, Proxy]):
    """The connection is cut after the write and no new one can be made: the error names the job,
    says the first attempt may have committed, and how to find out."""
    producer, proxy = proxied
    _warm(producer)
    proxy.cut_when(DONE["delay"], before=proxy.refuse)
    with pytest.raises(DatabaseUnavailableError, match=r"job [0-9a-f-]{36} .*retry on a new connection failed "
                                                        r".*may or may not have been committed.*same task_id="):
        producer.tasks["reconnect.add"].delay(1)


# --- inside the caller's transaction: no retry, a clear error -----------------------------------

def test_a_break_inside_the_callers_psycopg_transaction_is_not_retried(app: App, cluster: PrivateCluster, name: str):
    """connection= a psycopg connection in a transaction, its backend terminated: the enqueue
    raises DatabaseUnavailableError saying the transaction was rolled back, and writes nothing."""
    add = app.tasks["reconnect.add"]
    with psycopg.connect(cluster.url + f"?application_name={name}_caller") as conn:
        conn.execute("SELECT 1")
        cluster.terminate_backends(f"{name}_caller")
        with pytest.raises(DatabaseUnavailableError, match="inside your transaction.*rolled that transaction "
                                                            "back.*nothing of it was committed.*run the whole"):
            add.apply_async((1,), connection=conn)
    assert _ids(cluster, name) == []


def test_a_break_inside_the_callers_sqlalchemy_session_is_not_retried(app: App, cluster: PrivateCluster, name: str):
    """The same with a SQLAlchemy Session."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres"
                           f"?application_name={name}_caller")
    try:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            cluster.terminate_backends(f"{name}_caller")
            with pytest.raises(DatabaseUnavailableError, match="inside your transaction"):
                app.tasks["reconnect.add"].apply_async((1,), connection=session)
    finally:
        engine.dispose()
    assert _ids(cluster, name) == []


async def test_a_break_inside_the_callers_async_transaction_is_not_retried(app: App, cluster: PrivateCluster,
                                                                           name: str):
    """The same with a psycopg AsyncConnection."""
    async with await psycopg.AsyncConnection.connect(cluster.url + f"?application_name={name}_caller") as conn:
        await conn.execute("SELECT 1")
        cluster.terminate_backends(f"{name}_caller")
        with pytest.raises(DatabaseUnavailableError, match="inside your transaction"):
            await app.tasks["reconnect.add"].aapply_async((1,), connection=conn)
    assert _ids(cluster, name) == []


# --- the async pool's bound ---------------------------------------------------------------------

def _backends(cluster: PrivateCluster, name: str) -> int:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                            (name,)).fetchone()[0]


async def test_the_async_pool_never_opens_more_than_its_bound(cluster: PrivateCluster, name: str):
    """Ten callers at once on a pool bounded at three: three connections open, the others wait
    and each gets one as one comes back; none fails."""
    pool = AsyncConnectionPool(f"{cluster.url}?application_name={name}", size=2, max_overflow=1, timeout=20)
    release = asyncio.Event()
    holding = 0
    most = 0

    async def borrow() -> int:
        nonlocal holding, most
        async with pool.connection() as conn:
            holding += 1
            most = max(most, holding)
            await release.wait()
            holding -= 1
            return (await (await conn.execute("SELECT 1")).fetchone())[0]

    try:
        tasks = [asyncio.create_task(borrow()) for _ in range(10)]
        await await_for(lambda: holding >= 3, message="3 borrowers holding a connection")
        assert await asyncio.to_thread(_backends, cluster, name) == 3
        release.set()
        assert await asyncio.gather(*tasks) == [1] * 10
        assert most == 3
        # The pool keeps two idle and closes the third; the server's backend for it leaves
        # pg_stat_activity a moment after the client closed it.
        await await_for(lambda: _backends(cluster, name) <= 2, message="the overflow connection to close")
    finally:
        pool.close()


async def test_a_caller_that_waits_too_long_for_the_async_pool_is_told_why(cluster: PrivateCluster, name: str):
    """Every connection in use for longer than the pool's timeout: a clear error, not a hang."""
    pool = AsyncConnectionPool(f"{cluster.url}?application_name={name}", size=1, max_overflow=0, timeout=0.2)
    try:
        async with pool.connection():
            with pytest.raises(DatabaseUnavailableError, match="all 1 pooled async connections .* stayed in use"):
                async with pool.connection():
                    pass
        async with pool.connection() as conn:  # the slot came back
            assert not conn.closed
    finally:
        pool.close()
