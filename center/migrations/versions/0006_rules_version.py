"""the version of the rule set that opened each case.

``cases.rules_version``: nullable (cases opened before this migration, and by a backtest, have
none); ``GET /api/v1/rules`` lists every version with its text and diff.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("rules_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("rules_version")
