"""The store's engines and transactions, on SQLite (default) or PostgreSQL.

SQLite is tuned as checked in STACK-NOTES: WAL, ``synchronous=NORMAL``, ``busy_timeout``,
foreign keys on, and write transactions opened with ``BEGIN IMMEDIATE`` so a read-modify-write can
never lose an update. Writers in one process also queue on an asyncio lock: SQLite admits one
writer at a time anyway, and waiting on a lock wakes at once where SQLite's busy handler polls
with sleeps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from kyros.errors import StoreUnavailable, UsageError

BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection: Any, *, foreign_keys: bool) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" listener below issues BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    cursor.close()


def make_engine(url: str, *, begin: str | None = None, migrations: bool = False) -> AsyncEngine:
    """An async engine for ``url``. On SQLite ``begin`` is the BEGIN flavour (``IMMEDIATE``);
    without it statements autocommit one by one, which is what reads want."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise UsageError(f"invalid database URL: {exc}") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if migrations:
            from sqlalchemy.pool import NullPool

            kwargs["poolclass"] = NullPool
        else:
            # Every transaction is ended by commit or rollback before the connection returns;
            # a reset would cost one more hop to aiosqlite's thread per use.
            kwargs["pool_reset_on_return"] = None
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Batch migrations recreate tables; with foreign keys on they cascade-delete children.
            _sqlite_pragmas(dbapi_connection, foreign_keys=not migrations)

        if begin is None and not migrations:
            return engine  # autocommit reads: no BEGIN/ROLLBACK round trips
        begin_sql = f"BEGIN {begin}" if begin else "BEGIN"

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin_sql)

        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() != "asyncpg":
            raise UsageError("PostgreSQL URLs must use the asyncpg driver: postgresql+asyncpg://…")
        if migrations:
            from sqlalchemy.pool import NullPool

            kwargs["poolclass"] = NullPool
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
        return create_async_engine(url, **kwargs)
    raise UsageError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite+aiosqlite:// or "
        "postgresql+asyncpg://"
    )


class Store:
    """Engines plus the two ways in: :meth:`write` and :meth:`read` transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            self.engine = make_engine(url, begin="IMMEDIATE")
            # Readers never block the writer under WAL. They run without BEGIN: each statement
            # sees committed data, and a read costs two fewer hops to aiosqlite's thread.
            self.read_engine = make_engine(url)
        else:
            self.engine = make_engine(url)
            self.read_engine = self.engine
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; commits on success, rolls back on error."""
        if self._write_lock is None:
            async with _translate_errors(), self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, _translate_errors(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. On PostgreSQL a transaction; on SQLite each statement is
        its own snapshot (callers needing several consistent reads use :meth:`write`)."""
        async with _translate_errors(), self.read_engine.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


@asynccontextmanager
async def _translate_errors() -> AsyncIterator[None]:
    """Connection-level database failures become :class:`StoreUnavailable`."""
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        if (
            isinstance(exc, DBAPIError)
            and not exc.connection_invalidated
            and not isinstance(exc, OperationalError)
        ):
            raise
        raise StoreUnavailable(f"the database is unavailable: {_first_line(exc)}") from exc
    except (OSError, ConnectionError) as exc:
        raise StoreUnavailable(f"the database is unreachable: {exc}") from exc


def _first_line(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc)
    return msg.splitlines()[0] if msg else type(exc).__name__
