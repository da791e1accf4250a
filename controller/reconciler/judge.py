"""The reconciler's judgement of one look: a plan and per-stratum totals in, a Report out.

Kept apart from the loop (which does the database work) so that the simulation benchmark
(``benchmarks/sequential.py``) drives exactly the path the reconciler takes."""

from __future__ import annotations

from controller.plans import RolloutPlan
from controller.reconciler.totals import ArmTotals
from controller.stats import Report, evaluate_strata


def judge(plan: RolloutPlan, totals: ArmTotals) -> Report:
    """Every guardrail of the plan on the judged strata (warm-ups left out), with the change
    detector's start points fixed by the plan."""
    strata, labels = totals.judged()
    return evaluate_strata(plan.judged_by(), strata, plan.alpha, plan.max_strata(), labels)
