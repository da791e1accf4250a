"""Per-stratum, per-arm statistics of a rollout, kept in the database.

Each look consumes the deltas gateways have committed so far: merges them into the rollout's
totals and deletes them, in one transaction. A delta committed later (or by a slow replica)
is simply picked up at the next look, so nothing is lost or counted twice, with no id
watermark to race against concurrent commits, and a restarted reconciler starts from the
totals it had.

Totals are kept per stratum (rollout step and time block, as the gateway recorded them), so
the statistics compare the arms within strata and never one arm's data from one period against
the other's from another (docs/statistics.md, "Strata"). A stratum's statistics are small
(sums and sparse histograms), and a plan produces at most ``RolloutPlan.max_strata()`` of
them; past ``MAX_STORED_STRATA`` (a rollout paused for days) new data joins the latest stored
stratum, which keeps the row bounded at the cost of a coarser last stratum."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.stats import ArmStats
from controller.tables import ArmStatsDelta, Rollout
from controller.vocabulary import SHADOW_STEP, WARMUP_BLOCK, Arm

MAX_STORED_STRATA = 256
StratumKey = tuple[int, int]  # (step, block)


@dataclass
class ArmTotals:
    """Each stratum's (champion, challenger) statistics, by (step, block)."""

    strata: dict[StratumKey, tuple[ArmStats, ArmStats]] = field(default_factory=dict)

    @classmethod
    def of(cls, rollout: Rollout) -> ArmTotals:
        observed = rollout.observed or {}
        totals = cls()
        if "strata" in observed:
            for item in observed["strata"]:
                totals.strata[(int(item["step"]), int(item["block"]))] = (
                    ArmStats.from_json(item.get(Arm.champion, {})),
                    ArmStats.from_json(item.get(Arm.challenger, {})),
                )
        elif "arms" in observed:  # written before strata existed: one stratum
            arms = observed["arms"]
            totals.strata[(0, 0)] = (
                ArmStats.from_json(arms.get(Arm.champion, {})),
                ArmStats.from_json(arms.get(Arm.challenger, {})),
            )
        return totals

    def add(self, key: StratumKey, arm: str, part: ArmStats) -> None:
        if key not in self.strata and len(self.strata) >= MAX_STORED_STRATA:
            key = max(self.strata)
        champion, challenger = self.strata.get(key, (ArmStats(), ArmStats()))
        if arm == Arm.champion:
            champion = champion.merge(part)
        elif arm == Arm.challenger:
            challenger = challenger.merge(part)
        self.strata[key] = (champion, challenger)

    @property
    def champion(self) -> ArmStats:
        """All of the champion's statistics, warm-ups included (what people are shown)."""
        return ArmStats.merge_all([c for c, _ in self.strata.values()])

    @property
    def challenger(self) -> ArmStats:
        return ArmStats.merge_all([c for _, c in self.strata.values()])

    def judged(self) -> tuple[list[tuple[ArmStats, ArmStats]], list[str]]:
        """The strata the statistics judge, in time order (warm-ups left out), and labels."""
        keys = sorted(k for k in self.strata if k[1] != WARMUP_BLOCK)
        return [self.strata[k] for k in keys], [_label(k) for k in keys]

    def to_json(self) -> dict[str, dict[str, object]]:
        """Both arms over all strata (the rollout's ``observed.arms``)."""
        return {Arm.champion: self.champion.to_json(), Arm.challenger: self.challenger.to_json()}

    def strata_json(self) -> list[dict[str, Any]]:
        return [
            {
                "step": step,
                "block": block,
                Arm.champion: champion.to_json(),
                Arm.challenger: challenger.to_json(),
            }
            for (step, block), (champion, challenger) in sorted(self.strata.items())
        ]


def _label(key: StratumKey) -> str:
    step, block = key
    where = "shadow" if step == SHADOW_STEP else f"step {step + 1}"
    return f"{where}, block {block + 1}"


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
        totals.add((row.stratum_step, row.stratum_block), row.arm, ArmStats.from_json(row.stats))
    session.execute(delete(ArmStatsDelta).where(ArmStatsDelta.id.in_([r.id for r in rows])))
    return totals, len(rows)
