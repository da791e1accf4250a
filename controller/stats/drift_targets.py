"""What a champion is compared with: targets from its reference profile and from its own first
period in production (pure; see :mod:`controller.stats.drift` for the detectors).

Class shares and the mean confidence are ``contrast`` targets (:mod:`controller.stats.contrast`):
the expected value's own sampling error enters their test exactly, and their tolerance is the
allowed change. For the other checks each tolerance is the larger of the allowed change
(``Tolerances``) and the 99.9 % half-width of the expected value's own estimate
(:func:`estimate_halfwidth`), so a reference built from a few thousand held-out rows, or a short
first period, does not turn sampling error into alarms, and a large reference does not blunt the
detectors by the sum of both.

:func:`group_shares` and :func:`check_weights` split the weekly false-alarm budget across the
checks (Bonferroni weights, see :mod:`controller.stats.drift`).
Latency is compared with the first period only: a held-out run measures another machine."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.stats.drift import (
    Against,
    Target,
    class_shares,
    estimate_halfwidth,
    latency_cut,
)
from controller.stats.sufficient import CONFIDENCE_BUCKETS, ArmStats

MAX_CLASSES = 20  # the largest classes are watched; the rest show in the confidence check
MAX_INPUTS = 32
MIN_CLASS_SHARE = 0.005
MIN_BASELINE_LABELS = 100
MIN_BASELINE_INPUTS = 100
GROUPS: tuple[Against, ...] = ("reference", "previous", "baseline")


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Allowed change before a check counts as changed: absolute shares for rates, the mean
    confidence and class shares; standard deviations for numeric inputs."""

    error_rate: float = 0.005
    latency: float = 0.05  # share of requests slower than the first period's 90th percentile
    class_share: float = 0.005
    confidence: float = 0.01
    accuracy: float = 0.01
    input_sd: float = 0.05


UP, DOWN, BOTH = (1,), (-1,), (1, -1)


def _bounded(
    check: str,
    against: Against,
    moments: tuple[float, float],
    n: float,
    allowed: float,
    dirs: tuple[int, ...],
) -> Target:
    mean, variance = moments
    return Target(check, against, "bounded", mean, _widened(allowed, variance, n), dirs)


def _contrast(
    check: str, against: Against, moments: tuple[float, float], n: float, allowed: float
) -> Target:
    mean, variance = moments
    sd = math.sqrt(max(variance, 0.25 / max(n, 1.0)))  # a share of 0 or 1 is still an estimate
    return Target(check, against, "contrast", mean, allowed, BOTH, sd, n=n)


def _widened(allowed: float, variance: float, n: float) -> float:
    """The allowed change, or the estimate's own half-width when that is larger."""
    return max(allowed, estimate_halfwidth(variance, n))


def _rate(p: float) -> tuple[float, float]:
    return p, p * (1.0 - p)


def _histogram_moments(shares: list[float]) -> tuple[float, float]:
    mids = [(i + 0.5) / CONFIDENCE_BUCKETS for i in range(CONFIDENCE_BUCKETS)]
    mean = sum(s * m for s, m in zip(shares, mids, strict=True))
    variance = sum(s * (m - mean) ** 2 for s, m in zip(shares, mids, strict=True))
    return mean, variance


def _largest(shares: Mapping[str, float]) -> list[tuple[str, float]]:
    ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
    return [(name, share) for name, share in ranked[:MAX_CLASSES] if share >= MIN_CLASS_SHARE]


def reference_targets(
    profile: Mapping[str, Any], tol: Tolerances, against: Against = "reference"
) -> list[Target]:
    """Targets from a reference profile (``registry.profiles`` format)."""
    n = float(profile.get("samples", 0))
    targets: list[Target] = []
    if profile.get("error_rate") is not None:
        p = float(profile["error_rate"])
        targets.append(_bounded("error_rate", against, _rate(p), n, tol.error_rate, UP))
    if profile.get("accuracy") is not None:
        p, labels = float(profile["accuracy"]), float(profile.get("labels") or n)
        targets.append(_bounded("accuracy", against, _rate(p), labels, tol.accuracy, DOWN))
    for name, share in _largest(profile.get("class_frequencies") or {}):
        targets.append(_contrast(f"class:{name}", against, _rate(share), n, tol.class_share))
    histogram = profile.get("confidence_histogram")
    if histogram:
        moments = _histogram_moments([float(x) for x in histogram])
        targets.append(_contrast("confidence", against, moments, n, tol.confidence))
    for name, summary in sorted((profile.get("inputs") or {}).items())[:MAX_INPUTS]:
        tolerance = _widened(tol.input_sd, 1.0, float(summary["n"]))
        mean, sd = float(summary["mean"]), float(summary["std"])
        targets.append(Target(f"input:{name}", against, "gaussian", mean, tolerance, BOTH, sd))
    return targets


def baseline_targets(baseline: ArmStats, tol: Tolerances) -> list[Target]:
    """Targets from the champion's own first period in production."""
    targets: list[Target] = []
    if baseline.requests:
        moments = _rate(baseline.error_rate)
        targets.append(
            _bounded("error_rate", "baseline", moments, baseline.requests, tol.error_rate, UP)
        )
    cut = latency_cut(baseline)
    if cut is not None:
        index, share = cut
        slow = _bounded("latency", "baseline", _rate(share), baseline.latency_n, tol.latency, UP)
        targets.append(Target(**{**_fields(slow), "cut": index}))
    if baseline.labels >= MIN_BASELINE_LABELS:
        moments = _rate(baseline.correct / baseline.labels)
        targets.append(
            _bounded("accuracy", "baseline", moments, baseline.labels, tol.accuracy, DOWN)
        )
    answered = float(sum(baseline.predicted.values()))
    for name, share in _largest(class_shares(baseline.predicted)):
        check = f"class:{name}"
        targets.append(_contrast(check, "baseline", _rate(share), answered, tol.class_share))
    scored = float(sum(baseline.confidence_counts))
    if scored:
        moments = _histogram_moments([c / scored for c in baseline.confidence_counts])
        targets.append(_contrast("confidence", "baseline", moments, scored, tol.confidence))
    for name, (count, total, sumsq) in sorted(baseline.inputs.items())[:MAX_INPUTS]:
        if count < MIN_BASELINE_INPUTS:
            continue
        mean = total / count
        sd = math.sqrt(max(sumsq - count * mean * mean, 0.0) / (count - 1))
        if sd > 0.0:
            tolerance = _widened(tol.input_sd, 1.0, count)
            targets.append(
                Target(f"input:{name}", "baseline", "gaussian", mean, tolerance, BOTH, sd)
            )
    return targets


def group_shares(present: Iterable[Against]) -> dict[str, float]:
    """Equal shares of the weekly budget for the groups of checks a watch runs (against the
    reference, the previous champion's reference, the first period). The first period's share
    is always reserved: its checks are only known once that period ends."""
    groups = sorted({*present, "baseline"}, key=GROUPS.index)
    return dict.fromkeys(groups, 1.0 / len(groups))


def check_weights(targets: Sequence[Target], shares: Mapping[str, float]) -> dict[str, float]:
    """Each check's share of the weekly budget: its group's share, split equally among the
    group's checks (all of a group's targets are made at once, so the weights sum to at most
    the group's share)."""
    counts = Counter(t.against for t in targets)
    return {t.key: shares.get(t.against, 0.0) / counts[t.against] for t in targets}


def _fields(target: Target) -> dict[str, Any]:
    return {name: getattr(target, name) for name in Target.__slots__}


def target_json(target: Target) -> dict[str, Any]:
    data = _fields(target)
    data["directions"] = list(target.directions)
    return data


def target_of(data: Mapping[str, Any]) -> Target:
    values = dict(data)
    values["directions"] = tuple(int(d) for d in values["directions"])
    return Target(**values)
