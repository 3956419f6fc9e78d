"""Migrations: ``migrate`` builds the schema the rows expect, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from center import MigrationError, migrate
from center.db import Base


def _schema(connection: Connection) -> tuple[set[str], list[dict[str, object]], set[str]]:
    inspector = inspect(connection)
    columns = {column["name"] for column in inspector.get_columns("cases")}
    uniques = [dict(unique) for unique in inspector.get_unique_constraints("cases")]
    return set(inspector.get_table_names()), uniques, columns


async def test_migration_creates_the_cases_table(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        tables, uniques, columns = await connection.run_sync(_schema)
    assert {"cases", "alembic_version"} <= tables
    assert {"class_code", "district_code", "evidence", "unregistered", "cleared_at"} <= columns
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


async def test_migrate_reports_an_unreachable_database() -> None:
    with pytest.raises(MigrationError, match="cannot migrate"):
        await migrate("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
