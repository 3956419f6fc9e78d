"""cases: one row per emergency case.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXED = ("opened_at", "status", "class_code", "station_id", "sensor_id")


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("class_code", sa.String(4), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("major_name", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("sensor_id", sa.String(128), nullable=False),
        sa.Column("sensor_kind", sa.String(16), nullable=False),
        sa.Column("component_id", sa.String(16), nullable=True),
        sa.Column("grid_code", sa.String(14), nullable=True),
        sa.Column("district_code", sa.String(6), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("trigger_value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("unregistered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
        sa.UniqueConstraint("rule_id", "sensor_id", "started_at", name="uq_cases_alert"),
    )
    for column in _INDEXED:
        op.create_index(f"ix_cases_{column}", "cases", [column])


def downgrade() -> None:
    for column in _INDEXED:
        op.drop_index(f"ix_cases_{column}", table_name="cases")
    op.drop_table("cases")
