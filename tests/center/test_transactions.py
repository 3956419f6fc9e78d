"""Write transactions as one call (``center.transactions``): on a SQLite file on a thread of
their own, elsewhere on the event loop; committed or rolled back whole; a cancelled caller
keeps the write turn until the thread's transaction is over."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from center import CaseBroadcaster, CaseService, CaseStore, create_engine, migrate
from center.db import DeliveryCursorRow
from center.metrics import CaseCollector
from center.transactions import EVENT_LOCK, Transactions
from tests.center.factories import DETECTED, alert, sensor_info


def _thread_name(_session: Session) -> str:
    return threading.current_thread().name


async def test_a_sqlite_file_is_written_on_the_writer_thread_and_other_databases_on_the_loop(
    engine: AsyncEngine,
) -> None:
    transactions = Transactions(engine)
    try:
        name = await transactions.run(_thread_name)
    finally:
        transactions.close()
    if engine.dialect.name == "sqlite":
        assert transactions.on_thread
        assert name.startswith("case-writer")
    else:
        assert not transactions.on_thread
        assert name == threading.current_thread().name


async def test_on_loop_a_sqlite_file_is_written_on_the_event_loop(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    await migrate(url)
    engine = create_engine(url)
    transactions = Transactions(engine, on_loop=True)
    try:
        assert transactions.on_loop
        assert transactions.on_thread
        assert await transactions.run(_thread_name) == threading.current_thread().name
        assert transactions.loop_fallbacks == 0
    finally:
        transactions.close()
        await engine.dispose()


HOLD_THE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO delivery_cursors (subscriber, last_event_id, updated_at)"
           " VALUES ('other', 0, '2026-01-01 00:00:00')")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


async def test_a_lock_another_process_holds_sends_the_write_to_the_thread_not_the_loop(
    tmp_path: Path,
) -> None:
    """Another process (the CLI, a second node) holds SQLite's write lock for 1.5 s: the
    loop's connection is told "busy" at once, the transaction runs again on the thread, which
    waits for the lock, and the event loop goes on meanwhile. With the loop's connection
    waiting for the lock as the others do, the loop would stand still for the 1.5 s."""
    path = tmp_path / "cases.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url)
    engine = create_engine(url)
    transactions = Transactions(engine, on_loop=True)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_THE_LOCK, str(path), "1.5", stdout=asyncio.subprocess.PIPE
    )
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    def write(session: Session) -> str:
        session.add(DeliveryCursorRow(subscriber="ours", last_event_id=0, updated_at=DETECTED))
        session.flush()
        return threading.current_thread().name

    ticker = asyncio.create_task(tick())
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
        started = time.monotonic()
        name = await transactions.run(write)
        waited = time.monotonic() - started
        assert await holder.wait() == 0
    finally:
        ticker.cancel()
        transactions.close()
    try:
        assert name.startswith("case-writer")  # run again on the thread
        assert transactions.loop_fallbacks == 1
        assert waited > 0.5  # it did wait for the other process's lock...
        assert max(gaps) < 0.5  # ...but not on the event loop
        assert await _cursors(engine) == 2  # ours once (the loop's try rolled back), theirs
    finally:
        await engine.dispose()


async def test_a_case_written_while_another_process_holds_the_lock_is_counted(
    tmp_path: Path,
) -> None:
    """The case store writes on the loop; the lock held elsewhere sends the case to the
    thread, the case is written once and ``/metrics`` counts the write that waited."""
    path = tmp_path / "cases.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url)
    engine = create_engine(url)
    store = CaseStore(engine)
    service = CaseService(store, CaseBroadcaster())
    collector = CaseCollector(service)

    def locked_out() -> float:
        (family,) = [m for m in collector.collect() if m.name.endswith("writes_locked_out")]
        return family.samples[0].value

    try:
        await service.handle_alert(alert(), sensor_info(), DETECTED)  # on the loop
        assert locked_out() == 0
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD_THE_LOCK, str(path), "0.5", stdout=asyncio.subprocess.PIPE
        )
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
        second = "st-1.cover-02"
        await service.handle_alert(alert(sensor_id=second), sensor_info(second), DETECTED)
        assert await holder.wait() == 0
        assert locked_out() == 1
        assert (await store.list_cases())[1] == 2
    finally:
        store.close()
        await engine.dispose()


async def test_in_memory_sqlite_stays_on_the_loop() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        assert not Transactions(engine).on_thread
        assert not Transactions(create_engine("sqlite+aiosqlite:///:memory:")).on_thread
    finally:
        await engine.dispose()


async def _cursors(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(
            (
                await connection.execute(select(func.count(DeliveryCursorRow.subscriber)))
            ).scalar_one()
        )


async def test_work_that_raises_writes_nothing_and_its_error_reaches_the_caller(
    engine: AsyncEngine,
) -> None:
    def half_then_fail(session: Session) -> None:
        session.add(DeliveryCursorRow(subscriber="a", last_event_id=0, updated_at=DETECTED))
        session.flush()
        raise LookupError("after the first row")

    transactions = Transactions(engine)
    try:
        with pytest.raises(LookupError, match="after the first row"):
            await transactions.run(half_then_fail)
    finally:
        transactions.close()
    assert await _cursors(engine) == 0


async def test_a_cancelled_write_keeps_the_turn_until_its_transaction_is_over(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    await migrate(url)
    engine = create_engine(url)
    transactions = Transactions(engine)
    spans: list[tuple[str, float, float]] = []

    def slow(session: Session) -> None:
        started = time.monotonic()
        session.add(DeliveryCursorRow(subscriber="slow", last_event_id=0, updated_at=DETECTED))
        session.flush()
        time.sleep(0.3)
        spans.append(("slow", started, time.monotonic()))

    def quick(session: Session) -> None:
        started = time.monotonic()
        session.execute(text("SELECT 1"))
        spans.append(("quick", started, time.monotonic()))

    try:
        first = asyncio.create_task(transactions.run(slow))
        await asyncio.sleep(0.05)
        first.cancel()
        second = asyncio.create_task(transactions.run(quick))
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        (_, _, slow_done), (_, quick_started, _) = spans
        assert quick_started >= slow_done  # it waited for the turn, not for SQLite's lock
        assert await _cursors(engine) == 1  # the thread finished and committed it
        transactions.close()
        with pytest.raises(RuntimeError, match="closed"):
            await transactions.run(quick)
    finally:
        transactions.close()
        await engine.dispose()


async def _stuck_then_other(postgres_url: str, idle_in_transaction_s: float) -> float:
    """One connection takes ``EVENT_LOCK`` in a transaction and then sends nothing (a node
    frozen mid-transaction); seconds until another connection gets the lock (at most 3)."""
    stuck_engine = create_engine(postgres_url, idle_in_transaction_s=idle_in_transaction_s)
    other_engine = create_engine(postgres_url)
    lock = select(func.pg_advisory_xact_lock(EVENT_LOCK))
    stuck = await stuck_engine.connect()
    try:
        await stuck.begin()
        await stuck.execute(lock)
        async with other_engine.connect() as other:
            started = time.monotonic()
            try:
                await asyncio.wait_for(other.execute(lock), 3.0)
            except TimeoutError:
                return 3.0
            return time.monotonic() - started
    finally:
        with contextlib.suppress(DBAPIError):  # the server ended the stuck session
            await stuck.close()
        await stuck_engine.dispose()
        await other_engine.dispose()


async def test_a_writer_stuck_in_its_transaction_no_longer_holds_the_others_off(
    postgres_database: str,
) -> None:
    # The delivery fail-over test met it: node a was frozen (SIGSTOP) inside a cursor move,
    # holding the lock every writer takes, and node b could not take the lease over.
    assert await _stuck_then_other(postgres_database, idle_in_transaction_s=0.5) < 2.0
    # without the server's timeout (0 disables it) the other writer waits as long as it is stuck
    assert await _stuck_then_other(postgres_database, idle_in_transaction_s=0) == 3.0
