"""gateway statistics carry their stratum (rollout step and time block)

The reconciler compares the arms within strata, so each flushed delta records the step it was
measured in (-1 while shadowing) and its time block within the step (-1 for the warm-up).
Rows written before have neither and count as step 0, block 0. The reconciler keeps its
per-stratum totals in ``rollout_strata``, one row per (rollout, step, block, arm); a rollout
whose totals were pooled before (``observed.arms``) continues from them as one stratum.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollout_strata",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column(
            "stats",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name=op.f("fk_rollout_strata_rollout_id_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_strata")),
        sa.UniqueConstraint(
            "rollout_id",
            "step",
            "block",
            "arm",
            name=op.f("uq_rollout_strata_rollout_id_step_block_arm"),
        ),
    )
    with op.batch_alter_table("rollout_strata") as batch:
        batch.create_index(batch.f("ix_rollout_strata_rollout_id"), ["rollout_id"], unique=False)
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
    with op.batch_alter_table("rollout_strata") as batch:
        batch.drop_index(batch.f("ix_rollout_strata_rollout_id"))
    op.drop_table("rollout_strata")
