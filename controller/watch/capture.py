"""A reference profile captured from a version's own live statistics, for a version promoted
without one: what it did during its rollout becomes what the champion watch expects of it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from controller.stats.sufficient import CONFIDENCE_BUCKETS, ArmStats
from controller.vocabulary import Arm
from registry.profiles import PROFILE_FORMAT, parse_profile

MIN_CAPTURE_REQUESTS = 100


def profile_from_stats(stats: ArmStats) -> dict[str, Any] | None:
    """A ``shelf.reference_profile/1`` document (``source: rollout``) from an arm's statistics;
    None when there are too few requests to say anything."""
    if stats.requests < MIN_CAPTURE_REQUESTS:
        return None
    document: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "source": "rollout",
        "samples": stats.requests,
        "error_rate": stats.error_rate,
    }
    answered = sum(stats.predicted.values())
    if answered:
        document["class_frequencies"] = {k: v / answered for k, v in stats.predicted.items()}
    scored = sum(stats.confidence_counts)
    if scored:
        assert len(stats.confidence_counts) == CONFIDENCE_BUCKETS
        document["confidence_histogram"] = [c / scored for c in stats.confidence_counts]
    if stats.labels:
        document["labels"] = stats.labels
        document["accuracy"] = stats.correct / stats.labels
    p50, p90 = stats.latency_quantile(0.5), stats.latency_quantile(0.9)
    if p50 is not None and p90 is not None:
        document["latency_p50_s"], document["latency_p90_s"] = p50, p90
    inputs = {}
    for name, (n, total, sumsq) in stats.inputs.items():
        if n >= 2:
            mean = total / n
            variance = max(sumsq - n * mean * mean, 0.0) / (n - 1)
            if variance > 0:
                inputs[name] = {"n": int(n), "mean": mean, "std": math.sqrt(variance)}
    if inputs:
        document["inputs"] = inputs
    return parse_profile(document)


def captured_profile(
    observed: Mapping[str, Any] | None, arm: str = Arm.challenger.value
) -> dict[str, Any] | None:
    """A challenger's (``arm``'s) profile from a rollout's latest look (``Rollout.observed``)."""
    arms = (observed or {}).get("arms", {})
    challenger = arms.get(arm)
    return profile_from_stats(ArmStats.from_json(challenger)) if challenger else None
