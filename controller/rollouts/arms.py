"""A rollout's challengers as stored on its row (``Rollout.challengers``): which version each
arm serves, at what weight, and whether it is still in play.

The row's ``challenger_version_id`` and ``challenger_weight_bp`` columns mirror the *lead*
challenger (the first one still in play, or the promoted one), so routers, metrics and readers
that know a single challenger keep working; a rollout stored before A/B/n (no list) reads as
its one challenger."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from controller.tables import Rollout
from controller.vocabulary import Arm, ChallengerStatus


@dataclass(frozen=True)
class ChallengerArm:
    """One challenger of a rollout. ``step_start_samples``: its requests when the current step
    began (a step advances when every challenger in play served ``min_samples`` since)."""

    arm: str
    version_id: int
    weight_bp: int = 0
    status: str = ChallengerStatus.active.value
    reason: str = ""
    step_start_samples: int = 0

    @property
    def in_play(self) -> bool:
        return self.status == ChallengerStatus.active

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChallengerArm:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def challengers_of(rollout: Rollout) -> list[ChallengerArm]:
    """The rollout's challengers in arm order."""
    if rollout.challengers:
        return [ChallengerArm.from_json(item) for item in rollout.challengers]
    return [
        ChallengerArm(
            Arm.challenger.value,
            rollout.challenger_version_id,
            rollout.challenger_weight_bp or 0,
            step_start_samples=rollout.step_start_samples or 0,
        )
    ]


def store(rollout: Rollout, arms: list[ChallengerArm]) -> dict[str, Any]:
    """Writes ``arms`` to the row, and the lead challenger into the single-challenger columns;
    returns those column changes too (to pass on to
    :func:`controller.rollouts.transitions.transition`)."""
    rollout.challengers = [a.to_json() for a in arms]
    lead = next((a for a in arms if a.status == ChallengerStatus.promoted), None)
    lead = lead or next((a for a in arms if a.in_play), None)
    lead = lead or next((a for a in arms if a.status == ChallengerStatus.suspended), arms[0])
    changes = {
        "challenger_version_id": lead.version_id,
        "challenger_weight_bp": sum(a.weight_bp for a in arms),
    }
    for column, value in changes.items():
        setattr(rollout, column, value)
    return changes


def with_status(
    arms: list[ChallengerArm], names: tuple[str, ...], status: str, reason: str
) -> list[ChallengerArm]:
    """``arms`` with those named moved to ``status`` at weight 0."""
    return [
        replace(a, status=status, weight_bp=0, reason=reason) if a.arm in names else a for a in arms
    ]
