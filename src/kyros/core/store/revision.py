"""The schema revision, read without Alembic.

Alembic and its templates cost ~11 MB and ~0.3 s to import; a daemon whose database is already
current never needs them. ``HEAD`` names the newest migration (a test checks it against the
migration scripts); the database's revision is one row of ``alembic_version``.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kyros.core.store.bridge import Conn

#: The newest migration in ``migrations/versions``. Bump it with every new migration.
HEAD = "0006"


async def current(conn: Conn) -> str | None:
    """The database's revision, or None for a database never migrated."""
    try:
        result = await conn.execute(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:
        return None  # no alembic_version table yet
    row = result.first()
    return str(row[0]) if row else None
