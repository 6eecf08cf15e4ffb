"""Riding out outages, the pure parts: the jittered backoff, which errors count as an outage, and the one
WARNING down / one INFO back that an outage reads as in the log."""

from __future__ import annotations

import logging

import psycopg
import pytest

from sqlq.errors import DatabaseUnavailableError
from sqlq.outage import Backoff, OutageLog, is_outage


def test_backoff_grows_with_jitter_and_resets_on_success():
    """Each failure doubles the ceiling up to the cap (the delay is between half and all of it);
    the first success brings it back to the first step."""
    backoff = Backoff(first=0.1, cap=1.0)
    delays = [backoff.next() for _ in range(6)]
    for delay, ceiling in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.failing
    backoff.reset()
    assert not backoff.failing and backoff.next() <= 0.1


def test_which_errors_are_outages():
    assert is_outage(psycopg.OperationalError("server closed the connection"))
    assert is_outage(psycopg.errors.ReadOnlySqlTransaction("failover"))
    assert is_outage(DatabaseUnavailableError("down")) and is_outage(ConnectionResetError())
    assert not is_outage(psycopg.errors.UniqueViolation("dup")) and not is_outage(ValueError("bug"))


def test_an_outage_reads_as_one_warning_down_and_one_info_back(caplog: pytest.LogCaptureFixture):
    log = OutageLog(logging.getLogger("tests.outage"), "worker w1")
    with caplog.at_level(logging.DEBUG, logger="tests.outage"):
        for _ in range(5):
            log.failed(psycopg.OperationalError("server closed the connection\nmore"), "claiming")
        assert log.down
        log.recovered()
        log.recovered()  # nothing more to say
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [lvl for lvl, _ in levels] == ["WARNING"] + ["DEBUG"] * 4 + ["INFO"]
    assert levels[0][1] == ("worker w1: lost the database while claiming (server closed the connection); "
                            "retrying with backoff until it is back")
    assert levels[-1][1].startswith("worker w1: the database is back after ") and not log.down


def test_an_error_that_is_not_an_outage_is_logged_every_time_with_its_traceback(caplog):
    log = OutageLog(logging.getLogger("tests.outage"), "beat")
    with caplog.at_level(logging.DEBUG, logger="tests.outage"):
        for _ in range(2):
            log.failed(ValueError("a bug"), "ticking")
    assert [(r.levelname, r.getMessage(), r.exc_info[0]) for r in caplog.records] == \
        [("ERROR", "beat: ticking failed; retrying", ValueError)] * 2
    assert not log.down
