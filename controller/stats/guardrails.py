"""Guardrails: which metrics judge a rollout, with which thresholds and tuning.

Three zones per guardrail (docs/statistics.md, "Three zones"): harm when the challenger is shown
worse by more than ``tolerance``, non-inferior when it is shown worse by less than ``margin``,
otherwise the rollout continues until its plan's timeout policy. ``tolerance >= margin``, so no
true effect can be both. Either threshold is absolute (in the effect's units) or relative to the
champion (``"+20%"``), since teams think in relative terms.

What each guardrail compares is in :mod:`controller.stats.comparisons`; how their verdicts
combine is in :mod:`controller.stats.evaluation`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.stats.evidence import Worse

__all__ = [
    "DEFAULT_GUARDRAILS",
    "GUARDRAIL_METRICS",
    "Guardrail",
    "Threshold",
    "parse_guardrails",
    "parse_threshold",
]


@dataclass(frozen=True)
class Threshold:
    """A margin or tolerance: ``value`` in the effect's units, or, when ``relative``, a fraction
    of the champion's level of the metric (for latency, a ratio: ``log(1 + value)``)."""

    value: float
    relative: bool = False

    def resolve(self, metric: str, champion_level: float) -> float:
        """The threshold in effect units, given the champion's current level of the metric."""
        if not self.relative:
            return self.value
        if metric == "latency":
            return math.log1p(self.value)
        return self.value * abs(champion_level)

    def to_option(self) -> float | str:
        return f"{self.value * 100:g}%" if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:+g}%" if self.relative else f"{self.value:g}"


@dataclass(frozen=True)
class _Defaults:
    margin: float
    tolerance: float
    mixing: float
    min_samples: int
    worse: Worse
    quantile: float | None = None


# Thresholds are in each metric's effect units (see docs/statistics.md, "Default thresholds",
# for why these); ``mixing`` is the standardised effect size the mixture is tuned for (tuned
# with benchmarks/sequential.py).
_DEFAULTS: dict[str, _Defaults] = {
    "error_rate": _Defaults(0.001, 0.001, 0.05, 100, "higher"),
    "latency": _Defaults(math.log(1.05), math.log(1.10), 0.2, 100, "higher"),
    "latency_p95": _Defaults(0.02, 0.02, 0.1, 200, "higher", 0.95),
    "latency_p99": _Defaults(0.005, 0.005, 0.05, 500, "higher", 0.99),
    "accuracy": _Defaults(0.01, 0.01, 0.15, 50, "lower"),
    "reward": _Defaults(0.01, 0.01, 0.1, 50, "lower"),
    "class_shift": _Defaults(0.05, 0.05, 0.1, 200, "shift"),
    "confidence_shift": _Defaults(0.1, 0.1, 0.1, 200, "shift"),
}

GUARDRAIL_METRICS: tuple[str, ...] = tuple(_DEFAULTS)
DEFAULT_GUARDRAILS: tuple[str, ...] = ("error_rate", "latency", "latency_p99")
_OPTIONS = ("margin", "tolerance", "mixing", "min_samples")
_REWARD_OPTIONS = (*_OPTIONS, "higher_is_better")


@dataclass(frozen=True)
class Guardrail:
    """One metric judged one-sidedly in three zones.

    - ``margin``: non-inferiority is shown when the harm-side confidence bound is within it
      (effect units: see ``GUARDRAIL_METRICS`` in docs/statistics.md); shift metrics use a
      total-variation bound.
    - ``tolerance``: harm is shown when the harm-side bound is beyond it; ``None`` means the
      margin (one threshold). Never below the margin.
    - ``margin_relative``/``tolerance_relative``: the threshold is a fraction of the champion's
      level (see :class:`Threshold`).
    - ``mixing``: standardised effect size the mixture prior is tuned to detect fastest.
    - ``min_samples``: observations per arm before the guardrail tests at all.
    - ``worse``: ``higher``/``lower`` effect is harm, or ``shift`` for any distribution change.
    - ``quantile``: the tail quantile for ``latency_p95``/``latency_p99``.
    """

    metric: str
    margin: float
    mixing: float = 0.1
    min_samples: int = 100
    worse: Worse = "higher"
    quantile: float | None = None
    tolerance: float | None = None
    margin_relative: bool = False
    tolerance_relative: bool = False

    def __post_init__(self) -> None:
        if self.metric not in _DEFAULTS:
            raise ValueError(_unknown(self.metric))
        if self.tolerance is None:
            object.__setattr__(self, "tolerance", self.margin)
            object.__setattr__(self, "tolerance_relative", self.margin_relative)
        tolerance: float = self.tolerance if self.tolerance is not None else self.margin
        for name, value, relative in (
            ("margin", self.margin, self.margin_relative),
            ("tolerance", tolerance, self.tolerance_relative),
        ):
            _check_threshold(self.metric, name, value, relative)
        if self.margin_relative == self.tolerance_relative and self.harm_threshold.value < (
            self.margin
        ):
            raise ValueError(
                f"guardrail {self.metric}: tolerance {self.harm_threshold} is below margin "
                f"{self.margin_threshold}; harm must mean worse than non-inferiority allows"
            )
        if not (math.isfinite(self.mixing) and self.mixing > 0.0):
            raise ValueError(
                f"guardrail {self.metric}: mixing must be a positive number, got {self.mixing!r}"
            )
        if self.min_samples < 2:
            raise ValueError(
                f"guardrail {self.metric}: min_samples must be at least 2, got {self.min_samples}"
            )

    @property
    def margin_threshold(self) -> Threshold:
        return Threshold(self.margin, self.margin_relative)

    @property
    def harm_threshold(self) -> Threshold:
        assert self.tolerance is not None
        return Threshold(self.tolerance, self.tolerance_relative)

    def thresholds(self, champion_level: float) -> tuple[float, float]:
        """``(margin, tolerance)`` in effect units; a tolerance that resolves below the margin
        (one relative, one absolute) is raised to it, so the zones never overlap."""
        margin = self.margin_threshold.resolve(self.metric, champion_level)
        tolerance = self.harm_threshold.resolve(self.metric, champion_level)
        return margin, max(tolerance, margin)

    @classmethod
    def default(cls, metric: str) -> Guardrail:
        if metric not in _DEFAULTS:
            raise ValueError(_unknown(metric))
        d = _DEFAULTS[metric]
        return cls(metric, d.margin, d.mixing, d.min_samples, d.worse, d.quantile, d.tolerance)


def _check_threshold(metric: str, name: str, value: float, relative: bool) -> None:
    if relative:
        if _DEFAULTS[metric].worse == "shift":
            raise ValueError(
                f"guardrail {metric}: {name} is a total-variation distance and cannot be relative"
            )
        if not (math.isfinite(value) and value > 0.0):
            raise ValueError(f"guardrail {metric}: relative {name} must be above 0%")
        return
    upper = math.inf if metric in ("latency", "reward") else 1.0
    if not (math.isfinite(value) and 0.0 < value < upper):
        limit = "" if math.isinf(upper) else f" and below {upper:g}"
        raise ValueError(
            f"guardrail {metric}: {name} must be a positive number{limit}, got {value!r}"
        )


def parse_threshold(metric: str, key: str, value: Any) -> Threshold:
    """A number (absolute, effect units) or a percentage string such as ``"+20%"`` or ``"5%"``
    (relative to the champion)."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            try:
                return Threshold(float(text[:-1].lstrip("+")) / 100.0, relative=True)
            except ValueError:
                pass
        raise ValueError(
            f"guardrail {metric}: {key} must be a number or a percentage like +20%, got {value!r}"
        )
    return Threshold(_number(metric, key, value))


def _unknown(metric: str) -> str:
    return f"unknown guardrail {metric!r}; use one of {', '.join(GUARDRAIL_METRICS)}"


def _number(metric: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"guardrail {metric}: {key} must be a number, got {value!r}")
    return float(value)


def _guardrail(metric: str, options: Mapping[str, Any]) -> Guardrail:
    if not isinstance(options, Mapping):
        raise ValueError(f"guardrail {metric}: options must be a mapping, got {options!r}")
    allowed = _REWARD_OPTIONS if metric == "reward" else _OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"guardrail {metric}: unknown option {unknown[0]!r}; use {', '.join(allowed)}"
        )
    d = _DEFAULTS[metric]
    worse = d.worse
    if "higher_is_better" in options:
        flag = options["higher_is_better"]
        if not isinstance(flag, bool):
            raise ValueError(f"guardrail {metric}: higher_is_better must be true or false")
        worse = "lower" if flag else "higher"
    min_samples = options.get("min_samples", d.min_samples)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int):
        raise ValueError(f"guardrail {metric}: min_samples must be an integer, got {min_samples!r}")
    margin = parse_threshold(metric, "margin", options.get("margin", d.margin))
    if "tolerance" in options:
        tolerance = parse_threshold(metric, "tolerance", options["tolerance"])
    elif "margin" in options:
        # A margin given alone: an absolute one keeps at least the default tolerance, a
        # relative one becomes the one threshold for both.
        tolerance = margin if margin.relative else Threshold(max(margin.value, d.tolerance))
    else:
        tolerance = Threshold(d.tolerance)
    return Guardrail(
        metric=metric,
        margin=margin.value,
        mixing=_number(metric, "mixing", options.get("mixing", d.mixing)),
        min_samples=min_samples,
        worse=worse,
        quantile=d.quantile,
        tolerance=tolerance.value,
        margin_relative=margin.relative,
        tolerance_relative=tolerance.relative,
    )


def parse_guardrails(
    names: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Guardrail, ...]:
    """Guardrails from their names and per-name options (``margin``, ``tolerance``, ``mixing``,
    ``min_samples``; ``higher_is_better`` for ``reward``); thresholds are numbers or percentages
    such as ``"+20%"``. No names means
    ``DEFAULT_GUARDRAILS``. Raises ``ValueError`` with a one-line message for unknown or
    repeated names, options for a guardrail not in the list, and bad option values."""
    if isinstance(names, str):
        raise ValueError("guardrails must be a list of names, not a string")
    chosen = tuple(names) or DEFAULT_GUARDRAILS
    options = options or {}
    seen: set[str] = set()
    for name in chosen:
        if name not in _DEFAULTS:
            raise ValueError(_unknown(name))
        if name in seen:
            raise ValueError(f"guardrail {name} is listed twice")
        seen.add(name)
    stray = sorted(set(options) - seen)
    if stray:
        raise ValueError(f"options given for guardrail {stray[0]!r}, which is not in the list")
    return tuple(_guardrail(name, options.get(name, {})) for name in chosen)
