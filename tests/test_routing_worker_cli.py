"""Workers consume routed queues like any other and apply ``task_queues`` at start; the CLI's
``sqlq routes ...``, ``sqlq call --exchange`` and ``sqlq queues``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sqlq import GroupResult
from sqlq.cli import main
from sqlq.routing import list_routes


@pytest.fixture
def routed_app(app):
    """tests/apps/routed.py (task_queues in its config) on this test's migrated schema."""
    from tests.apps import routed

    routed.app.close()
    yield routed.app
    routed.app.close()


def cli(*args: str):
    result = CliRunner().invoke(main, ["-A", "tests.apps.routed", *args])
    return result


def test_worker_applies_task_queues_at_start_and_consumes_fanout_and_topic_queues(routed_app, run_worker):
    from tests.apps.routed import echo

    assert list_routes(routed_app) == []
    with run_worker(routed_app, queues=["video", "audio", "audit", "mail", "unrouted"]):
        assert echo.apply_async(("ping",), queue="video").get(timeout=30) == "ping"  # the worker is up
        assert {r.queue for r in list_routes(routed_app)} == {"video", "audio", "audit", "mail"}
        fanned = echo.apply_async(("fan",), exchange="events")
        assert isinstance(fanned, GroupResult)
        assert fanned.get(timeout=30) == ["fan", "fan"]
        assert echo.apply_async(("pod",), exchange="media", routing_key="daily.podcast").get(timeout=30) == "pod"
        assert echo.apply_async(("hd",), exchange="media", routing_key="media.video.hd").get(timeout=30) == "hd"
        lost = echo.apply_async(("lost",), exchange="media", routing_key="text.plain")  # alternate queue
        assert lost.get(timeout=30) == "lost"
        assert fanned.ready() and fanned.successful() and fanned.completed_count() == 2


def test_routes_commands(routed_app):
    applied = cli("routes", "apply")
    assert applied.exit_code == 0, applied.output
    assert "2 exchange(s) declared, 5 new binding(s)" in applied.stderr
    assert "0 new binding(s)" in cli("routes", "apply").stderr

    listed = cli("routes", "list").stdout
    assert "media" in listed and "media.audio.*" in listed and "*.podcast" in listed and "unrouted" in listed

    assert cli("routes", "add", "orders", "new_orders", "--key", "order.created", "--type", "direct").exit_code == 0
    assert cli("routes", "match", "orders", "order.created").stdout.split() == ["new_orders"]
    assert cli("routes", "match", "media", "media.video.x").stdout.split() == ["video"]
    assert cli("routes", "match", "media", "no.binding").stdout.split() == ["unrouted"]

    unroutable = cli("routes", "match", "orders", "order.paid")
    assert unroutable.exit_code == 1 and "no binding of exchange 'orders'" in unroutable.stderr
    conflict = cli("routes", "add", "media", "x", "--type", "direct")
    assert conflict.exit_code == 1 and "'media' is topic in the database, declared direct" in conflict.stderr
    bad = cli("routes", "add", "bad name", "q")
    assert bad.exit_code == 1 and "invalid exchange name" in bad.stderr

    assert cli("routes", "remove", "orders", "new_orders").exit_code == 0
    assert cli("routes", "match", "orders", "order.created").exit_code == 1
    assert cli("routes", "remove", "orders").exit_code == 0
    assert "orders" not in cli("routes", "list").stdout
    assert cli("routes", "remove", "orders").exit_code == 1


def test_call_through_an_exchange_and_queue_depths(routed_app):
    assert cli("routes", "apply").exit_code == 0
    called = cli("call", "tests.routed.echo", "--args", '["x"]', "--exchange", "events", "--routing-key", "")
    assert called.exit_code == 0, called.output
    ids = called.stdout.split()
    assert len(ids) == 2
    assert cli("call", "tests.routed.echo", "--args", '["y"]', "-X", "media", "-K", "media.audio.ogg",
               "--countdown", "600").exit_code == 0
    depths = {line.split()[0]: line.split()[1:] for line in cli("queues").stdout.splitlines()[1:]}
    assert depths == {"audio": ["0", "1", "0", "active"], "audit": ["1", "0", "0", "active"],
                      "mail": ["1", "0", "0", "active"]}
