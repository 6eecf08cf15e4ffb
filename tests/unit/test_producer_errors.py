"""A producer's connection checks and errors without a server: an idle connection is reused only while
its socket is quiet and libpq's status is good; a lost write's error names the jobs and what to do."""

from __future__ import annotations

import socket

import psycopg

from sqlq.db import broke_in_transaction, usable, write_lost


class _FakePgconn:
    """The three things ``usable`` reads of a libpq connection."""

    def __init__(self, sock: socket.socket):
        self.status = psycopg.pq.ConnStatus.OK
        self.transaction_status = psycopg.pq.TransactionStatus.IDLE
        self.socket = sock.fileno()


class _FakeConn:
    def __init__(self, sock: socket.socket):
        self.pgconn = _FakePgconn(sock)


def test_usable_is_false_once_the_peer_said_something_or_hung_up():
    """An idle connection is usable while its socket has nothing to read, and not once the peer
    wrote (the server's farewell) or closed it, nor when libpq's status is not OK or idle."""
    ours, theirs = socket.socketpair()
    conn = _FakeConn(ours)
    assert usable(conn)
    conn.pgconn.transaction_status = psycopg.pq.TransactionStatus.INTRANS
    assert not usable(conn)
    conn.pgconn.transaction_status = psycopg.pq.TransactionStatus.IDLE
    conn.pgconn.status = psycopg.pq.ConnStatus.BAD
    assert not usable(conn)
    conn.pgconn.status = psycopg.pq.ConnStatus.OK
    theirs.close()
    assert not usable(conn)
    ours.close()


def test_the_errors_name_the_jobs_and_what_to_do():
    """A retry that failed says the first attempt may have committed and how to find out; a break
    in the caller's transaction says it was rolled back, and on an autocommit one that the write
    may have committed."""
    lost = write_lost(["a"], OSError("server closed the connection"), OSError("connection refused"))
    assert "job a" in str(lost) and "may or may not have been committed" in str(lost)
    many = broke_in_transaction(["a", "b", "c", "d"], OSError("x"), True)
    assert "4 jobs (a, b, c, …)" in str(many) and "run the whole transaction again" in str(many)
    assert "may or may not have been committed" in str(broke_in_transaction(["a"], OSError("x"), False))
