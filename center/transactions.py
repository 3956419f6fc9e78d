"""Where the case store's write transactions run: the whole transaction in one call.

A case is half a dozen statements. Through the async driver each statement is several trips
between the event loop and the driver (aiosqlite: a cursor, the execute, the fetch, the close,
each a hop to its thread and back), and every trip back waits for the event loop's turn. Ingest
shares that loop: under load, with the loop busy decoding and evaluating for a few ms at a time,
a case took 30 turns of the loop to write (``python -m bench.casewrite``: 12 ms with the loop
idle, 28 ms with it busy half the time 5 ms at a time; on the thread 5 and 10 ms).

``Transactions.run(work)`` runs ``work(session)`` — synchronous SQLAlchemy — as one call:

- **SQLite file** (the default): on a thread of its own, through the standard ``sqlite3``
  driver on a second engine over the same file; the event loop is visited once, when the
  transaction is done. The write turn (``center.db.one_writer``) is held meanwhile, so this
  process's other writers still take turns with it. The thread shares the GIL with the loop:
  a loop that never waits (ingest saturated) starves it, as it starves aiosqlite's thread.
- **SQLite file, on the event loop** (``on_loop``; the case store's choice): the same
  synchronous transaction called in the write turn, on the loop itself, through a third
  connection that never waits for a lock (``busy_timeout`` 0). On the thread, each statement
  hands the GIL back and forth with a loop that ingest keeps busy (at 150,000 readings/s a
  case took p50 6-7 / p99 20-31 ms to write there against 3 / 7 ms on the loop: the thread
  waits for the GIL at every statement). The loop is held for the write itself, ~1.5-3 ms
  (the commit's fsync included), and now and then longer: the commit that takes SQLite's WAL
  past 1,000 pages (~4 MB) also copies it into the database file (SQLite's automatic
  checkpoint; not timed apart: the slowest case writes in the stage runs took 13-30 ms). When
  another connection holds the write lock (another process: the CLI, a second node), SQLite
  answers "busy" at once instead of blocking the loop: the transaction is rolled back and run
  again on the thread, which waits up to the usual 5 s (``loop_fallbacks`` counts those).
- **PostgreSQL, in-memory SQLite**: on the async engine through ``AsyncSession.run_sync``
  (asyncpg has no synchronous twin here; a second engine on an in-memory database would be
  another database). PostgreSQL writers first take ``EVENT_LOCK``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, event, func, select
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from center import db
from center.errors import StoreError

T = TypeVar("T")

EVENT_LOCK = 0x63697479_63617365  # "citycase": PostgreSQL advisory lock held by every writer
"""Writers take it first, so event ids (a sequence, handed out at insert) commit in id order
and a reader never sees id n+1 before id n. SQLite has one writer at a time anyway."""


def _sqlite_file(url: URL) -> bool:
    if url.get_backend_name() != "sqlite":
        return False
    return url.database not in (None, "", ":memory:") and url.query.get("mode") != "memory"


def _close(executor: ThreadPoolExecutor, *engines: Engine) -> None:
    executor.shutdown(wait=False)
    for engine in engines:
        engine.dispose()


def _never_wait(dbapi_connection: Any, connection_record: Any) -> None:
    """The loop's connection (a ``connect`` listener): a lock another connection holds is an
    immediate "busy", not a wait on the event loop."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


def _busy(exc: OperationalError) -> bool:
    """SQLite's "database is locked" (SQLITE_BUSY or SQLITE_LOCKED, any extended code)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Transactions:
    """Runs write transactions on ``engine``'s database (see the module's docstring)."""

    def __init__(
        self, engine: AsyncEngine, *, on_thread: bool = True, on_loop: bool = False
    ) -> None:
        self._engine = engine
        self._async_sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._postgresql = engine.dialect.name == "postgresql"
        self._thread: tuple[ThreadPoolExecutor, sessionmaker[Session]] | None = None
        self._loop: sessionmaker[Session] | None = None
        self._closed = False
        self.loop_fallbacks = 0
        """Transactions the loop's connection found locked by another and the thread ran."""
        if (on_thread or on_loop) and _sqlite_file(engine.url):
            url = engine.url.set(drivername="sqlite")
            sync = create_sync_engine(
                url,
                # the connection lives on the writer thread; only dispose() touches it elsewhere
                connect_args={"check_same_thread": False},
                pool_size=1,
            )
            event.listen(sync, "connect", db.sqlite_pragmas)
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="case-writer")
            self._thread = (executor, sessionmaker(sync, expire_on_commit=False))
            engines = [sync]
            if on_loop:
                # made and used on the loop's thread; dispose() may run on another
                near = create_sync_engine(
                    url, connect_args={"check_same_thread": False}, pool_size=1
                )
                event.listen(near, "connect", _never_wait)
                self._loop = sessionmaker(near, expire_on_commit=False)
                engines.append(near)
            self._finalizer = weakref.finalize(self, _close, executor, *engines)

    @property
    def on_thread(self) -> bool:
        """Whether transactions run on a thread of their own (a SQLite file; with ``on_loop``,
        those another connection's lock sent there)."""
        return self._thread is not None

    @property
    def on_loop(self) -> bool:
        """Whether transactions run on the event loop first (a SQLite file, ``on_loop``)."""
        return self._loop is not None

    async def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in one transaction, committed when it returns, rolled back when it
        raises, in this process's write turn. A database failure (``SQLAlchemyError``,
        ``OSError``) is raised as ``StoreError``; anything else as it is."""
        if self._closed:
            raise RuntimeError("the case store's transactions are closed")
        try:
            return await self._run(work)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"case store: {exc}") from exc

    async def _run(self, work: Callable[[Session], T]) -> T:
        async with db.one_writer(self._engine):
            if self._thread is None:
                async with self._async_sessions() as session, session.begin():
                    if self._postgresql:
                        await session.execute(select(func.pg_advisory_xact_lock(EVENT_LOCK)))
                    return await session.run_sync(work)
            if self._loop is not None:
                try:
                    with self._loop() as near, near.begin():
                        return work(near)
                except OperationalError as exc:
                    if not _busy(exc):
                        raise
                    self.loop_fallbacks += 1  # rolled back: the thread runs it from the start
            executor, sessions = self._thread

            def transaction() -> T:
                with sessions() as session, session.begin():
                    return work(session)

            running = executor.submit(transaction)
            try:
                # wrap_future, not run_in_executor + shield: each layer of futures is one more
                # turn of a busy event loop before the result is seen
                return await asyncio.wrap_future(running)
            except asyncio.CancelledError:
                # the thread finishes the transaction whatever happens: keep the write turn
                # until it has, so no other writer meets a locked database
                await asyncio.wait([asyncio.wrap_future(running)])
                raise

    def close(self) -> None:
        """Refuse new transactions; the writer thread ends after the one it is running (not
        waited for) and its idle connection is closed."""
        self._closed = True
        if self._thread is not None:
            self._finalizer()
