"""SQLite through SQLAlchemy's synchronous engine, one worker-thread hop per statement.

aiosqlite hands every cursor operation to its thread separately: a SELECT costs four hops
(cursor, execute, fetchall, close), ~0.5-0.75 ms on a 2-core machine. Running the whole
statement - execute and buffering its rows - in one ``run_in_executor`` call costs ~0.25 ms,
and a claim-and-settle transaction drops from a dozen hops to four (ADR 0009).

:class:`ThreadConnection` offers the part of ``AsyncConnection`` the repositories use:
``await execute(statement, parameters)`` returning a buffered result, and ``run_sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine, Result

T = TypeVar("T")


class Conn(Protocol):
    """What repositories need from a connection: AsyncConnection and ThreadConnection both fit."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T: ...


@dataclass(frozen=True)
class _NoRows:
    """The result of a statement without rows (UPDATE, DELETE, executemany)."""

    rowcount: int


def _execute(conn: Connection, statement: Any, parameters: Any) -> Result[Any] | _NoRows:
    result = conn.execute(statement) if parameters is None else conn.execute(statement, parameters)
    if result.returns_rows:
        # Buffer in the worker thread: the caller reads rows without touching the cursor.
        return result.freeze()()
    return _NoRows(result.rowcount)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in the default executor; if cancelled, still wait for it to finish, so the
    connection is never used by two threads at once or released while a statement runs."""
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


class PooledReads:
    """Autocommit reads: each statement checks a connection out, runs and returns it in one hop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return await in_thread(_execute_pooled, self.engine, statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await in_thread(_run_pooled, self.engine, fn, *args)


class ThreadConnection:
    """An async facade over one synchronous connection, used by one task at a time."""

    def __init__(self, conn: Connection) -> None:
        self.sync_connection = conn

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return await in_thread(_execute, self.sync_connection, statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await in_thread(fn, self.sync_connection, *args)
