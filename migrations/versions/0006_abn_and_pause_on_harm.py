"""A/B/n rollouts and pause on harm: rollouts list their challengers and remember when harm
paused them; observations keep every challenger's evidence. Existing rollouts get their one
challenger listed, with its weight and an outcome-consistent status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import registry.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("challengers", _JSON, nullable=True))
        batch_op.add_column(
            sa.Column("harm_paused_at", registry.db.base.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("rollout_observations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("challengers", _JSON, nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, challenger_version_id, challenger_weight_bp, state, step_start_samples "
            "FROM rollouts"
        )
    ).all()
    rollouts = sa.table("rollouts", sa.column("id", sa.Integer), sa.column("challengers", _JSON))
    for rollout_id, version_id, weight_bp, state, step_start_samples in rows:
        status = {"promoted": "promoted", "rolled_back": "dropped"}.get(state, "active")
        arm = {
            "arm": "challenger",
            "version_id": version_id,
            "weight_bp": weight_bp or 0,
            "status": status,
            "reason": "",
            "step_start_samples": step_start_samples or 0,
        }
        connection.execute(
            rollouts.update().where(rollouts.c.id == rollout_id).values(challengers=[arm])
        )


def downgrade() -> None:
    # Earlier code knows no paused_on_harm: such a rollout waits as a plain pause (its
    # challenger stays at weight 0 until a person resumes or rolls it back).
    op.execute(
        "UPDATE rollouts SET resume_state = COALESCE(resume_state, 'canary'), state = 'paused' "
        "WHERE state = 'paused_on_harm'"
    )
    with op.batch_alter_table("rollout_observations", schema=None) as batch_op:
        batch_op.drop_column("challengers")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_column("harm_paused_at")
        batch_op.drop_column("challengers")
