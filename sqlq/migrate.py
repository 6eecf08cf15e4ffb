"""Running sqlq's alembic migrations against a database, with sqlq's own version table.

The revisions ship inside the package (``sqlq.migrations``), so ``pip install sqlq`` is all a
deployment needs; nothing is read from the current directory. alembic is imported only by the
functions that run it: a worker needs just the two constants below, and its start should not pay
for alembic.
"""

from __future__ import annotations

import io
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

#: sqlq's own alembic version table (in sqlq's schema), so an app's alembic history is unaffected.
VERSION_TABLE = "sqlq_alembic_version"

#: The newest revision. Workers compare the database with it at start without importing alembic;
#: a test keeps it equal to the head of ``migrations/versions``.
HEAD_REVISION = "0012"


def _config(schema: str, url: str | None = None, connection: Any = None, output: Any = None) -> Config:
    from alembic.config import Config

    cfg = Config(output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", str(resources.files("sqlq.migrations")))
    cfg.attributes["sqlq_schema"] = schema
    cfg.attributes["sqlq_version_table"] = VERSION_TABLE
    cfg.attributes["sqlq_url"] = url
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config("sqlq")).get_current_head()
    assert head is not None  # None only for a script directory without revisions; sqlq ships its own
    return head


def current_revision(engine: Engine, schema: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                     "version_table_schema": schema})
        return ctx.get_current_revision()


def upgrade(engine: Engine, schema: str, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` in one transaction (PostgreSQL has transactional DDL)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_config(schema, connection=conn), revision)


def downgrade(engine: Engine, schema: str, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(_config(schema, connection=conn), revision)


def upgrade_sql(url: str, schema: str, revision: str = "head") -> str:
    """The SQL `upgrade` would run, for DBAs who apply migrations themselves."""
    from alembic import command

    buf = io.StringIO()
    command.upgrade(_config(schema, url=url, output=buf), revision, sql=True)
    return buf.getvalue()
