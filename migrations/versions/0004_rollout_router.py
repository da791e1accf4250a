"""rollouts remember their router, what it last acknowledged, and how far a metric source
was read

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import registry.db.base

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "router",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("routed_revision", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("routed_weight_bp", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("routed_at", registry.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("routing_error", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("metrics_until", registry.db.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_column("metrics_until")
        batch_op.drop_column("routing_error")
        batch_op.drop_column("routed_at")
        batch_op.drop_column("routed_weight_bp")
        batch_op.drop_column("routed_revision")
        batch_op.drop_column("router")
