"""Applying and inspecting migrations, from the daemon at start-up and from `kyros db`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from kyros.core.store.engine import _translate_errors, make_engine
from kyros.errors import StoreUnavailable

MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _upgrade(conn: Connection, target: str) -> None:
    cfg = _config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, target)
    if conn.dialect.name == "sqlite":
        # Migrations ran with foreign keys off (STACK-NOTES); prove nothing dangles before commit.
        problems = conn.execute(text("PRAGMA foreign_key_check")).fetchall()
        if problems:
            raise StoreUnavailable(f"migration left dangling foreign keys: {problems[:5]}")


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def upgrade(url: str, target: str = "head") -> MigrationStatus:
    """Bring the database at ``url`` to ``target`` (the newest revision by default); returns the
    resulting status."""
    engine = make_engine(url, migrations=True)
    try:
        async with _translate_errors(url), engine.begin() as conn:
            await conn.run_sync(_upgrade, target)
            current = await conn.run_sync(_current)
    finally:
        await engine.dispose()
    return MigrationStatus(current=current, head=head_revision())


async def status(url: str) -> MigrationStatus:
    """The database's revision next to the newest one kyros knows."""
    engine = make_engine(url, migrations=True)
    try:
        async with _translate_errors(url), engine.connect() as conn:
            current = await conn.run_sync(_current)
    finally:
        await engine.dispose()
    return MigrationStatus(current=current, head=head_revision())
