"""Migrations: ``migrate`` builds the schema the rows expect, on both backends."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from center import CaseStore, MigrationError, create_engine, migrate
from center.db import Base
from center.migrate import alembic_config
from tests.center.factories import DETECTED, alert, sensor_info


def _schema(connection: Connection) -> tuple[set[str], list[dict[str, object]], set[str]]:
    inspector = inspect(connection)
    columns = {column["name"] for column in inspector.get_columns("cases")}
    uniques = [dict(unique) for unique in inspector.get_unique_constraints("cases")]
    return set(inspector.get_table_names()), uniques, columns


async def test_migration_creates_the_cases_table(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        tables, uniques, columns = await connection.run_sync(_schema)
    assert {"cases", "case_transitions", "case_events", "alembic_version"} <= tables
    assert {"class_code", "district_code", "evidence", "unregistered", "cleared_at"} <= columns
    assert {"step", "detected_late", "ended_before_seen"} <= columns
    assert [(u["name"], u["column_names"]) for u in uniques] == [
        ("uq_cases_alert", ["rule_id", "sensor_id", "started_at"])
    ]


async def test_migration_matches_the_rows(engine: AsyncEngine) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_migrate_is_idempotent(database_url: str) -> None:
    await migrate(database_url)


async def test_migrate_creates_the_sqlite_directory(tmp_path: Path) -> None:
    db_file = tmp_path / "deep" / "er" / "cases.db"
    await migrate(f"sqlite+aiosqlite:///{db_file}")
    assert db_file.is_file()


async def test_a_migrated_sqlite_file_opens_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    """Migrating leaves the file in WAL, so the store's first connections need not switch it:
    switching waits for the file to itself, and another writer (here holding its write lock
    throughout) made it fail with "database is locked" (CI: four engines opening a freshly
    migrated file at once)."""
    db_file = tmp_path / "cases.db"
    url = f"sqlite+aiosqlite:///{db_file}"
    await migrate(url)
    writer = sqlite3.connect(db_file, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM cases")
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                count = await connection.scalar(text("SELECT count(*) FROM cases"))
            assert count == 0
        finally:
            await engine.dispose()
    finally:
        writer.close()


async def test_migrate_reports_an_unreachable_database() -> None:
    with pytest.raises(MigrationError, match="cannot migrate"):
        await migrate("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")


async def _alembic(action: str, database_url: str, revision: str) -> None:
    operation = command.upgrade if action == "upgrade" else command.downgrade
    await asyncio.to_thread(operation, alembic_config(database_url), revision)


async def test_0003_keeps_existing_cases_at_discover(empty_database_url: str) -> None:
    """A store with cases from before the lifecycle: they start at discover, with no history
    made up and an empty event log; and 0003 goes down and up again."""
    await _alembic("upgrade", empty_database_url, "0002")
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO cases (rule_id, title, severity, category, class_code,"
                    " class_name, major_name, station_id, sensor_id, sensor_kind, address,"
                    " status, field, trigger_value, threshold, started_at, opened_at,"
                    " detected_at, updated_at, evidence, unregistered) VALUES ('cover-tilt',"
                    " 't', 'urgent', 'component', '0103', '雨水井盖', '公用设施', 'st-1',"
                    " 'st-1.cover-01', 'cover', '', 'cleared', 'tilt_deg', 35, 15,"
                    " :t, :t, :t, :t, '[]', false)"
                ),
                {"t": DETECTED},
            )
        await migrate(empty_database_url)
        await _alembic("downgrade", empty_database_url, "0002")  # the case survives both ways
        await migrate(empty_database_url)
        store = CaseStore(engine)
        (old,), _ = await store.list_cases()
        assert (old.step, old.detected_late, old.ended_before_seen) == ("discover", False, False)
        assert (old.status, old.awaiting_verification) == ("cleared", True)
        assert await store.history(old.id) == []
        assert await store.newest_event_id() == 0
        new = await store.record_alert(alert(), sensor_info(), DETECTED)
        assert new is not None
        assert new.step == "register"
        assert await store.newest_event_id() == 2
    finally:
        await engine.dispose()


ACKS = {  # each case's audit trail (actor, action); the acknowledgement 0007 reads off it
    "st-1.never": ([("system", "discover"), ("system", "register")], None),
    "st-1.moved": (
        [("system", "discover"), ("王工", "register"), ("李工", "dispatch")],
        ("王工", 1),
    ),
    "st-1.reopened": (
        [("system", "discover"), ("王工", "register"), ("system", "reopen"),
         ("李工", "acknowledge")],
        ("李工", 3),
    ),
    "st-1.waiting": ([("system", "discover"), ("王工", "register"), ("system", "reopen")], None),
}  # fmt: skip


async def test_0007_reads_each_cases_acknowledgement_off_its_audit_trail(
    empty_database_url: str,
) -> None:
    """A person's first entry since the system last re-opened the case acknowledged it."""
    await _alembic("upgrade", empty_database_url, "0006")
    engine = create_engine(empty_database_url)
    t = DETECTED.replace(tzinfo=None)
    try:
        async with engine.begin() as connection:
            for sensor, (trail, _) in ACKS.items():
                case_id = (
                    await connection.execute(
                        text(
                            "INSERT INTO cases (rule_id, title, severity, category, class_code,"
                            " class_name, major_name, station_id, sensor_id, sensor_kind,"
                            " address, status, field, trigger_value, threshold, started_at,"
                            " opened_at, detected_at, updated_at, evidence, unregistered, step)"
                            " VALUES ('cover-tilt', 't', 'urgent', 'component', '0103', '雨水井盖',"
                            " '公用设施', 'st-1', :sensor, 'cover', '', 'open', 'tilt_deg', 35,"
                            " 15, :t, :t, :t, :t, '[]', false, 'register') RETURNING id"
                        ),
                        {"sensor": sensor, "t": t},
                    )
                ).scalar_one()
                for n, (actor, action) in enumerate(trail):
                    await connection.execute(
                        text(
                            "INSERT INTO case_transitions (case_id, at, actor, action, from_step,"
                            " to_step, note) VALUES (:case, :at, :actor, :action, NULL,"
                            " 'register', '')"
                        ),
                        {"case": case_id, "at": t + timedelta(minutes=n), "actor": actor,
                         "action": action},
                    )  # fmt: skip
        await _alembic("upgrade", empty_database_url, "0007")
        store = CaseStore(engine)
        cases, _ = await store.list_cases()
        found = {c.sensor_id: (c.acknowledged_by, c.acknowledged_at) for c in cases}
        assert found == {
            sensor: (None, None) if ack is None else (ack[0], DETECTED + timedelta(minutes=ack[1]))
            for sensor, (_, ack) in ACKS.items()
        }
        await _alembic("downgrade", empty_database_url, "0006")
        async with engine.connect() as connection:
            _, _, columns = await connection.run_sync(_schema)
        assert not {"acknowledged_at", "acknowledged_by"} & columns
    finally:
        await engine.dispose()


def test_the_migrations_are_one_line_of_history() -> None:
    """Two changes that both start from one revision leave two heads, and ``upgrade head``
    then fails for everyone: chain them."""
    from alembic.script import ScriptDirectory

    from center.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()
