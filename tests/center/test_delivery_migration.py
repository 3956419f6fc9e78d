"""Migration 0005 on a store with cases: priorities from their severities, no deadline armed
for cases dispatched before it, the cursor table; and down and up again."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import inspect, text

from center import create_engine
from center.migrate import alembic_config
from tests.center.factories import DETECTED

SEVERITIES = ("critical", "urgent", "warning", "maintenance")


async def _alembic(action: str, database_url: str, revision: str) -> None:
    operation = command.upgrade if action == "upgrade" else command.downgrade
    await asyncio.to_thread(operation, alembic_config(database_url), revision)


async def test_0005_gives_existing_cases_their_severitys_priority(empty_database_url: str) -> None:
    await _alembic("upgrade", empty_database_url, "0003")
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            for n, severity in enumerate(SEVERITIES):
                await connection.execute(
                    text(
                        "INSERT INTO cases (rule_id, title, severity, category, class_code,"
                        " class_name, major_name, station_id, sensor_id, sensor_kind, address,"
                        " status, field, trigger_value, threshold, started_at, opened_at,"
                        " detected_at, updated_at, evidence, unregistered, step) VALUES"
                        " ('cover-tilt', 't', :severity, 'component', '0103', '雨水井盖',"
                        " '公用设施', 'st-1', :sensor, 'cover', '', 'open', 'tilt_deg', 35, 15,"
                        " :t, :t, :t, :t, '[]', false, 'dispatch')"
                    ),
                    {"severity": severity, "sensor": f"st-1.cover-{n}", "t": DETECTED},
                )
        await _alembic("upgrade", empty_database_url, "0005")
        for _ in range(2):  # and again after going down and up
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(
                        text("SELECT severity, priority, ack_due_at, escalations FROM cases")
                    )
                ).all()
                tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            assert sorted(rows) == [
                ("critical", 4, None, 0),
                ("maintenance", 1, None, 0),
                ("urgent", 3, None, 0),
                ("warning", 2, None, 0),
            ]
            assert "delivery_cursors" in tables
            await _alembic("downgrade", empty_database_url, "0003")
            async with engine.connect() as connection:
                columns = await connection.run_sync(
                    lambda sync: {c["name"] for c in inspect(sync).get_columns("cases")}
                )
            assert "priority" not in columns
            await _alembic("upgrade", empty_database_url, "0005")
    finally:
        await engine.dispose()
