"""champion watch: per-model watch policies, each champion's watch state and its judged blocks,
and an index for the champion's statistics outside rollouts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import registry.db.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _time() -> registry.db.base.UTCDateTime:
    return registry.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "watch_policies",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("policy", _json(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_watch_policies_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_watch_policies")),
    )
    op.create_table(
        "champion_watches",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("previous_version_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_since", _time(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("checks", _json(), nullable=False),
        sa.Column("detectors", _json(), nullable=False),
        sa.Column("open_blocks", _json(), nullable=False),
        sa.Column("next_block", sa.BigInteger(), nullable=True),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_champion_watches_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_champion_watches_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_champion_watches")),
    )
    op.create_table(
        "champion_observations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_champion_observations_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_champion_observations")),
    )
    with op.batch_alter_table("champion_observations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_champion_observations_model_id"), ["model_id"], unique=False
        )
    with op.batch_alter_table("arm_stats_deltas", schema=None) as batch_op:
        batch_op.create_index(
            "ix_arm_stats_deltas_model_id_stratum_step",
            ["model_id", "stratum_step"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("arm_stats_deltas", schema=None) as batch_op:
        batch_op.drop_index("ix_arm_stats_deltas_model_id_stratum_step")
    with op.batch_alter_table("champion_observations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_champion_observations_model_id"))
    op.drop_table("champion_observations")
    op.drop_table("champion_watches")
    op.drop_table("watch_policies")
