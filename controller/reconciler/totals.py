"""Cumulative per-arm statistics of a rollout, kept in the database.

Each look consumes the deltas gateways have committed so far: merges them into the rollout's
totals and deletes them, in one transaction. A delta committed later (or by a slow replica)
is simply picked up at the next look, so nothing is lost or counted twice, with no id
watermark to race against concurrent commits, and a restarted reconciler starts from the
totals it had."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.stats import ArmStats
from controller.tables import ArmStatsDelta, Rollout
from controller.vocabulary import Arm


@dataclass
class ArmTotals:
    champion: ArmStats
    challenger: ArmStats

    @classmethod
    def of(cls, rollout: Rollout) -> ArmTotals:
        arms = (rollout.observed or {}).get("arms", {})
        return cls(
            champion=ArmStats.from_json(arms.get(Arm.champion, {})),
            challenger=ArmStats.from_json(arms.get(Arm.challenger, {})),
        )

    def to_json(self) -> dict[str, dict[str, object]]:
        return {Arm.champion: self.champion.to_json(), Arm.challenger: self.challenger.to_json()}


def consume_deltas(session: Session, rollout: Rollout) -> tuple[ArmTotals, int]:
    """Totals including every delta committed so far; returns them and how many were merged."""
    totals = ArmTotals.of(rollout)
    rows = list(
        session.scalars(
            select(ArmStatsDelta)
            .where(ArmStatsDelta.rollout_id == rollout.id)
            .order_by(ArmStatsDelta.id)
        )
    )
    if not rows:
        return totals, 0
    for row in rows:
        part = ArmStats.from_json(row.stats)
        if row.arm == Arm.champion:
            totals.champion = totals.champion.merge(part)
        elif row.arm == Arm.challenger:
            totals.challenger = totals.challenger.merge(part)
    session.execute(delete(ArmStatsDelta).where(ArmStatsDelta.id.in_([r.id for r in rows])))
    return totals, len(rows)
