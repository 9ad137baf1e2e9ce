"""The store's engines and transactions, on SQLite (default) or PostgreSQL.

SQLite is tuned as checked in STACK-NOTES: WAL, ``synchronous=NORMAL``, ``busy_timeout``,
foreign keys on, and write transactions opened with ``BEGIN IMMEDIATE`` so a read-modify-write can
never lose an update. Writers in one process also queue on an asyncio lock: SQLite admits one
writer at a time anyway, and waiting on a lock wakes at once where SQLite's busy handler polls
with sleeps of up to 100 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from kyros.core.store.bridge import Conn, InlineConnection, PooledReads, in_thread
from kyros.errors import StoreUnavailable, UsageError

if TYPE_CHECKING:
    # Imported where an async engine is made: with the ORM it pulls in, ~9 MB that a daemon on
    # SQLite with a current schema never uses.
    from sqlalchemy.ext.asyncio import AsyncEngine

BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(
    dbapi_connection: Any,
    *,
    foreign_keys: bool,
    checkpoint_manually: bool = False,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" listener below issues BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    if checkpoint_manually:
        # Commits run on the event loop; an automatic checkpoint would fsync there. The store
        # checkpoints from a worker thread instead (Store.checkpoint).
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except Exception as exc:
        raise UsageError(f"invalid database URL: {exc}") from None


def _ensure_sqlite_dir(parsed: URL) -> None:
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)


def make_engine(url: str, *, migrations: bool = False) -> AsyncEngine:
    """An async engine for ``url``: PostgreSQL's for the store, either one for migrations
    (SQLite's store runs on the synchronous driver, see :class:`Store`)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = _parse(url)
    kwargs: dict[str, Any] = {}
    if migrations:
        from sqlalchemy.pool import NullPool

        kwargs["poolclass"] = NullPool
    if parsed.get_backend_name() == "sqlite":
        _ensure_sqlite_dir(parsed)
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Batch migrations recreate tables; with foreign keys on they cascade-delete children.
            _sqlite_pragmas(dbapi_connection, foreign_keys=not migrations)

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() != "asyncpg":
            raise UsageError("PostgreSQL URLs must use the asyncpg driver: postgresql+asyncpg://…")
        if not migrations:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
        return create_async_engine(url, **kwargs)
    raise UsageError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite+aiosqlite:// or "
        "postgresql+asyncpg://"
    )


def _sqlite_sync_engine(url: str, *, begin: str | None) -> Engine:
    """A pysqlite engine on the same file, for use from worker threads (see ``bridge``)."""
    parsed = make_url(url).set(drivername="sqlite")
    engine = create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=24,
        # Every transaction ends in commit or rollback before the connection returns.
        pool_reset_on_return=None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The writer's connections never wait by default: BEGIN IMMEDIATE is tried on the event
        # loop and must fail at once if another process writes (``_InlineWriter``); only
        # the worker-thread path (``_sqlite_begin``) waits, and raises the timeout for it.
        _sqlite_pragmas(
            dbapi_connection,
            foreign_keys=True,
            checkpoint_manually=True,
            busy_timeout_ms=BUSY_TIMEOUT_MS if begin is None else 0,
        )

    if begin is not None:
        begin_sql = f"BEGIN {begin}"

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # An inline write began on the driver already (``_InlineWriter``): a statement run
            # through SQLAlchemy there only makes SQLAlchemy take over that transaction.
            driver = conn.connection.driver_connection
            if driver is not None and not driver.in_transaction:
                _on_driver(conn, driver.execute, begin_sql)

    return engine


def _on_driver(conn: Connection, action: Callable[..., object], *args: Any) -> None:
    """Run ``action`` (a BEGIN, COMMIT or ROLLBACK on ``conn``'s driver connection) with its
    errors wrapped as ``Connection.execute`` wraps them: callers see SQLAlchemy's errors."""
    dialect = conn.dialect
    try:
        action(*args)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            None, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
        ) from exc


def _sqlite_begin(engine: Engine) -> Connection:
    """BEGIN IMMEDIATE on a writer connection, waiting up to the busy timeout (worker thread)."""
    conn = engine.connect()
    # The timeout is set on the driver's connection: through SQLAlchemy the PRAGMA would
    # itself autobegin the transaction.
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            conn.begin()
        finally:
            raw.execute("PRAGMA busy_timeout=0")
    except BaseException:
        conn.close()
        raise
    return conn


class _InlineWriter:
    """The writer connection that inline write transactions reuse, begun and ended on the driver.

    Only the holder of the store's write lock uses it, so one connection serves every inline
    write: checking one out of the pool and back, and SQLAlchemy's transaction bookkeeping, cost
    more than a small transaction's statements (the cost ledger commits one per model call).
    A statement run through SQLAlchemy makes it take over the transaction the driver began.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    def begin_now(self) -> InlineConnection | None:
        """BEGIN IMMEDIATE without waiting (the writer's busy timeout is 0): the transaction's
        connection, or None if another process holds the write lock."""
        conn = self._conn
        if conn is None or conn.invalidated:
            conn = self._conn = self.engine.connect()
        driver = conn.connection.driver_connection
        assert driver is not None  # a connection from the pool is open
        try:
            _on_driver(conn, driver.execute, "BEGIN IMMEDIATE")
        except OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            self.drop()
            raise
        except BaseException:
            self.drop()
            raise
        return InlineConnection(conn, driver)

    def end(self, *, commit: bool) -> None:
        """Commit or roll back the transaction :meth:`begin_now` began."""
        conn = self._conn
        assert conn is not None
        try:
            if conn.in_transaction():  # SQLAlchemy took it over
                if commit:
                    conn.commit()
                else:
                    conn.rollback()
                return
            driver = conn.connection.driver_connection
            assert driver is not None
            _on_driver(conn, driver.commit if commit else driver.rollback)
        except BaseException:
            self.drop()
            raise

    def drop(self) -> None:
        """Close the driver's connection for good after a failure: that ends any transaction
        the failure left open (the pool does not reset connections it gets back)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.invalidate()
            conn.close()

    def close(self) -> None:
        """Give the connection back to the pool (no transaction is open: the store closes)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _sqlite_end(conn: Connection, commit: bool) -> None:
    try:
        if commit:
            conn.commit()
        else:
            conn.rollback()
    finally:
        conn.close()


async def _begin_in_thread(engine: Engine) -> Connection:
    """BEGIN IMMEDIATE in a worker thread. If the caller is cancelled meanwhile, the
    transaction that may still open is rolled back when it does: a leaked one would hold
    SQLite's write lock for good."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, _sqlite_begin, engine)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:

        def roll_back(done: asyncio.Future[Connection]) -> None:
            if not done.cancelled() and done.exception() is None:
                loop.run_in_executor(None, _sqlite_end, done.result(), False)

        future.add_done_callback(roll_back)
        raise


class _SqliteWrite:
    """``Store.write()`` on SQLite, written out as a class: generator-based context managers
    (this one and the error translation's) cost more than a small transaction's statements,
    and the cost ledger commits one per model call."""

    __slots__ = ("engine", "inline", "lock", "pooled")

    def __init__(self, lock: asyncio.Lock, inline: _InlineWriter, engine: Engine) -> None:
        self.lock, self.inline, self.engine = lock, inline, engine
        #: The worker thread's connection, when BEGIN had to wait for another process.
        self.pooled: Connection | None = None

    async def __aenter__(self) -> Conn:
        await self.lock.acquire()
        try:
            # Inline first: once BEGIN IMMEDIATE holds the write lock, WAL lets every statement
            # and the COMMIT finish without waiting on anyone, so only BEGIN may block - and
            # only on another process. Then (and only then) it waits in a worker thread, on a
            # connection of its own.
            conn = self.inline.begin_now()
            if conn is None:
                self.pooled = await _begin_in_thread(self.engine)
                conn = InlineConnection(self.pooled)
        except BaseException as exc:
            self.lock.release()
            _raise_unavailable(exc)
            raise
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.pooled is None:
                self.inline.end(commit=exc is None)
            else:
                _sqlite_end(self.pooled, exc is None)
        except BaseException as failure:
            _raise_unavailable(failure)
            raise
        finally:
            self.lock.release()
        if exc is not None:
            _raise_unavailable(exc)


class Store:
    """Engines plus the two ways in: :meth:`write` and :meth:`read`.

    PostgreSQL runs on asyncpg. SQLite runs on SQLAlchemy's synchronous pysqlite engine with its
    statements on the event loop (``bridge``, ADR 0009): a writer engine whose transactions begin
    with ``BEGIN IMMEDIATE``, and a reader engine in autocommit, so readers never queue behind the
    writer and every statement sees committed data.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = _parse(url)
        self.dialect = parsed.get_backend_name()
        self._sqlite_writer: Engine | None = None
        self._sqlite_reader: Engine | None = None
        self._sqlite_reads: _SqliteReads | None = None
        self._engine: AsyncEngine | None = None
        self._inline: _InlineWriter | None = None
        if self.dialect == "sqlite":
            _ensure_sqlite_dir(parsed)
            self._sqlite_writer = _sqlite_sync_engine(url, begin="IMMEDIATE")
            self._inline = _InlineWriter(self._sqlite_writer)
            self._sqlite_reader = _sqlite_sync_engine(url, begin=None)
            self._sqlite_reads = _SqliteReads(PooledReads(self._sqlite_reader))
        else:
            self._engine = make_engine(url)
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def write(self) -> AbstractAsyncContextManager[Conn]:
        """A write transaction; commits on success, rolls back on error."""
        if self._inline is not None:
            assert self._write_lock is not None and self._sqlite_writer is not None
            return _SqliteWrite(self._write_lock, self._inline, self._sqlite_writer)
        return self._postgres_write()

    @asynccontextmanager
    async def _postgres_write(self) -> AsyncIterator[Conn]:
        assert self._engine is not None
        async with _translate_errors(self.url), self._engine.begin() as conn:
            yield conn

    def read(self) -> AbstractAsyncContextManager[Conn]:
        """A connection for reads. On PostgreSQL a transaction; on SQLite each statement is
        its own snapshot (callers needing several consistent reads use :meth:`write`)."""
        if self._sqlite_reads is not None:
            return self._sqlite_reads
        return self._postgres_read()

    @asynccontextmanager
    async def _postgres_read(self) -> AsyncIterator[Conn]:
        assert self._engine is not None
        async with _translate_errors(self.url), self._engine.connect() as conn:
            yield conn

    async def checkpoint(self) -> None:
        """Move committed WAL pages into the database file (SQLite; a no-op elsewhere). Runs in a
        worker thread: it may fsync. PASSIVE never blocks readers or writers."""
        if self._sqlite_reader is None:
            return
        engine = self._sqlite_reader  # autocommit: a checkpoint cannot run inside a transaction

        def run() -> None:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

        async with _translate_errors():
            await in_thread(run)

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        if self._sqlite_reads is not None:
            self._sqlite_reads.conn.close()
        if self._inline is not None:
            self._inline.close()
        if self._engine is not None:
            await self._engine.dispose()
        for engine in (self._sqlite_writer, self._sqlite_reader):
            if engine is not None:
                await in_thread(engine.dispose)


def _raise_unavailable(exc: BaseException) -> None:
    """Raise what ``exc`` becomes if it is a connection-level database failure."""
    unavailable = _unavailable(exc)
    if unavailable is not None:
        raise unavailable from exc


#: PostgreSQL's SQLSTATE for "database does not exist" (invalid_catalog_name).
_NO_DATABASE = "3D000"


def _missing_database(exc: BaseException, url: str) -> StoreUnavailable | None:
    """A PostgreSQL database that does not exist, in words: the URL (password hidden) and
    the command that creates it."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state != _NO_DATABASE and "does not exist" not in str(orig or ""):
        return None
    try:
        parsed = make_url(url)
    except Exception:
        return None
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return None
    where = " ".join(
        f"{flag} {value}"
        for flag, value in (("-h", parsed.host), ("-p", parsed.port), ("-U", parsed.username))
        if value
    )
    return StoreUnavailable(
        f"the PostgreSQL database {parsed.database!r} does not exist at "
        f"{parsed.render_as_string(hide_password=True)}",
        code="database_missing",
        hint=f"createdb {where + ' ' if where else ''}{parsed.database}, or point "
        "KYROS_DATABASE_URL at a database that exists",
    )


def _unavailable(exc: BaseException, url: str | None = None) -> StoreUnavailable | None:
    """What a connection-level database failure becomes; None for any other error."""
    missing = _missing_database(exc, url) if url is not None else None
    if missing is not None:
        return missing
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return StoreUnavailable(f"the database is unavailable: {_first_line(exc)}")
    if isinstance(exc, (OSError, ConnectionError)):
        return StoreUnavailable(f"the database is unreachable: {exc}")
    return None


@asynccontextmanager
async def _translate_errors(url: str | None = None) -> AsyncIterator[None]:
    """Connection-level database failures become :class:`StoreUnavailable` (naming ``url``'s
    database, password hidden, when it does not exist)."""
    try:
        yield
    except Exception as exc:
        unavailable = _unavailable(exc, url)
        if unavailable is None:
            raise
        raise unavailable from exc


class _SqliteReads:
    """``Store.read()`` on SQLite: the store's one :class:`PooledReads` (it keeps no state per
    caller) with :func:`_translate_errors`' translation, without a generator per read."""

    __slots__ = ("conn",)

    def __init__(self, conn: PooledReads) -> None:
        self.conn = conn

    async def __aenter__(self) -> Conn:
        return self.conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            _raise_unavailable(exc)


def _first_line(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc)
    return msg.splitlines()[0] if msg else type(exc).__name__
