"""gateway statistics carry their stratum (rollout step and time block)

The reconciler compares the arms within strata, so each flushed delta records the step it was
measured in (-1 while shadowing) and its time block within the step (-1 for the warm-up).
Rows written before have neither and count as step 0, block 0.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("arm_stats_deltas") as batch:
        batch.add_column(
            sa.Column("stratum_step", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("stratum_block", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("arm_stats_deltas") as batch:
        batch.drop_column("stratum_block")
        batch.drop_column("stratum_step")
