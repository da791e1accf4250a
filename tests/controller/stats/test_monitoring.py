"""Continuous monitoring: looking after every batch must not inflate the false-alarm rate."""

from __future__ import annotations

import math

import numpy as np

from controller.stats import ArmStats, Evidence, evaluate, parse_guardrails
from controller.stats.mixture import normal_sf

REPS, LOOKS, BATCH, ALPHA = 200, 100, 100, 0.05


def _latency_arm(n: int, log_sum: float, log_sumsq: float) -> ArmStats:
    return ArmStats(requests=n, latency_n=n, log_latency_sum=log_sum, log_latency_sumsq=log_sumsq)


def _excludes_zero(e: Evidence) -> bool:
    return e.ci_low is not None and e.ci_high is not None and not e.ci_low <= 0.0 <= e.ci_high


def test_false_alarms_stay_below_alpha_under_continuous_monitoring() -> None:
    rng = np.random.default_rng(2024)
    guardrails = parse_guardrails(["error_rate", "latency"])
    sequential_alarms = naive_alarms = outside_cs = 0
    for _ in range(REPS):
        errors = np.cumsum(rng.binomial(BATCH, 0.02, (2, LOOKS)), axis=1)
        logs = rng.standard_normal((2, LOOKS, BATCH)) * 0.5 - 3.0
        sums, sumsqs = np.cumsum(logs.sum(axis=2), axis=1), np.cumsum((logs**2).sum(axis=2), axis=1)
        alarmed = naive = missed = False
        for k in range(LOOKS):
            n = BATCH * (k + 1)
            a, b = (_latency_arm(n, float(sums[i, k]), float(sumsqs[i, k])) for i in range(2))
            a.errors, b.errors = int(errors[0, k]), int(errors[1, k])
            report = evaluate(guardrails, a, b, ALPHA)
            alarmed |= report.verdict == "harm"
            missed |= any(_excludes_zero(e) for e in report.guardrails)
            pooled = (a.errors + b.errors) / (2 * n)
            if pooled > 0:
                z = (b.errors - a.errors) / n / math.sqrt(pooled * (1 - pooled) * 2 / n)
                naive |= normal_sf(z) <= ALPHA
        sequential_alarms += alarmed
        naive_alarms += naive
        outside_cs += missed
    assert sequential_alarms / REPS <= ALPHA
    assert outside_cs / REPS <= ALPHA
    # The same data judged by a fixed-horizon z-test at every look alarms far more often.
    assert naive_alarms / REPS > 2 * ALPHA
