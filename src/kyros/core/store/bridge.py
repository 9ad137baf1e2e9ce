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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine, Result

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


class PooledReads:
    """Autocommit reads, run inline on the event loop.

    Under WAL a reader never waits for a lock, and a typical read costs ~0.1 ms: less than a
    hop to a worker thread (~0.25 ms) and far less than many threads contending for the GIL
    under concurrent requests (GET /v1/runs/{id}: ~430 req/s through threads).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return _execute_pooled(self.engine, statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await in_thread(_run_pooled, self.engine, fn, *args)


class InlineConnection:
    """A write transaction's connection, its statements run on the event loop (see Store.write)."""

    def __init__(self, conn: Connection) -> None:
        self.sync_connection = conn

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return _execute(self.sync_connection, statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.sync_connection, *args)
