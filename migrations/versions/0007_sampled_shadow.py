"""a shadow rollout mirrors a share of the traffic: rollouts.mirror_bp (basis points, 10000 =
every request, the behaviour before)

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mirror_bp", sa.Integer(), server_default="10000", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_column("mirror_bp")
