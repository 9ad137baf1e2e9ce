"""Store administration run by `kyros db …` in the CLI process (no daemon needed)."""

from __future__ import annotations

import asyncio

from kyros.core.store import migrate
from kyros.settings import Loaded


def db_upgrade(loaded: Loaded) -> migrate.MigrationStatus:
    return asyncio.run(migrate.upgrade(loaded.database_url))


def db_status(loaded: Loaded) -> migrate.MigrationStatus:
    return asyncio.run(migrate.status(loaded.database_url))
