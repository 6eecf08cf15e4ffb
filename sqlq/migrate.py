"""Running sqlq's alembic migrations against a database, with sqlq's own version table.

The revisions ship inside the package (``sqlq.migrations``), so ``pip install sqlq`` is all a
deployment needs; nothing is read from the current directory.
"""

from __future__ import annotations

import io
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .migrations import VERSION_TABLE


def _config(schema: str, url: str | None = None, connection=None, output=None) -> Config:
    cfg = Config(output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", str(resources.files("sqlq.migrations")))
    cfg.attributes["sqlq_schema"] = schema
    cfg.attributes["sqlq_version_table"] = VERSION_TABLE
    cfg.attributes["sqlq_url"] = url
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_config("sqlq")).get_current_head()


def current_revision(engine: Engine, schema: str) -> str | None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                     "version_table_schema": schema})
        return ctx.get_current_revision()


def upgrade(engine: Engine, schema: str, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` in one transaction (PostgreSQL has transactional DDL)."""
    with engine.begin() as conn:
        command.upgrade(_config(schema, connection=conn), revision)


def downgrade(engine: Engine, schema: str, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(_config(schema, connection=conn), revision)


def upgrade_sql(url: str, schema: str, revision: str = "head") -> str:
    """The SQL `upgrade` would run, for DBAs who apply migrations themselves."""
    buf = io.StringIO()
    command.upgrade(_config(schema, url=url, output=buf), revision, sql=True)
    return buf.getvalue()
