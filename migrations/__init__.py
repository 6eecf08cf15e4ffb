"""sqlq's alembic revisions, shipped inside the package as ``sqlq.migrations``.

The two facts below are what running code needs to know about them; they live here, not in
``schema.py``, so checking a schema's revision does not import SQLAlchemy's PostgreSQL dialect.
"""

#: sqlq's own alembic version table (in sqlq's schema), so an app's alembic history is unaffected.
VERSION_TABLE = "sqlq_alembic_version"

#: The newest revision. Workers compare the database with it at start without importing alembic;
#: a test keeps it equal to the head of ``versions/``.
HEAD_REVISION = "0003"
