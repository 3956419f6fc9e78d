"""delivery cursors (webhooks, case events on MQTT) and acknowledgement deadlines.

``delivery_cursors``: one row per subscriber, the id of the last ``case_events`` row it
confirmed (and its last permanent refusal). ``cases.priority`` (existing cases start at their
severity's level: maintenance 1, warning 2, urgent 3, critical 4), ``cases.ack_due_at`` (no
deadline is armed for cases dispatched before this migration: escalating them all at the
upgrade would be noise) and ``cases.escalations``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-20 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("ack_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("escalations", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_cases_ack_due_at", ["ack_due_at"])
    op.execute(
        "UPDATE cases SET priority = CASE severity WHEN 'critical' THEN 4 WHEN 'urgent' THEN 3"
        " WHEN 'warning' THEN 2 ELSE 1 END"
    )
    op.create_table(
        "delivery_cursors",
        sa.Column("subscriber", sa.String(64), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refused_event_id", sa.Integer(), nullable=True),
        sa.Column("refused_reason", sa.String(500), nullable=True),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subscriber", name="pk_delivery_cursors"),
    )


def downgrade() -> None:
    op.drop_table("delivery_cursors")
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_ack_due_at")
        batch.drop_column("escalations")
        batch.drop_column("ack_due_at")
        batch.drop_column("priority")
