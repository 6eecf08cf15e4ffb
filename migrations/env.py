"""Alembic environment for sqlq's own migrations.

sqlq keeps its own version table (``<schema>.sqlq_alembic_version``) so it can live in a database
whose application runs alembic too, without either history seeing the other.
"""

from alembic import context
from sqlalchemy import text

config = context.config
schema = config.attributes["sqlq_schema"]
version_table = config.attributes["sqlq_version_table"]


def run_offline() -> None:
    context.configure(
        url=config.attributes["sqlq_url"],
        literal_binds=True,
        version_table=version_table,
        version_table_schema=schema,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    # The schema must exist before alembic can create its version table inside it.
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        version_table=version_table,
        version_table_schema=schema,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
