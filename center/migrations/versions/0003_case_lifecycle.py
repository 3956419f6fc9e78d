"""cases: lifecycle step, backlog marks, the audit trail and the event log.

``cases.step`` (existing cases start at ``discover``: nobody has registered them),
``detected_late`` and ``ended_before_seen``, an index on ``detected_at`` (cases are listed by
arrival); ``case_transitions`` (who moved a case, when, from which step to which) and
``case_events`` (every change, the live stream's ids; it starts empty: no history is made up
for existing cases).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("step", sa.String(16), nullable=False, server_default="discover")
        )
        batch.add_column(
            sa.Column("detected_late", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("ended_before_seen", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index("ix_cases_detected_at", ["detected_at"])
        batch.create_index("ix_cases_step", ["step"])
    op.create_table(
        "case_transitions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_step", sa.String(16), nullable=True),
        sa.Column("to_step", sa.String(16), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_case_transitions"),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name="fk_case_transitions_case_id_cases"
        ),
    )
    op.create_index("ix_case_transitions_case_id", "case_transitions", ["case_id"])
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_case_events"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_case_events_case_id_cases"),
        sqlite_autoincrement=True,  # ids never reused: the stream resumes from them
    )
    op.create_index("ix_case_events_case_id", "case_events", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_case_events_case_id", table_name="case_events")
    op.drop_table("case_events")
    op.drop_index("ix_case_transitions_case_id", table_name="case_transitions")
    op.drop_table("case_transitions")
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_step")
        batch.drop_index("ix_cases_detected_at")
        batch.drop_column("ended_before_seen")
        batch.drop_column("detected_late")
        batch.drop_column("step")
