"""What a guardrail concluded at one look, and the verdict over all guardrails."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["harm", "no_harm_within_margin", "continue"]
HARM: Verdict = "harm"
NO_HARM: Verdict = "no_harm_within_margin"
CONTINUE: Verdict = "continue"

# Which way is bad: a larger effect ("higher"), a smaller one ("lower"), or any change of a
# distribution ("shift", where the effect is a total-variation distance).
Worse = Literal["higher", "lower", "shift"]


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Evidence:
    """One guardrail's anytime-valid evidence.

    ``p_value`` is the always-valid p-value for harm (``None`` before there is enough data to
    test); ``[ci_low, ci_high]`` is a confidence sequence for ``effect`` (challenger minus
    champion in the metric's units; for shift metrics the total-variation distance) that covers
    the truth at every look simultaneously with probability ``1 - alpha``. ``alpha`` is this
    guardrail's share of the family-wise error rate. ``detail`` says in words what was compared
    or what is still missing.
    """

    metric: str
    verdict: Verdict
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    effect: float | None
    margin: float
    n_champion: int
    n_challenger: int
    alpha: float
    worse: Worse = "higher"
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-safe (infinities and NaN become ``None``). ``estimate``/``lower``/``upper``
        repeat ``effect``/``ci_low``/``ci_high`` under the names the CLI table reads."""
        effect, low, high = _finite(self.effect), _finite(self.ci_low), _finite(self.ci_high)
        return {
            "metric": self.metric,
            "verdict": self.verdict,
            "p_value": _finite(self.p_value),
            "effect": effect,
            "ci_low": low,
            "ci_high": high,
            "estimate": effect,
            "lower": low,
            "upper": high,
            "margin": _finite(self.margin),
            "worse": self.worse,
            "n_champion": self.n_champion,
            "n_challenger": self.n_challenger,
            "alpha": _finite(self.alpha),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Report:
    """The verdict over all guardrails: ``harm`` if any guardrail shows harm,
    ``no_harm_within_margin`` if all do, else ``continue``. ``reason`` is one line for humans."""

    verdict: Verdict
    evidence: tuple[Evidence, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "guardrails": [e.to_json() for e in self.evidence],
        }
