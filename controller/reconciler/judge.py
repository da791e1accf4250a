"""Ask the statistics engine about a rollout: the plan names the guardrails, the totals hold
what both arms did, and the answer is a verdict plus the evidence that caused it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.plans import RolloutPlan
from controller.reconciler.totals import ArmTotals
from controller.stats import Guardrail, evaluate, parse_guardrails
from registry.errors import InvalidInput


@dataclass(frozen=True)
class Judgement:
    """The guardrails' overall verdict (``harm``, ``no_harm_within_margin``, ``continue``), a
    one-line reason, and the full evidence (stored with every transition and observation)."""

    verdict: str
    reason: str
    evidence: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Per guardrail, what a time series of looks needs (status and the HTML report)."""
        return {
            item["metric"]: {
                key: item.get(key)
                for key in ("verdict", "p_value", "ci_low", "ci_high", "effect", "margin")
            }
            for item in self.evidence.get("guardrails", [])
        }


def guardrails_of(plan: RolloutPlan) -> tuple[Guardrail, ...]:
    try:
        return parse_guardrails(plan.guardrails, plan.guardrail_options)
    except ValueError as error:
        raise InvalidInput(str(error)) from None


def check_guardrails(plan: RolloutPlan) -> None:
    """Refuse a plan whose guardrails the statistics engine does not know (a 422, not a
    rollout that fails at its first look)."""
    guardrails_of(plan)


def judge(plan: RolloutPlan, totals: ArmTotals) -> Judgement:
    report = evaluate(guardrails_of(plan), totals.champion, totals.challenger, plan.alpha)
    return Judgement(verdict=report.verdict, reason=report.reason, evidence=report.to_json())
