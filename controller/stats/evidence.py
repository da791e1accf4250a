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


class Evidence(BaseModel):
    """One guardrail's anytime-valid evidence.

    ``p_value`` is the always-valid p-value for harm (``None`` before there is enough data to
    test); ``[ci_low, ci_high]`` is a confidence sequence for ``effect`` (challenger minus
    champion in the metric's units; for shift metrics the total-variation distance) that covers
    the truth at every look simultaneously with probability ``1 - alpha``. ``alpha`` is this
    guardrail's share of the family-wise error rate. ``detail`` says in words what was compared
    or what is still missing. Non-finite numbers are stored as ``None`` (JSON has no infinity).
    """

    model_config = ConfigDict(frozen=True)

    metric: str = Field(description="Guardrail metric, e.g. error_rate")
    verdict: Verdict
    p_value: float | None = Field(description="Anytime-valid p-value for harm")
    effect: float | None = Field(description="Challenger minus champion, in the metric's units")
    ci_low: float | None = Field(description="Lower end of the confidence sequence for effect")
    ci_high: float | None = Field(description="Upper end of the confidence sequence for effect")
    margin: float = Field(description="Non-inferiority margin, in the effect's units")
    worse: Worse = Field(default="higher", description="Which direction of effect is harm")
    n_champion: int
    n_challenger: int
    alpha: float = Field(description="This guardrail's share of the family-wise error rate")
    detail: str = ""

    @field_validator("p_value", "effect", "ci_low", "ci_high", mode="after")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None


class Report(BaseModel):
    """The verdict over all guardrails: ``harm`` if any guardrail shows harm,
    ``no_harm_within_margin`` if all do, else ``continue``. ``reason`` is one line for humans."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    reason: str
    guardrails: tuple[Evidence, ...]

    def guardrail(self, metric: str) -> Evidence | None:
        return next((e for e in self.guardrails if e.metric == metric), None)
