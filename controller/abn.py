"""Decisions for a rollout with one or several challengers (A/B/n), and for harm under
``--on-harm pause``.

Pure, like :func:`controller.plans.decide`, which it builds on: each challenger still in play
has its own :class:`Report` against the champion (each at ``alpha / k`` for ``k``
challengers, so the family-wise error over every challenger and guardrail stays at ``alpha``;
docs/statistics.md, "Several challengers"). Harm is handled per challenger first; what is left
is the plan's usual progression, judged on the challengers still in play together: a step
advances when every one of them has its samples, and the last step promotes when every one is
non-inferior, choosing the best by the plan's primary metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from controller.plans import HOLD, Action, ActionKind, Position, RolloutPlan, decide
from controller.stats import CONTINUE, HARM, NO_HARM, Evidence, Report
from controller.vocabulary import OnHarm, RolloutState

HARM_STATES = (
    RolloutState.shadowing,
    RolloutState.canary,
    RolloutState.paused,
    RolloutState.paused_on_harm,
)


@dataclass(frozen=True)
class Contender:
    """One challenger still in play at a look: its evidence against the champion and the
    requests it served in the current step."""

    arm: str
    version: int
    report: Report
    in_step: int


def decide_arms(
    plan: RolloutPlan,
    position: Position,
    contenders: Mapping[str, Contender],
    now: datetime,
    challengers: int,
    harm_paused_at: datetime | None = None,
) -> Action:
    """The next move. ``contenders`` are the challengers still active (neither dropped nor
    suspended), in arm order; ``challengers`` is how many the rollout started with (it fixes
    the weights' cap and the alpha split, which dropping one does not change)."""
    if position.state == RolloutState.pending:
        return _capped(plan, decide(plan, position, CONTINUE, "", 0, now), challengers)
    harmful = [c for c in contenders.values() if c.report.verdict == HARM]
    if harmful and position.state in HARM_STATES:
        return _on_harm(plan, harmful, contenders)
    if position.state == RolloutState.paused_on_harm:
        paused_at = harm_paused_at or position.step_started_at
        if (now - paused_at).total_seconds() >= plan.review_timeout_s:
            return Action(
                ActionKind.roll_back,
                f"no review within {plan.review_timeout_s:g}s of the pause on harm",
            )
        return HOLD
    if not contenders:
        if position.state in (RolloutState.shadowing, RolloutState.canary):
            return Action(ActionKind.roll_back, "no challenger left in play")
        return HOLD
    reports = [c.report for c in contenders.values()]
    verdict = NO_HARM if all(r.verdict == NO_HARM for r in reports) else CONTINUE
    reason = "; ".join(f"{c.arm}: {c.report.reason}" for c in contenders.values())
    in_step = min(c.in_step for c in contenders.values())
    action = decide(plan, replace(position, step_start_samples=0), verdict, reason, in_step, now)
    if action.kind != ActionKind.promote:
        return _capped(plan, action, challengers)
    timed_out = (now - position.started_at).total_seconds() >= plan.max_duration_s
    if challengers > 1 and verdict != NO_HARM and not timed_out:
        # With several challengers the champion serves at every step, and the winner is only
        # chosen among challengers each shown non-inferior.
        return HOLD
    winner = best(contenders, plan.primary())
    if len(contenders) == 1 and challengers == 1:
        return replace(action, arms=(winner.arm,))
    return replace(
        action,
        arms=(winner.arm,),
        reason=f"{action.reason}; best by {plan.primary()}: {winner.arm} (v{winner.version})",
    )


def _capped(plan: RolloutPlan, action: Action, challengers: int) -> Action:
    """A step's weight as each of ``challengers`` gets it (:meth:`challenger_weight_bp`)."""
    if action.kind != ActionKind.set_step:
        return action
    return replace(action, weight_bp=plan.challenger_weight_bp(action.step_index, challengers))


def _on_harm(
    plan: RolloutPlan,
    harmful: list[Contender],
    contenders: Mapping[str, Contender],
) -> Action:
    arms = tuple(c.arm for c in harmful)
    reason = "; ".join(
        (c.report.reason or "a guardrail shows harm")
        if len(contenders) == 1
        else f"{c.arm} (v{c.version}): {c.report.reason or 'a guardrail shows harm'}"
        for c in harmful
    )
    if plan.on_harm == OnHarm.pause:
        return Action(ActionKind.pause_on_harm, reason, arms=arms)
    if len(harmful) == len(contenders):
        return Action(ActionKind.roll_back, reason, arms=arms)
    return Action(ActionKind.drop, reason, arms=arms)


def score(evidence: Evidence | None) -> float:
    """How good a challenger is on one guardrail, higher better: minus its effect when larger
    is worse (error rate, latency, shift), the effect itself when smaller is worse (accuracy,
    reward); no estimate yet ranks last."""
    if evidence is None or evidence.effect is None:
        return -math.inf
    return evidence.effect if evidence.worse == "lower" else -evidence.effect


def best(contenders: Mapping[str, Contender], metric: str) -> Contender:
    """The contender with the best primary metric; ties go to the earlier arm."""
    ranked = sorted(
        enumerate(contenders.values()),
        key=lambda item: (-score(item[1].report.guardrail(metric)), item[0]),
    )
    return ranked[0][1]
