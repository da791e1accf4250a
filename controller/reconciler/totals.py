"""Per-stratum, per-arm statistics of a rollout, kept in the database.

Each look consumes the deltas gateways have committed so far: merges them into the rollout's
totals and deletes them, in one transaction. A delta committed later (or by a slow replica)
is simply picked up at the next look, so nothing is lost or counted twice, with no id
watermark to race against concurrent commits, and a restarted reconciler starts from the
totals it had.

Totals are kept per stratum (rollout step and time block, as the gateway recorded them), so
the statistics compare the arms within strata and never one arm's data from one period against
the other's from another (docs/statistics.md, "Strata"). Each stratum and arm is a
``RolloutStratum`` row, and a look rewrites only the rows that received data (usually the
current block's two), so the write per look stays a few kilobytes however long the rollout
runs. A plan produces at most ``RolloutPlan.max_strata()`` strata; past ``MAX_STORED_STRATA``
(a rollout paused for days) new data joins the latest stored stratum, which keeps the rows
bounded at the cost of a coarser last stratum."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.stats import ArmStats
from controller.tables import ArmStatsDelta, Rollout, RolloutStratum
from controller.vocabulary import ARMS, SHADOW_STEP, WARMUP_BLOCK, Arm

MAX_STORED_STRATA = 256
StratumKey = tuple[int, int]  # (step, block)


@dataclass
class ArmTotals:
    """Each stratum's (champion, challenger) statistics, by (step, block)."""

    strata: dict[StratumKey, tuple[ArmStats, ArmStats]] = field(default_factory=dict)
    changed: set[StratumKey] = field(default_factory=set)

    @classmethod
    def load(cls, session: Session, rollout: Rollout) -> ArmTotals:
        """The rollout's stored strata; a rollout whose totals were pooled before strata
        existed (``observed.arms``) continues from them as one stratum."""
        totals = cls()
        rows = session.scalars(
            select(RolloutStratum).where(RolloutStratum.rollout_id == rollout.id)
        )
        for row in rows:
            totals.add((row.step, row.block), row.arm, ArmStats.from_json(row.stats))
        arms = (rollout.observed or {}).get("arms", {})
        pooled = [ArmStats.from_json(arms.get(arm, {})) for arm in ARMS]
        if not totals.strata and not all(stats.is_empty() for stats in pooled):
            for arm, stats in zip(ARMS, pooled, strict=True):
                totals.add((0, 0), arm, stats)
            return totals
        totals.changed.clear()
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
        self.changed.add(key)

    def save(self, session: Session, rollout_id: int) -> None:
        """Writes the strata that changed since loading."""
        if not self.changed:
            return
        existing = {
            (row.step, row.block, row.arm): row
            for row in session.scalars(
                select(RolloutStratum).where(RolloutStratum.rollout_id == rollout_id)
            )
        }
        for step, block in sorted(self.changed):
            for arm, stats in zip(ARMS, self.strata[(step, block)], strict=True):
                row = existing.get((step, block, arm))
                if row is None:
                    session.add(
                        RolloutStratum(
                            rollout_id=rollout_id,
                            step=step,
                            block=block,
                            arm=arm,
                            stats=stats.to_json(),
                        )
                    )
                else:
                    row.stats = stats.to_json()
        self.changed.clear()

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


def _label(key: StratumKey) -> str:
    step, block = key
    where = "shadow" if step == SHADOW_STEP else f"step {step + 1}"
    return f"{where}, block {block + 1}"


def consume_deltas(session: Session, rollout: Rollout) -> tuple[ArmTotals, int]:
    """Totals including every delta committed so far, stored; returns them and how many deltas
    were merged."""
    totals = ArmTotals.load(session, rollout)
    rows = list(
        session.scalars(
            select(ArmStatsDelta)
            .where(ArmStatsDelta.rollout_id == rollout.id)
            .order_by(ArmStatsDelta.id)
        )
    )
    for row in rows:
        totals.add((row.stratum_step, row.stratum_block), row.arm, ArmStats.from_json(row.stats))
    if rows:
        session.execute(delete(ArmStatsDelta).where(ArmStatsDelta.id.in_([r.id for r in rows])))
    totals.save(session, rollout.id)
    return totals, len(rows)
