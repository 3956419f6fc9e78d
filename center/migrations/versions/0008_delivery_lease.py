"""delivery leases: which node delivers to a subscriber, and until when.

``delivery_cursors.owner`` and ``delivery_cursors.lease_until``: the node that holds a
subscriber's delivery lease renews it while it delivers; another node configured with the same
subscriber waits until the lease is released or runs out, then takes over from the cursor.
Existing cursors start with no holder.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 15:20:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_cursors") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_cursors") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("owner")
