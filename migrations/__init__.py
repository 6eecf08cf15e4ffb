"""sqlq's alembic revisions, shipped inside the package as ``sqlq.migrations`` (see sqlq/migrate.py)."""
