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

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.stats import ArmStats
from controller.tables import ArmStatsDelta, Rollout, RolloutStratum
from controller.vocabulary import ARMS, SHADOW_STEP, WARMUP_BLOCK, Arm

MAX_STORED_STRATA = 256
StratumKey = tuple[int, int]  # (step, block)
ArmsOfStratum = dict[str, ArmStats]  # by arm: the champion and each challenger


@dataclass
class ArmTotals:
    """Each stratum's statistics of every arm, by (step, block). Built from a mapping of
    strata to arm dicts, or to (champion, challenger) pairs as a one-challenger rollout has."""

    strata: dict[StratumKey, ArmsOfStratum] = field(default_factory=dict)
    changed: set[StratumKey] = field(default_factory=set)

    def __post_init__(self) -> None:
        given: Mapping[StratumKey, object] = self.strata
        self.strata = {key: _as_arms(arms) for key, arms in given.items()}

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
        pooled = {arm: ArmStats.from_json(stats) for arm, stats in arms.items()}
        if not totals.strata and not all(stats.is_empty() for stats in pooled.values()):
            for arm, stats in pooled.items():
                totals.add((0, 0), arm, stats)
            return totals
        totals.changed.clear()
        return totals

    def add(self, key: StratumKey, arm: str, part: ArmStats) -> None:
        if key not in self.strata and len(self.strata) >= MAX_STORED_STRATA:
            key = max(self.strata)
        arms = self.strata.setdefault(key, {name: ArmStats() for name in ARMS})
        arms[arm] = arms.get(arm, ArmStats()).merge(part)
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
            for arm, stats in self.strata[(step, block)].items():
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

    def arm(self, name: str) -> ArmStats:
        """All of one arm's statistics, warm-ups included (what people are shown)."""
        return ArmStats.merge_all([a[name] for a in self.strata.values() if name in a])

    @property
    def champion(self) -> ArmStats:
        return self.arm(Arm.champion)

    @property
    def challenger(self) -> ArmStats:
        return self.arm(Arm.challenger)

    def arms(self) -> list[str]:
        """Every arm with statistics: the champion first, then the challengers in order."""
        names = {name for arms in self.strata.values() for name in arms} | set(ARMS)
        return sorted(names, key=lambda n: (n != Arm.champion, len(n), n))

    def judged(
        self, challenger: str = Arm.challenger.value
    ) -> tuple[list[tuple[ArmStats, ArmStats]], list[str]]:
        """The strata the statistics judge for ``challenger`` against the champion, in time
        order (warm-ups left out), and their labels."""
        keys = sorted(k for k in self.strata if k[1] != WARMUP_BLOCK)
        empty = ArmStats()
        pairs = [
            (self.strata[k].get(Arm.champion, empty), self.strata[k].get(challenger, empty))
            for k in keys
        ]
        return pairs, [_label(k) for k in keys]

    def to_json(self) -> dict[str, dict[str, object]]:
        """Every arm over all strata (the rollout's ``observed.arms``)."""
        return {name: self.arm(name).to_json() for name in self.arms()}


def _as_arms(arms: object) -> ArmsOfStratum:
    if isinstance(arms, dict):
        return dict(arms)
    assert isinstance(arms, tuple)
    return dict(zip(ARMS, arms, strict=True))


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
