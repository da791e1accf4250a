"""Guardrails: which metrics judge a rollout, with which margins and tuning.

What each guardrail compares is in :mod:`controller.stats.comparisons`; how their verdicts
combine is in :mod:`controller.stats.evaluation`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.stats.evidence import Worse

__all__ = ["DEFAULT_GUARDRAILS", "GUARDRAIL_METRICS", "Guardrail", "parse_guardrails"]


@dataclass(frozen=True)
class _Defaults:
    margin: float
    mixing: float
    min_samples: int
    worse: Worse
    quantile: float | None = None


# Margins are in each metric's effect units (see docs/statistics.md); ``mixing`` is the
# standardised effect size the mixture is tuned for (tuned with benchmarks/sequential.py).
_DEFAULTS: dict[str, _Defaults] = {
    "error_rate": _Defaults(0.005, 0.05, 100, "higher"),
    "latency": _Defaults(math.log(1.05), 0.2, 100, "higher"),
    "latency_p95": _Defaults(0.02, 0.1, 200, "higher", 0.95),
    "latency_p99": _Defaults(0.005, 0.05, 500, "higher", 0.99),
    "accuracy": _Defaults(0.01, 0.15, 50, "lower"),
    "reward": _Defaults(0.01, 0.1, 50, "lower"),
    "class_shift": _Defaults(0.05, 0.1, 200, "shift"),
    "confidence_shift": _Defaults(0.1, 0.1, 200, "shift"),
}

GUARDRAIL_METRICS: tuple[str, ...] = tuple(_DEFAULTS)
DEFAULT_GUARDRAILS: tuple[str, ...] = ("error_rate", "latency", "latency_p99")
_OPTIONS = ("margin", "mixing", "min_samples")
_REWARD_OPTIONS = (*_OPTIONS, "higher_is_better")


@dataclass(frozen=True)
class Guardrail:
    """One metric judged one-sidedly against a non-inferiority margin.

    - ``margin``: the largest harm-side effect still acceptable (effect units: see
      ``GUARDRAIL_METRICS`` in docs/statistics.md); shift metrics use a total-variation bound.
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

    def __post_init__(self) -> None:
        if self.metric not in _DEFAULTS:
            raise ValueError(_unknown(self.metric))
        upper = math.inf if self.metric in ("latency", "reward") else 1.0
        if not (math.isfinite(self.margin) and 0.0 < self.margin < upper):
            limit = "" if math.isinf(upper) else f" and below {upper:g}"
            raise ValueError(
                f"guardrail {self.metric}: margin must be a positive number{limit}, "
                f"got {self.margin!r}"
            )
        if not (math.isfinite(self.mixing) and self.mixing > 0.0):
            raise ValueError(
                f"guardrail {self.metric}: mixing must be a positive number, got {self.mixing!r}"
            )
        if self.min_samples < 2:
            raise ValueError(
                f"guardrail {self.metric}: min_samples must be at least 2, got {self.min_samples}"
            )

    @classmethod
    def default(cls, metric: str) -> Guardrail:
        if metric not in _DEFAULTS:
            raise ValueError(_unknown(metric))
        d = _DEFAULTS[metric]
        return cls(metric, d.margin, d.mixing, d.min_samples, d.worse, d.quantile)


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
    return Guardrail(
        metric=metric,
        margin=_number(metric, "margin", options.get("margin", d.margin)),
        mixing=_number(metric, "mixing", options.get("mixing", d.mixing)),
        min_samples=min_samples,
        worse=worse,
        quantile=d.quantile,
    )


def parse_guardrails(
    names: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Guardrail, ...]:
    """Guardrails from their names and per-name options (``margin``, ``mixing``,
    ``min_samples``; ``higher_is_better`` for ``reward``). No names means
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
