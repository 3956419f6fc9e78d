"""who acknowledged each case, and when.

``cases.acknowledged_at`` and ``cases.acknowledged_by``: set by a case's first person's action
(``acknowledge``, 接警确认, or any move) and cleared when the system re-opens it. Existing
cases take them from their audit trail: the first entry by a person after the system's last
re-opening; cases nobody acted on stay unacknowledged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FIRST_BY_A_PERSON = """
    FROM case_transitions t
    WHERE t.case_id = cases.id AND t.actor <> 'system'
      AND NOT EXISTS (
        SELECT 1 FROM case_transitions r
        WHERE r.case_id = cases.id AND r.actor = 'system' AND r.action = 'reopen'
          AND r.id > t.id
      )
    ORDER BY t.id
    LIMIT 1
"""


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("acknowledged_by", sa.String(64), nullable=True))
    op.execute(
        f"UPDATE cases SET acknowledged_at = (SELECT t.at {_FIRST_BY_A_PERSON}),"
        f" acknowledged_by = (SELECT t.actor {_FIRST_BY_A_PERSON})"
    )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("acknowledged_by")
        batch.drop_column("acknowledged_at")
