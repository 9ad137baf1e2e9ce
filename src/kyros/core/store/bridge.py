"""SQLite through SQLAlchemy's synchronous engine, statements run on the event loop.

aiosqlite hands every cursor operation to its thread separately: a SELECT costs four hops
(cursor, execute, fetchall, close), ~0.5-0.75 ms on a 2-core machine, and a thread that was idle
can take a millisecond more to wake on a VM. SQLite statements themselves take microseconds, and
under WAL none of them waits for another connection once a write transaction holds the lock, so
:class:`PooledReads` and :class:`InlineConnection` run them inline; only a ``BEGIN IMMEDIATE``
that must wait for another process goes to a worker thread (``Store.write``, ADR 0009).

Both offer the part of ``AsyncConnection`` the repositories use (:class:`Conn`):
``await execute(statement, parameters)`` returning a buffered result, and ``run_sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select

from kyros.core.store.schema import row_dict

T = TypeVar("T")


class Conn(Protocol):
    """What repositories need from a connection: AsyncConnection, PooledReads and
    InlineConnection all fit."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T: ...


@dataclass(frozen=True)
class _NoRows:
    """The result of a statement without rows (UPDATE, DELETE, executemany)."""

    rowcount: int


def _execute(conn: Connection, statement: Any, parameters: Any) -> Result[Any] | _NoRows:
    result = conn.execute(statement) if parameters is None else conn.execute(statement, parameters)
    if result.returns_rows:
        # Buffer now: the caller reads rows without touching the cursor.
        return result.freeze()()
    return _NoRows(result.rowcount)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in the default executor; if cancelled, still wait for it to finish, so a
    connection it uses is never released while a statement runs."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):  # the caller sees the cancellation below
            await future
        raise


def _execute_pooled(engine: Engine, statement: Any, parameters: Any) -> Result[Any] | _NoRows:
    with engine.connect() as conn:
        return _execute(conn, statement, parameters)


def _run_pooled(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    with engine.connect() as conn:
        return fn(conn, *args)


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled once for one engine: its SQL, its parameters in order with their
    defaults and bind conversions, its result keys, and the result conversions a ``Result``
    would apply."""

    compiled: Any
    #: The parameters' values in the statement's order, from a dict.
    pick: Callable[[dict[str, Any]], tuple[Any, ...]]
    #: Values of the parameters that have one in the statement (``values(reserved=0.0)``).
    defaults: dict[str, Any]
    #: (position, conversion) of the parameters whose type converts them.
    converts: tuple[tuple[int, Callable[[Any], Any]], ...]
    keys: tuple[str, ...]
    results: tuple[Callable[[Any], Any] | None, ...]

    def args(self, parameters: dict[str, Any]) -> list[Any]:
        """``parameters`` as the driver takes them: in order, defaults filled in, converted
        (what ``construct_params`` and the bind processors give, without their per-call
        bookkeeping)."""
        try:
            args = list(self.pick({**self.defaults, **parameters} if self.defaults else parameters))
        except KeyError:
            self.compiled.construct_params(parameters)  # raises SQLAlchemy's error for it
            raise
        for position, convert in self.converts:
            args[position] = convert(args[position])
        return args


def _picker(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function giving the values of ``names`` from a dict, as a tuple."""
    if len(names) == 1:
        name = names[0]
        return lambda parameters: (parameters[name],)
    if not names:
        return lambda parameters: ()
    return operator.itemgetter(*names)


def _prepare(engine: Engine, statement: Select[Any]) -> _Prepared | None:
    """``statement`` compiled for ``engine``, or None if it needs SQLAlchemy's execution path
    (expanding, literal or computed parameters, a paramstyle other than qmark)."""
    return _prepare_for(engine.dialect, statement)


def _prepare_for(dialect: Any, statement: Any) -> _Prepared | None:
    compiled = statement.compile(dialect=dialect)
    binds = compiled.binds
    if (
        dialect.paramstyle != "qmark"
        or compiled.positiontup is None
        or compiled.escaped_bind_names
        or any(b.expanding or b.literal_execute or b.callable for b in binds.values())
    ):
        return None
    names = tuple(compiled.positiontup)
    selected = getattr(statement, "selected_columns", None)  # None for INSERT and UPDATE
    columns = list(selected) if selected is not None else []
    processors = [binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    return _Prepared(
        compiled=compiled,
        pick=_picker(names),
        defaults={n: binds[n].value for n in names if not binds[n].required},
        converts=tuple((i, bind) for i, bind in enumerate(processors) if bind is not None),
        keys=tuple(selected.keys()) if selected is not None else (),
        results=tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ),
    )


def _first_prepared(
    engine: Engine, fairy: PoolProxiedConnection, prepared: _Prepared, parameters: dict[str, Any]
) -> dict[str, Any] | None:
    args = prepared.args(parameters)
    dialect = engine.dialect
    sql = prepared.compiled.string
    try:
        cursor = fairy.cursor()
        try:
            cursor.execute(sql, args)
            row = cursor.fetchone()
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        # The same wrapping (and disconnect handling) as Connection.execute.
        disconnect = dialect.is_disconnect(exc, fairy.dbapi_connection, None)
        if disconnect:
            fairy.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            args,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=disconnect,
            dialect=dialect,
        ) from exc
    if row is None:
        return None
    return {
        key: value if convert is None else convert(value)
        for key, convert, value in zip(prepared.keys, prepared.results, row, strict=True)
    }


class PooledReads:
    """Autocommit reads, run inline on the event loop.

    Under WAL a reader never waits for a lock, and a typical read costs ~0.1 ms: less than a
    hop to a worker thread (~0.25 ms) and far less than many threads contending for the GIL
    under concurrent requests (GET /v1/runs/{id}: ~430 req/s through threads).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # By id(statement); each entry holds its statement, so the id stays its own.
        self._prepared: dict[int, tuple[Select[Any], _Prepared | None]] = {}
        # Prepared reads run start to finish without yielding, so one connection serves them
        # all; checking one out of the pool and back costs about as much as the statement. The
        # lock only matters if a second thread reads at the same moment: it takes a pooled one.
        self._held: PoolProxiedConnection | None = None
        self._held_lock = threading.Lock()

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return _execute_pooled(self.engine, statement, parameters)

    def first(self, statement: Select[Any], parameters: dict[str, Any]) -> dict[str, Any] | None:
        """The first row of ``statement`` as a dict, as ``row_dict(execute(...).first())``
        gives it, through a statement compiled once and the driver's cursor: a single-row read
        without SQLAlchemy's per-execution context and Result (~0.25 ms → ~0.05 ms)."""
        entry = self._prepared.get(id(statement))
        if entry is None or entry[0] is not statement:
            entry = self._prepared[id(statement)] = (statement, _prepare(self.engine, statement))
        prepared = entry[1]
        if prepared is None:
            result = _execute_pooled(self.engine, statement, parameters)
            row = result.first() if isinstance(result, Result) else None
            return row_dict(row) if row else None
        if not self._held_lock.acquire(blocking=False):
            fairy = self.engine.raw_connection()
            try:
                return _first_prepared(self.engine, fairy, prepared, parameters)
            finally:
                fairy.close()
        try:
            if self._held is None:
                self._held = self.engine.raw_connection()
            try:
                return _first_prepared(self.engine, self._held, prepared, parameters)
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    self._held.close()
                    self._held = None
                raise
        finally:
            self._held_lock.release()

    def close(self) -> None:
        """Give the connection kept for prepared reads back to the pool."""
        with self._held_lock:
            if self._held is not None:
                self._held.close()
                self._held = None

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await in_thread(_run_pooled, self.engine, fn, *args)


class InlineConnection:
    """A write transaction's connection, its statements run on the event loop (see Store.write)."""

    __slots__ = ("_driver", "sync_connection")

    def __init__(self, conn: Connection, driver: Any = None) -> None:
        self.sync_connection = conn
        self._driver = driver

    @property
    def driver(self) -> Any:
        """The driver's connection under :attr:`sync_connection`."""
        if self._driver is None:
            self._driver = self.sync_connection.connection.driver_connection
        return self._driver

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return _execute(self.sync_connection, statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.sync_connection, *args)


_WRITES: dict[int, tuple[Any, _Prepared | None]] = {}


async def execute_prepared(conn: Conn, statement: Any, parameters: dict[str, Any]) -> None:
    """Run an INSERT or UPDATE built once at module level, every column given as a parameter.

    In an SQLite write transaction it is compiled once and run on the driver's cursor, skipping
    SQLAlchemy's per-execution context (~0.2 ms a statement): the path of the cost ledger, which
    every model call writes. Python-side column defaults do not apply on that path.
    """
    if isinstance(conn, InlineConnection):
        entry = _WRITES.get(id(statement))
        if entry is None or entry[0] is not statement:
            dialect = conn.sync_connection.dialect
            entry = _WRITES[id(statement)] = (statement, _prepare_for(dialect, statement))
        prepared = entry[1]
        if prepared is not None:
            args = prepared.args(parameters)
            sql = prepared.compiled.string
            driver = conn.driver
            try:
                driver.execute(sql, args)
            except Exception as exc:
                dialect = conn.sync_connection.dialect
                if not isinstance(exc, dialect.loaded_dbapi.Error):
                    raise
                # Wrapped as Connection.execute would: the store maps DBAPIError to its errors.
                raise DBAPIError.instance(
                    sql, args, exc, dialect.loaded_dbapi.Error, dialect=dialect
                ) from exc
            return
    await conn.execute(statement, parameters)


async def first_row(
    conn: Conn, statement: Select[Any], parameters: dict[str, Any]
) -> dict[str, Any] | None:
    """The first row of ``statement`` as a dict, or None, on any :class:`Conn`.

    For ``statement`` built once at module level: on SQLite reads it is compiled once and run on
    the driver's cursor (:meth:`PooledReads.first`), the path of the API's hottest read.
    """
    if isinstance(conn, PooledReads):
        return conn.first(statement, parameters)
    row = (await conn.execute(statement, parameters)).first()
    return row_dict(row) if row else None
