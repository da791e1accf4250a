"""The reconciler's judgement of one look: a plan and per-stratum totals in, a Report out.

Kept apart from the loop (which does the database work) so that the simulation benchmarks
(``benchmarks/sequential.py``, ``benchmarks/abn.py``) drive exactly the path the reconciler
takes."""

from __future__ import annotations

from collections.abc import Sequence

from controller.plans import RolloutPlan
from controller.reconciler.totals import ArmTotals
from controller.stats import Report, evaluate_strata
from controller.vocabulary import Arm


def judge(
    plan: RolloutPlan, totals: ArmTotals, arm: str = Arm.challenger.value, challengers: int = 1
) -> Report:
    """Every guardrail of the plan for challenger ``arm`` against the champion on the judged
    strata (warm-ups left out), with the change detector's start points fixed by the plan.
    With several challengers each is judged at ``alpha / challengers`` (Bonferroni over the
    challengers; the guardrails split that share again), so the family-wise error over every
    challenger and guardrail stays at the plan's ``alpha``."""
    strata, labels = totals.judged(arm)
    alpha = plan.alpha / max(challengers, 1)
    return evaluate_strata(plan.judged_by(), strata, alpha, plan.max_strata(), labels)


def judge_all(plan: RolloutPlan, totals: ArmTotals, arms: Sequence[str]) -> dict[str, Report]:
    """:func:`judge` for each of a rollout's challenger ``arms`` (all it started with)."""
    return {arm: judge(plan, totals, arm, len(arms)) for arm in arms}
