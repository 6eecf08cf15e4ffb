"""Migrations without a server: HEAD_REVISION (which workers check without importing alembic) is the
newest alembic revision, and upgrade_sql prints the DDL offline."""

from __future__ import annotations

from sqlq import migrate as sqlq_migrate
from sqlq.schema import VERSION_TABLE


def test_head_revision_constant_is_the_newest_migration():
    """Workers check the schema against HEAD_REVISION without importing alembic: keep them equal."""
    from sqlq.migrate import head_revision
    from sqlq.schema import HEAD_REVISION

    assert HEAD_REVISION == head_revision()


def test_upgrade_sql_prints_the_ddl_without_connecting():
    text = sqlq_migrate.upgrade_sql("postgresql://nobody@127.0.0.1:1/nowhere", "offline_schema")
    assert 'CREATE SCHEMA IF NOT EXISTS "offline_schema"' in text
    assert f"CREATE TABLE offline_schema.{VERSION_TABLE}" in text
    for table in ("jobs", "results", "workers"):
        assert f"CREATE TABLE offline_schema.{table}" in text
    assert "CREATE INDEX jobs_available ON offline_schema.jobs" in text
    assert f"INSERT INTO offline_schema.{VERSION_TABLE}" in text
