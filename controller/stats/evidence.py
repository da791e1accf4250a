"""What a guardrail concluded at one look, and the verdict over all guardrails.

This is the one schema of evidence in Shelf: the statistics engine returns it, the reconciler
stores it (``Report.model_dump(mode="json")``), the API serves it (its OpenAPI schema shows
these fields), and the CLI table, the quickstart and the HTML report read it back with
``Report.model_validate``. One name per quantity: ``effect`` and its confidence sequence
``[ci_low, ci_high]``."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Verdict = Literal["harm", "no_harm_within_margin", "continue"]
HARM: Verdict = "harm"
NO_HARM: Verdict = "no_harm_within_margin"
CONTINUE: Verdict = "continue"

# Which way is bad: a larger effect ("higher"), a smaller one ("lower"), or any change of a
# distribution ("shift", where the effect is a total-variation distance).
Worse = Literal["higher", "lower", "shift"]

# How an effect reads: a difference of rates (shown in percentage points), a difference of log
# values (shown as a percentage change), a difference of means, or a total-variation distance.
EffectUnit = Literal["rate", "log_ratio", "mean", "tv"]


def display_value(value: float, unit: EffectUnit) -> float:
    """An effect in the units people read: percentage points for rates, percentage change for
    log ratios, unchanged otherwise."""
    if unit == "rate":
        return value * 100.0
    if unit == "log_ratio":
        return math.expm1(value) * 100.0
    return value


DISPLAY_UNITS: dict[str, str] = {"rate": "pp", "log_ratio": "% change", "mean": "", "tv": "TV"}


def format_effect(value: float | None, unit: EffectUnit, signed: bool = True) -> str:
    """An effect as people read it: ``+0.62 pp``, ``+7.3 %``, ``+0.012``, ``TV 0.031``."""
    if value is None:
        return "-"
    sign = "+" if signed else ""
    if unit == "rate":
        return f"{value * 100:{sign}.3g} pp"
    if unit == "log_ratio":
        return f"{math.expm1(value) * 100:{sign}.3g} %"
    if unit == "tv":
        return f"TV {value:.3g}"
    return f"{value:{sign}.4g}"


class Evidence(BaseModel):
    """One guardrail's anytime-valid evidence.

    ``p_value`` is the always-valid p-value for harm (``None`` before there is enough data to
    test); ``[ci_low, ci_high]`` is a confidence sequence for ``effect`` (challenger minus
    champion in the metric's units; for shift metrics the total-variation distance) that covers
    the truth at every look simultaneously; each end is a one-sided confidence sequence at
    level ``alpha``, so harm (the harm-side end beyond ``tolerance``) and non-inferiority (the
    other end within ``margin``) are read off the printed interval. ``alpha`` is this guardrail's
    share of the family-wise error rate. ``effect_conservative`` is the end nearer zero: at an
    early stop ``effect`` overstates the truth (stopping picks the runs where noise went the
    harm way), the conservative end does not, with probability ``1 - alpha``. ``detail`` says in
    words what was compared or what is still missing. Non-finite numbers are stored as ``None``
    (JSON has no infinity).
    """

    model_config = ConfigDict(frozen=True)

    metric: str = Field(description="Guardrail metric, e.g. error_rate")
    verdict: Verdict
    p_value: float | None = Field(description="Anytime-valid p-value for harm")
    effect: float | None = Field(description="Challenger minus champion, in the metric's units")
    ci_low: float | None = Field(description="Lower end of the confidence sequence for effect")
    ci_high: float | None = Field(description="Upper end of the confidence sequence for effect")
    margin: float = Field(description="Non-inferiority margin, in the effect's units")
    tolerance: float | None = Field(
        default=None, description="Harm threshold, in the effect's units (at least the margin)"
    )
    effect_conservative: float | None = Field(
        default=None,
        description="End of the confidence sequence nearer zero: an estimate that early "
        "stopping does not inflate",
    )
    unit: EffectUnit = Field(default="mean", description="How the effect reads")
    worse: Worse = Field(default="higher", description="Which direction of effect is harm")
    n_champion: int
    n_challenger: int
    alpha: float = Field(description="This guardrail's share of the family-wise error rate")
    detail: str = ""

    @field_validator(
        "p_value", "effect", "ci_low", "ci_high", "effect_conservative", "tolerance", mode="after"
    )
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    def shown(self, value: float | None, signed: bool = True) -> str:
        return format_effect(value, self.unit, signed)

    def summary(self) -> str:
        """Effect and interval in readable units, e.g. ``+0.62 pp [+0.21 pp, +1.0 pp]``; at a
        harm verdict the conservative end is named."""
        if self.effect is None:
            return self.detail
        text = f"{self.shown(self.effect)} [{self.shown(self.ci_low)}, {self.shown(self.ci_high)}]"
        if self.verdict == HARM and self.effect_conservative is not None:
            text += f", at least {self.shown(self.effect_conservative)}"
        return text


class Report(BaseModel):
    """The verdict over all guardrails: ``harm`` if any guardrail shows harm,
    ``no_harm_within_margin`` if all do, else ``continue``. ``reason`` is one line for humans."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    reason: str
    guardrails: tuple[Evidence, ...]

    def guardrail(self, metric: str) -> Evidence | None:
        return next((e for e in self.guardrails if e.metric == metric), None)
